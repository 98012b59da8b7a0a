#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, crash, openraft's storage suite, and the
# end-to-end tests that start real controller processes (so the binaries are built first).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_build_deps
cd "$ROOT"
# One invocation shape for building and testing, so both resolve the same features and share
# one build (RocksDB's C++ is compiled once).
cargo build --workspace --all-targets
cargo test --workspace "$@"
# A bounded chaos smoke (a few minutes) on a throwaway proxied cluster of the debug build, with
# a home and ports of its own: leader kills, a node kill, a leader partition, and a KV history
# checked for linearizability across leader kills. PLUM_SKIP_CHAOS=1 skips it.
if [ "${PLUM_SKIP_CHAOS:-0}" != 1 ]; then
  smoke_home="$(mktemp -d)"
  PLUM_PROFILE=debug PLUM_HOME="$smoke_home" PLUM_BASE_PORT="${PLUM_CHAOS_BASE_PORT:-7601}" chaos/run_all.sh --quick
  rm -rf "$smoke_home"
fi
