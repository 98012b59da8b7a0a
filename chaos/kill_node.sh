#!/usr/bin/env bash
# chaos/kill_node.sh [trials] [--with-leader]
# Against the running local cluster with the echo service deployed (scripts/cluster.sh up;
# scripts/deploy_echo.sh): repeatedly SIGKILL a node (agent and its instances), measure kill ->
# discovery again returns the full replica count with no endpoint of the dead node (each one
# answering), restart the node, count duplicates. --with-leader also kills the controller
# leader at the same moment.
# Last line: node_failover_ms p50=<n> p99=<n> max=<n> trials=<n> duplicates=<n>
extra=()
[ "${2:-}" = "--with-leader" ] && extra+=(--with-leader)
exec "$(dirname "$0")/scenario.sh" node-failover --trials "${1:-20}" "${extra[@]}"
