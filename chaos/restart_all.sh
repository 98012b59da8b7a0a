#!/usr/bin/env bash
# chaos/restart_all.sh [trials]: SIGKILL every replica at once and restart them all; no
# acknowledged write lost.
exec "$(dirname "$0")/scenario.sh" restart-all --trials "${1:-3}"
