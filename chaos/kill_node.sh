#!/usr/bin/env bash
# chaos/kill_node.sh [trials] [--with-leader]
# Against the running local cluster with the echo service deployed (scripts/cluster.sh up;
# scripts/deploy_echo.sh): repeatedly SIGKILL a node (agent and its instances), measure kill ->
# discovery again returns the full replica count with no endpoint of the dead node (each one
# answering), restart the node, count duplicates. --with-leader also kills the controller
# leader at the same moment.
# Last line: node_failover_ms p50=<n> p99=<n> max=<n> trials=<n> duplicates=<n>
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
trials="${1:-20}"
extra=()
[ "${2:-}" = "--with-leader" ] && extra+=(--with-leader)
if [ ! -f "$ENV_FILE" ]; then
  echo "no running cluster found ($ENV_FILE missing): run scripts/cluster.sh up first" >&2
  exit 1
fi
ensure_built plum-bench
cd "$ROOT"
exec "$BIN_DIR/plum-bench" --plum-home "$PLUM_HOME" node-failover --trials "$trials" "${extra[@]}"
