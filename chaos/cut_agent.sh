#!/usr/bin/env bash
# chaos/cut_agent.sh [trials]: cut one agent off from every controller (needs scripts/cluster.sh
# up --proxied and a deployment with fencing: stop, e.g. scripts/deploy_echo.sh 3 0 stop); its
# instances must be replaced elsewhere and stop on the cut-off node; after healing no duplicate
# may remain.
exec "$(dirname "$0")/scenario.sh" node-failover --cut --expect-fencing --trials "${1:-3}"
