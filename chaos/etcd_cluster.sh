#!/usr/bin/env bash
# chaos/etcd_cluster.sh up|down [base-port]
# A 3-member etcd cluster (Debian's etcd-server) on loopback, for side-by-side measurements
# with `plum-bench etcd-put`: data and logs under $PLUM_HOME/etcd (default .plum/etcd), client
# ports BASE, BASE+2, BASE+4 (default 24379), peer ports one above each. Heartbeat 50 ms and
# election 250 ms unless ETCD_HEARTBEAT_MS / ETCD_ELECTION_MS say otherwise. `down` stops the
# members it started, by the PIDs it recorded.
set -euo pipefail
cmd=${1:?usage: etcd_cluster.sh up|down [base-port]}
base=${2:-24379}
home="${PLUM_HOME:-.plum}/etcd"
mkdir -p "$home"
case "$cmd" in
  up)
    command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
    initial=""
    for i in 1 2 3; do initial+="m$i=http://127.0.0.1:$((base + 2 * (i - 1) + 1)),"; done
    for i in 1 2 3; do
      client=$((base + 2 * (i - 1))); peer=$((client + 1))
      rm -rf "$home/m$i"
      etcd --name "m$i" --data-dir "$home/m$i" \
        --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "${initial%,}" --initial-cluster-state new \
        --heartbeat-interval "${ETCD_HEARTBEAT_MS:-50}" --election-timeout "${ETCD_ELECTION_MS:-250}" \
        > "$home/m$i.log" 2>&1 &
      echo $! > "$home/m$i.pid"
    done
    for _ in $(seq 1 100); do
      curl -sf -X POST "http://127.0.0.1:$base/v3/maintenance/status" -d '{}' | grep -q '"leader"' && break
      sleep 0.1
    done
    echo "ETCD_ENDPOINTS=http://127.0.0.1:$base,http://127.0.0.1:$((base + 2)),http://127.0.0.1:$((base + 4))"
    ;;
  down)
    for i in 1 2 3; do
      f="$home/m$i.pid"
      [ -f "$f" ] || continue
      pid=$(cat "$f")
      # Only a process that is still the etcd this script started.
      if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = etcd ]; then kill "$pid"; fi
      rm -f "$f"
    done
    ;;
  *) echo "usage: etcd_cluster.sh up|down [base-port]" >&2; exit 2 ;;
esac
