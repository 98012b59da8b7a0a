#!/usr/bin/env bash
# chaos/rolling_restart.sh [rounds]: restart each replica in turn (SIGTERM) under SDK load;
# no client request may fail.
exec "$(dirname "$0")/scenario.sh" rolling-restart --rounds "${1:-1}"
