#!/usr/bin/env bash
# chaos/partition_leader.sh [trials]: cut the leader off from both followers (needs
# scripts/cluster.sh up --proxied); a new leader must take over, the old one must turn writes and
# heartbeats away and rejoin after healing; no acknowledged write lost.
exec "$(dirname "$0")/scenario.sh" partition-leader --trials "${1:-5}"
