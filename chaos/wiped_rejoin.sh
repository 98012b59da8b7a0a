#!/usr/bin/env bash
# chaos/wiped_rejoin.sh [trials]: wipe a follower's data and restart it, then SIGKILL the
# leader while it catches up; no acknowledged write lost, the wiped replica catches up.
exec "$(dirname "$0")/scenario.sh" wiped-rejoin --trials "${1:-3}"
