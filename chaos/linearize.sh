#!/usr/bin/env bash
# chaos/linearize.sh [seconds]: concurrent KV clients record a history, checked for
# linearizability (run it beside kill_leader.sh or partition_leader.sh).
exec "$(dirname "$0")/scenario.sh" linearize --seconds "${1:-20}"
