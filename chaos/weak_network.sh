#!/usr/bin/env bash
# chaos/weak_network.sh [seconds]: 200 ms +- 100 ms latency and 5 % loss-like stalls between
# agents / SDK clients and the controllers (needs scripts/cluster.sh up --proxied); no node may
# expire and no SDK request may fail.
exec "$(dirname "$0")/scenario.sh" weak-network --seconds "${1:-30}"
