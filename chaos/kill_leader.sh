#!/usr/bin/env bash
# chaos/kill_leader.sh [trials]
# Against the running local cluster (scripts/cluster.sh up): repeatedly SIGKILL the leader while
# clients write through every replica, measure kill -> first acknowledged write, check that no
# acknowledged write is lost, restart the replica and wait until it caught up.
# Last line: leader_recovery_ms p50=<n> p99=<n> max=<n> trials=<n> lost_writes=<n>
exec "$(dirname "$0")/scenario.sh" failover --trials "${1:-20}"
