#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, crash, openraft's storage suite, and the
# end-to-end tests that start real controller processes (so the binaries are built first).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_build_deps
ensure_test_deps
cd "$ROOT"
# One invocation shape for building and testing, so both resolve the same features and share
# one build (RocksDB's C++ is compiled once).
cargo build --workspace --all-targets
cargo test --workspace "$@"
# Span export is a build feature (off by default); its end-to-end test against a fake collector.
cargo test -p plum-registry --features otlp --test otlp "$@"
# The SDK conformance suite's cluster scenarios (Python and Java runners) run the controller
# built above; the Rust runner found it next to its test binary.
export PLUM_CONTROLLER_BIN="$TARGET_DIR/debug/plum-controller"
# The Python SDK: unit tests and the shared conformance suite (sdk/conformance/) against the
# scripted fake controller and real 3-replica clusters, through the blocking and the asyncio
# client (~2 min). pytest's exit
# status 5 (nothing collected) fails too: the suite must have run. PLUM_SKIP_PYTHON=1 skips it.
if [ "${PLUM_SKIP_PYTHON:-0}" != 1 ]; then
  py="${PLUM_PY_VENV:-$HOME/.cache/plum-py-venv}/bin/python"
  [ -x "$py" ] || { echo "no Python SDK venv at $py (.ci/run makes it: python3 -m venv, pip install './sdk/python[test]')" >&2; exit 1; }
  # Python 3.10 is the floor the SDK promises: vermin checks no language or standard library
  # feature above it is used, and the tests run once more on the oldest httpx2 it accepts
  # (fake-controller scenarios only there: the cluster ones ran above).
  "$(dirname "$py")/vermin" --no-tips --violations -t=3.10- sdk/python/src sdk/python/tests sdk/python/examples \
    sdk/python/bench sdk/conformance
  PYTHONDONTWRITEBYTECODE=1 timeout 900 "$py" -m pytest -q -p no:cacheprovider sdk/python
  PLUM_CONFORMANCE_CLUSTER=0 PYTHONDONTWRITEBYTECODE=1 timeout 900 \
    "${PLUM_PY_FLOOR_VENV:-$HOME/.cache/plum-py-venv-floor}/bin/python" -m pytest -q -p no:cacheprovider sdk/python
fi
# The Java SDK: unit tests and the conformance suite through its blocking and async API (~2 min),
# offline from Debian's Maven repository. PLUM_SKIP_JAVA=1 skips it.
if [ "${PLUM_SKIP_JAVA:-0}" != 1 ]; then
  (cd sdk/java && timeout 900 mvn -o -B -Dmaven.repo.local=/usr/share/maven-repo test)
fi
# The web console in headless Chromium (tests/browser/run.sh, well under a minute): a throwaway
# cluster of the debug build with a home and ports of its own, every page loaded and checked, an
# agent and the leader killed. PLUM_SKIP_BROWSER=1 skips it. Its screenshots go to a temporary
# directory, so a test run leaves the tree clean; `tests/browser/run.sh` alone refreshes
# docs/screenshots/.
if [ "${PLUM_SKIP_BROWSER:-0}" != 1 ]; then
  shots=$(mktemp -d)
  PLUM_PROFILE=debug PLUM_BROWSER_BASE_PORT="${PLUM_BROWSER_BASE_PORT:-7401}" PLUM_SCREENSHOT_DIR="$shots" \
    tests/browser/run.sh
  rm -rf "$shots"
fi
# A bounded chaos smoke (a few minutes) on a throwaway proxied cluster of the debug build, with
# a home and ports of its own: leader kills, a node kill, a leader partition, and a KV history
# checked for linearizability across leader kills. PLUM_SKIP_CHAOS=1 skips it.
if [ "${PLUM_SKIP_CHAOS:-0}" != 1 ]; then
  smoke_home="$(mktemp -d)"
  PLUM_PROFILE=debug PLUM_HOME="$smoke_home" PLUM_BASE_PORT="${PLUM_CHAOS_BASE_PORT:-7601}" chaos/run_all.sh --quick
  rm -rf "$smoke_home"
fi
