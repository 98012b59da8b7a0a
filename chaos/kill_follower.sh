#!/usr/bin/env bash
# chaos/kill_follower.sh [trials]: SIGKILL a follower while writing; restart it; no write lost.
# Last line: follower_recovery_ms p50=.. p99=.. max=.. trials=.. lost_writes=..
exec "$(dirname "$0")/scenario.sh" failover --victim follower --trials "${1:-10}"
