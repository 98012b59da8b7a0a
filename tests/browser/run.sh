#!/usr/bin/env bash
# The web console in headless Chromium against a throwaway local cluster: starts 3 replicas and
# 3 agents (the debug build unless PLUM_PROFILE says otherwise) with a home and ports of their
# own, deploys the echo service, runs console.test.mjs (node's test runner), and always tears
# the cluster down. Screenshots go to docs/screenshots/ (PLUM_SCREENSHOT_DIR to change).
# Settings: PLUM_BROWSER_BASE_PORT (7401: replicas on 7401-7403), PLUM_BROWSER_TIMEOUT (300 s
# for the test itself). Needs Debian's chromium (.ci/run installs it) and node >= 20;
# playwright-core (pinned in package-lock.json) is installed with `npm ci` when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

export PLUM_PROFILE="${PLUM_PROFILE:-debug}"
export PLUM_BASE_PORT="${PLUM_BROWSER_BASE_PORT:-7401}"
export PLUM_REPLICAS=3 PLUM_AGENTS=3
PLUM_HOME="$(mktemp -d "${TMPDIR:-/tmp}/plum-browser.XXXXXX")"
export PLUM_HOME
# shellcheck source=../../scripts/lib.sh
source "$root/scripts/lib.sh"

status=1
cleanup() {
  "$root/scripts/cluster.sh" wipe >/dev/null 2>&1 || true
  if [ "$status" != 0 ] && [ -d "$PLUM_HOME/cluster/logs" ]; then
    local keep; keep="$(mktemp -d "${TMPDIR:-/tmp}/plum-browser-logs.XXXXXX")"
    cp -r "$PLUM_HOME/cluster/logs/." "$keep/" 2>/dev/null || true
    echo "browser test failed; the cluster's logs are in $keep" >&2
  fi
  rm -rf "$PLUM_HOME"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- what the test needs ----
if command -v dpkg-query >/dev/null; then
  pkg_installed chromium || { echo "Debian's chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)" >&2; exit 1; }
fi
[ -x "${PLUM_CHROMIUM:-/usr/bin/chromium}" ] || { echo "no ${PLUM_CHROMIUM:-/usr/bin/chromium}" >&2; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
[ "$node_major" -ge 20 ] || { echo "node >= 20 is needed (playwright-core); found: $(node --version 2>/dev/null || echo none)" >&2; exit 1; }
if [ ! -f "$here/node_modules/playwright-core/package.json" ] || [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi
for i in $(seq 1 "$REPLICAS"); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$((BASE_PORT + i - 1))") 2>/dev/null; then
    echo "port $((BASE_PORT + i - 1)) is in use: set PLUM_BROWSER_BASE_PORT to a free range" >&2; exit 1
  fi
done

# ---- the cluster ----
# Built first (only what is missing), outside the time bounds below.
ensure_built plum-controller plum-agent plum-echo plum-certs plum-faultproxy
started=$SECONDS
timeout -k 5 120 "$root/scripts/cluster.sh" up >/dev/null
timeout -k 5 90 "$root/scripts/deploy_echo.sh" >/dev/null
echo "browser test: cluster up and echo deployed in $((SECONDS - started)) s ($(replica_url 1), home $PLUM_HOME)"

# ---- the test ----
started=$SECONDS
timeout -k 10 "${PLUM_BROWSER_TIMEOUT:-300}" node --test --test-reporter=spec "$here/console.test.mjs"
echo "browser test: passed in $((SECONDS - started)) s; screenshots in ${PLUM_SCREENSHOT_DIR:-docs/screenshots}"
status=0
