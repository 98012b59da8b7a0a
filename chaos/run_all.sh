#!/usr/bin/env bash
# chaos/run_all.sh [--quick]
# Wipes the local cluster, starts it with every Raft and agent link through the fault proxy
# (scripts/cluster.sh up --proxied), deploys the echo service with fencing, and runs every
# chaos scenario; prints a table and writes it to .plum/chaos/results.md. Exits non-zero if any
# scenario lost an acknowledged write, left a duplicate, broke linearizability, violated its
# own rule, or recovered more slowly than PLUM_CHAOS_MAX_RECOVERY_MS (default 10000).
# --quick: the CI smoke (3 leader kills, 1 node kill, 1 leader partition, 1 linearizability run
# across 2 leader kills; a few minutes). The cluster is wiped again at the end.
set -uo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
max_recovery="${PLUM_CHAOS_MAX_RECOVERY_MS:-10000}"
out_dir="$PLUM_HOME/chaos"
results="$out_dir/results.md"
failed=0
rows=()

ensure_built plum-controller plum-agent plum-echo plum-bench plum-faultproxy plum-certs
scripts/cluster.sh wipe >/dev/null
scripts/cluster.sh up --proxied >/dev/null || { echo "cluster did not start" >&2; exit 1; }
trap 'scripts/cluster.sh wipe >/dev/null 2>&1' EXIT
scripts/deploy_echo.sh 3 0 stop >/dev/null || { echo "echo did not deploy" >&2; exit 1; }
mkdir -p "$out_dir"

# The largest `max=` (ms) of a result line, 0 if none.
max_of() { grep -o 'max=[0-9]*' <<<"$1" | head -n1 | cut -d= -f2; }

# run NAME COMMAND...: runs one scenario, keeps its last line, judges it.
run() {
  local name="$1" log="$out_dir/$1.log" rc line verdict=pass max
  shift
  echo "== $name: $*" >&2
  "$@" >"$log" 2>&1
  rc=$?
  line="$(tail -n1 "$log")"
  max="$(max_of "$line")"
  if [ "$rc" != 0 ]; then
    verdict="FAIL (exit $rc)"
  elif grep -Eq 'lost_writes=[1-9]|duplicates=[1-9]|unfenced=[1-9]|result=violation' <<<"$line"; then
    verdict="FAIL"
  elif [ -n "$max" ] && [ "$max" -gt "$max_recovery" ]; then
    verdict="FAIL (recovery ${max} ms > ${max_recovery} ms)"
  fi
  [ "$verdict" = pass ] || failed=1
  echo "   $verdict: $line" >&2
  rows+=("| $name | $verdict | \`$line\` |")
}

# Linearizability while the leader is killed: the checker and the kills run side by side.
linearize_during() {
  local seconds="$1"; shift
  "$BIN_DIR/plum-bench" --plum-home "$PLUM_HOME" linearize --seconds "$seconds" >"$out_dir/linearize-history.log" 2>&1 &
  local lin=$!
  sleep 2
  "$@" >"$out_dir/linearize-faults.log" 2>&1
  wait "$lin"
  local rc=$?
  tail -n1 "$out_dir/linearize-history.log"
  return "$rc"
}

if [ "$quick" = 1 ]; then
  run kill_leader chaos/kill_leader.sh 3
  run kill_node chaos/kill_node.sh 1
  run partition_leader chaos/partition_leader.sh 1
  run linearize_leader_kills linearize_during 15 chaos/kill_leader.sh 2
else
  run kill_leader chaos/kill_leader.sh 25
  run kill_follower chaos/kill_follower.sh 10
  run kill_node chaos/kill_node.sh 10
  run kill_node_with_leader chaos/kill_node.sh 5 --with-leader
  run restart_all chaos/restart_all.sh 3
  run partition_leader chaos/partition_leader.sh 5
  run cut_agent chaos/cut_agent.sh 3
  run rolling_restart chaos/rolling_restart.sh 1
  run wiped_rejoin chaos/wiped_rejoin.sh 3
  run linearize_leader_kills linearize_during 40 chaos/kill_leader.sh 5
  run linearize_partitions linearize_during 40 chaos/partition_leader.sh 2
  run weak_network chaos/weak_network.sh 30
fi

{
  echo "Chaos run $(date -u +%Y-%m-%dT%H:%MZ) ($([ "$quick" = 1 ] && echo quick || echo full), profile $PROFILE)"
  echo
  echo "| scenario | verdict | result line |"
  echo "|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$results"
exit "$failed"
