#!/usr/bin/env bash
# Deploys the echo service (plum-echo) on the local cluster and waits until every replica of it
# is discoverable.   scripts/deploy_echo.sh [replicas] [standby] [fencing]   (default 3, 0, none;
# fencing `stop`: a node cut off from the controllers stops its instances)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
replicas="${1:-3}"
standby="${2:-0}"
fencing=""
[ -n "${3:-}" ] && fencing=$(printf ',"fencing":"%s"' "$3")
ensure_built plum-echo
api="$(replica_url 1)"
body=$(printf '{"name":"echo","version":"1.0.0","replicas":%s,"standby":%s,"command":"%s","requestId":"demo","service":{"name":"echo","protocol":"http","readiness":{"httpPath":"/health"}}%s}' \
  "$replicas" "$standby" "$BIN_DIR/plum-echo" "$fencing")
api_curl -sf -XPOST "$api/v1/deployments" -d "$body" >/dev/null || { echo "deployment refused: $(api_curl -s -XPOST "$api/v1/deployments" -d "$body")" >&2; exit 1; }
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
  n=$(api_curl -s "$api/v1/discovery?service=echo" | { grep -o '"instanceId"' || true; } | wc -l)
  if [ "$n" -ge "$replicas" ]; then
    echo "echo deployed: $n endpoints"
    api_curl -s "$api/v1/discovery?service=echo" | sed 's/},{/},\n{/g'
    echo
    exit 0
  fi
  sleep 0.2
done
echo "echo not fully discoverable after 60 s; see $CLUSTER_DIR/logs" >&2
exit 1
