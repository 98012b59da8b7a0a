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
