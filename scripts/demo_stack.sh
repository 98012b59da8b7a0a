#!/usr/bin/env bash
# Deploys a small shop on the local cluster to show dependencies and config: web -> api -> db
# (plum-echo each), created in one go and in reverse order, so only dependency gating brings
# them up in order; api reads the config key prod/shop/greeting and rolls when it changes.
# Waits until web serves, then prints `plumctl topology`.   scripts/demo_stack.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_built plum-echo plumctl
ctl() {
  local ca=(); tls_on && ca=(--ca-file "$TLS_DIR/ca.pem")
  "$BIN_DIR/plumctl" --controllers "$(controllers_list)" --token-file "$(admin_token_file)" "${ca[@]}" "$@"
}
# name, replicas, dependsOn (JSON), more fields (JSON, leading comma)
spec() {
  printf '{"name":"%s","version":"1.0.0","replicas":%s,"command":"%s","requestId":"demo","service":{"name":"%s","protocol":"http","readiness":{"httpPath":"/health"}},"dependsOn":%s%s}' \
    "$1" "$2" "$BIN_DIR/plum-echo" "$1" "$3" "${4:-}"
}
ctl kv put prod shop/greeting "hello from prod" >/dev/null
spec web 2 '[{"service":"api"}]' | ctl deploy -f - >/dev/null
spec api 2 '[{"service":"db"}]' \
  ',"configRefs":[{"namespace":"prod","key":"shop/greeting","env":"ECHO_CONFIG"}],"rollOnConfigChange":true' |
  ctl deploy -f - >/dev/null
spec db 1 '[]' | ctl deploy -f - >/dev/null
echo "deployed web, api, db (in that order); waiting for them to come up in dependency order"
deadline=$((SECONDS + 90))
while [ "$SECONDS" -lt "$deadline" ]; do
  n=$(api_curl -s "$(replica_url 1)/v1/discovery?service=web" | { grep -o '"instanceId"' || true; } | wc -l)
  [ "$n" -ge 2 ] && { ctl topology; exit 0; }
  sleep 0.5
done
echo "web not serving after 90 s:" >&2
ctl deployment web-demo >&2 || true
exit 1
