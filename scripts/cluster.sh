#!/usr/bin/env bash
# Local Plum controller cluster on 127.0.0.1.
#   scripts/cluster.sh up [--agents N] [--tls] [--proxied]   build what is missing, start 3
#                               replicas and 3 agents, wait for a leader (--tls: make a local CA
#                               and certificate and speak only TLS; --proxied: run every Raft
#                               and agent link through plum-faultproxy; both until `wipe`)
#   scripts/cluster.sh status   what each replica says of the cluster
#   scripts/cluster.sh down     stop the replicas (data kept under .plum/cluster/data)
#   scripts/cluster.sh wipe     stop and delete the data
#   scripts/cluster.sh start-replica ID / stop-replica ID   one replica (used by chaos scripts)
#   scripts/cluster.sh start-agent N / stop-agent N / kill-node N   node-N's agent (kill-node: SIGKILL
#                               the agent and every instance it runs)
# Settings: PLUM_REPLICAS (3), PLUM_AGENTS (3; `up --agents N`), PLUM_BASE_PORT (7101),
# PLUM_PROFILE (release), PLUM_HOME (.plum).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

wait_ready() {
  local deadline=$((SECONDS + ${PLUM_UP_TIMEOUT:-60})) i ok leader
  while [ "$SECONDS" -lt "$deadline" ]; do
    ok=1; leader=""
    for i in $(seq 1 "$REPLICAS"); do
      # Gone, not merely "not plum-controller yet": right after `start_replica` the pid can
      # still be the shell that is about to exec it (seen on a loaded machine).
      if ! kill -0 "$(replica_pid "$i")" 2>/dev/null; then
        echo "replica $i exited; last log lines:" >&2; tail -n 20 "$(replica_log "$i")" >&2; exit 1
      fi
      api_curl -sf --max-time 1 "$(replica_url "$i")/healthz" >/dev/null || ok=0
      [ -n "$leader" ] || leader="$(leader_from "$i")"
    done
    if [ "$ok" = 1 ] && [ -n "$leader" ]; then echo "$leader"; return 0; fi
    sleep 0.2
  done
  echo "cluster not ready after ${PLUM_UP_TIMEOUT:-60}s; logs under $CLUSTER_DIR/logs" >&2
  exit 1
}

cmd="${1:-}"
case "$cmd" in
  up)
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        --agents) AGENTS="${2:?number of agents}"; shift 2 ;;
        --tls) want_tls=1; shift ;;
        --proxied) mkdir -p "$CLUSTER_DIR" && touch "$CLUSTER_DIR/proxied"; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
      esac
    done
    ensure_built plum-controller plum-agent plum-echo plum-certs plum-faultproxy
    [ "${want_tls:-0}" = 1 ] && ensure_tls
    start_proxy
    for i in $(seq 1 "$REPLICAS"); do start_replica "$i"; done
    leader="$(wait_ready)"
    for i in $(seq 1 "$AGENTS"); do start_agent "$i"; done
    mkdir -p "$PLUM_HOME"
    echo "PLUM_CONTROLLERS=$(controllers_list)" >"$ENV_FILE"
    echo "PLUM_AGENTS=$AGENTS" >>"$ENV_FILE"
    echo "PLUM_TOKEN_FILE=$(admin_token_file)" >>"$ENV_FILE"
    tls_on && echo "PLUM_CA_FILE=$TLS_DIR/ca.pem" >>"$ENV_FILE"
    if proxied_on; then
      echo "PLUM_FAULTPROXY_CONTROL=$PROXY_CONTROL" >>"$ENV_FILE"
      echo "PLUM_PROXIED_CONTROLLERS=$(proxied_controllers_list)" >>"$ENV_FILE"
    fi
    echo "Plum cluster up: $REPLICAS replicas, leader is replica $leader; $AGENTS agents"
    for i in $(seq 1 "$REPLICAS"); do echo "  replica $i  $(replica_url "$i")  pid $(replica_pid "$i")"; done
    for i in $(seq 1 "$AGENTS"); do echo "  agent   node-$i  pid $(cat "$(agent_pidfile "$i")")"; done
    proxied_on && echo "Every Raft and agent link runs through plum-faultproxy (control $PROXY_CONTROL; links: plum-faultproxy --control $PROXY_CONTROL list)"
    echo "Admin token in $(admin_token_file) (plumctl --token-file, or export PLUM_TOKEN_FILE=...)"
    echo "Addresses written to $ENV_FILE; logs in $CLUSTER_DIR/logs"
    ;;
  status)
    for i in $(seq 1 "$REPLICAS"); do
      if replica_running "$i"; then
        echo "replica $i (pid $(replica_pid "$i")): $(api_curl -s --max-time 2 "$(replica_url "$i")/v1/cluster" || echo unreachable)"
      else
        echo "replica $i: not running"
      fi
    done
    for i in $(seq 1 "$AGENTS"); do
      if agent_running "$i"; then echo "agent node-$i: running (pid $(cat "$(agent_pidfile "$i")"))"; else echo "agent node-$i: not running"; fi
    done
    ;;
  down)
    for i in $(seq 1 "$AGENTS"); do stop_agent "$i"; done
    for i in $(seq 1 "$REPLICAS"); do stop_replica "$i"; done
    stop_proxy
    echo "Plum cluster stopped (data kept in $CLUSTER_DIR/data)"
    ;;
  wipe)
    for i in $(seq 1 "$AGENTS"); do stop_agent "$i"; done
    for i in $(seq 1 "$REPLICAS"); do stop_replica "$i"; done
    stop_proxy
    rm -rf "$CLUSTER_DIR" "$ENV_FILE"
    echo "Plum cluster stopped and its data deleted"
    ;;
  start-replica) start_replica "${2:?replica id}" ;;
  stop-replica) stop_replica "${2:?replica id}" ;;
  start-agent) start_agent "${2:?agent number}" ;;
  stop-agent) stop_agent "${2:?agent number}" ;;
  kill-node) kill_node "${2:?agent number}" ;;
  *) echo "usage: $0 up [--agents N] [--tls] [--proxied]|status|down|wipe|start-replica ID|stop-replica ID|start-agent N|stop-agent N|kill-node N" >&2; exit 2 ;;
esac
