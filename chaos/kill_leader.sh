#!/usr/bin/env bash
# chaos/kill_leader.sh [trials]
# Against the running local cluster (scripts/cluster.sh up): repeatedly SIGKILL the leader while
# clients write through every replica, measure kill -> first acknowledged write, check that no
# acknowledged write is lost, restart the replica and wait until it caught up.
# Last line: leader_recovery_ms p50=<n> p99=<n> max=<n> trials=<n> lost_writes=<n>
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
trials="${1:-20}"
if [ ! -f "$ENV_FILE" ]; then
  echo "no running cluster found ($ENV_FILE missing): run scripts/cluster.sh up first" >&2
  exit 1
fi
ensure_built plum-bench
cd "$ROOT"
exec "$BIN_DIR/plum-bench" --plum-home "$PLUM_HOME" failover --trials "$trials" \
  --restart-cmd "$ROOT/scripts/cluster.sh start-replica {id}"
