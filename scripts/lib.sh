# Shared settings and helpers for the local-cluster scripts. Sourced, not run.
# Everything lives under .plum/ in the repository (git-ignored).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUM_HOME="${PLUM_HOME:-$ROOT/.plum}"
CLUSTER_DIR="$PLUM_HOME/cluster"
ENV_FILE="$PLUM_HOME/cluster.env"
REPLICAS="${PLUM_REPLICAS:-3}"
BASE_PORT="${PLUM_BASE_PORT:-7101}"
PROFILE="${PLUM_PROFILE:-release}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN_DIR="$TARGET_DIR/$PROFILE"

# How many agents: PLUM_AGENTS, else what `up` recorded in cluster.env, else 3.
AGENTS="${PLUM_AGENTS:-$(sed -n 's/^PLUM_AGENTS=//p' "$ENV_FILE" 2>/dev/null || true)}"
AGENTS="${AGENTS:-3}"

replica_addr() { echo "127.0.0.1:$((BASE_PORT + $1 - 1))"; }
replica_pidfile() { echo "$CLUSTER_DIR/pids/$1.pid"; }
replica_log() { echo "$CLUSTER_DIR/logs/$1.log"; }

peers_list() {
  local out="" i
  for i in $(seq 1 "$REPLICAS"); do out="$out${out:+,}$i=$(replica_addr "$i")"; done
  echo "$out"
}

# The fault proxy (`up --proxied`, until `wipe`): every Raft link (replica I -> J, one link per
# direction) and every agent -> replica link runs through plum-faultproxy, plus one client link
# per replica for the SDK and bench (PLUM_PROXIED_CONTROLLERS). Links are named rI-rJ, aN-rJ,
# c-rJ; the chaos scenarios set their faults through the proxy's control API.
PROXY_CONTROL="127.0.0.1:$((BASE_PORT + 99))"
proxied_on() { [ -f "$CLUSTER_DIR/proxied" ]; }
raft_link_port() { echo $((BASE_PORT + 100 + ($1 - 1) * REPLICAS + $2)); }
client_link_port() { echo $((BASE_PORT + 150 + $1)); }
agent_link_port() { echo $((BASE_PORT + 200 + ($1 - 1) * REPLICAS + $2)); }

# The links the proxy starts with, as --link flags.
proxy_link_flags() {
  local i j
  for i in $(seq 1 "$REPLICAS"); do
    for j in $(seq 1 "$REPLICAS"); do
      [ "$i" = "$j" ] || echo "--link r$i-r$j=127.0.0.1:$(raft_link_port "$i" "$j"),$(replica_addr "$j")"
    done
    echo "--link c-r$i=127.0.0.1:$(client_link_port "$i"),$(replica_addr "$i")"
  done
  for i in $(seq 1 "$AGENTS"); do
    for j in $(seq 1 "$REPLICAS"); do
      echo "--link a$i-r$j=127.0.0.1:$(agent_link_port "$i" "$j"),$(replica_addr "$j")"
    done
  done
}

proxy_pidfile() { echo "$CLUSTER_DIR/pids/proxy.pid"; }
proxy_running() {
  local pid; pid="$(cat "$(proxy_pidfile)" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q plum-faultproxy "/proc/$pid/cmdline" 2>/dev/null
}

start_proxy() {
  proxied_on || return 0
  proxy_running && return 0
  mkdir -p "$CLUSTER_DIR/pids" "$CLUSTER_DIR/logs"
  # Computed here: inside the backgrounded command it would delay the exec past the check below.
  local flags
  flags="$(proxy_link_flags)"
  # shellcheck disable=SC2086 # one word per flag and value
  PLUM_LOG="${PLUM_LOG:-info}" nohup "$BIN_DIR/plum-faultproxy" --control "$PROXY_CONTROL" serve \
    $flags >>"$CLUSTER_DIR/logs/proxy.log" 2>&1 &
  echo $! >"$(proxy_pidfile)"
  local deadline=$((SECONDS + 10))
  until curl -sf --max-time 1 "http://$PROXY_CONTROL/links" >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ] || ! proxy_running; then
      echo "the fault proxy did not start; see $CLUSTER_DIR/logs/proxy.log" >&2; return 1
    fi
    sleep 0.1
  done
}

stop_proxy() {
  local pid; pid="$(cat "$(proxy_pidfile)" 2>/dev/null || true)"
  if [ -n "$pid" ] && proxy_running; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -f "$(proxy_pidfile)"
}

# What replica I dials its peers at, through its own links (--peer-via).
peer_via_list() {
  local out="" j
  for j in $(seq 1 "$REPLICAS"); do
    [ "$j" = "$1" ] || out="$out${out:+,}$j=127.0.0.1:$(raft_link_port "$1" "$j")"
  done
  echo "$out"
}

# The controller URLs agent N uses: its own links when proxied.
agent_controllers_list() {
  proxied_on || { controllers_list; return; }
  local out="" j
  for j in $(seq 1 "$REPLICAS"); do out="$out${out:+,}$(scheme)://127.0.0.1:$(agent_link_port "$1" "$j")"; done
  echo "$out"
}

proxied_controllers_list() {
  local out="" j
  for j in $(seq 1 "$REPLICAS"); do out="$out${out:+,}$(scheme)://127.0.0.1:$(client_link_port "$j")"; done
  echo "$out"
}

# TLS: on once `up --tls` made the local CA and certificate (until `wipe`).
TLS_DIR="$CLUSTER_DIR/tls"
tls_on() { [ -s "$TLS_DIR/ca.pem" ]; }
scheme() { if tls_on; then echo https; else echo http; fi; }
replica_url() { echo "$(scheme)://$(replica_addr "$1")"; }

controllers_list() {
  local out="" i
  for i in $(seq 1 "$REPLICAS"); do out="$out${out:+,}$(replica_url "$i")"; done
  echo "$out"
}

# The local CA and one controller certificate (127.0.0.1, localhost), made with plum-certs.
ensure_tls() {
  ensure_built plum-certs
  "$BIN_DIR/plum-certs" --out "$TLS_DIR" >/dev/null
}

# True when the package manager says PACKAGE is installed (file names can fool a check:
# Debian images ship libclang-cpp*.so, which is not the libclang bindgen loads).
pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Installs what a fresh Debian machine lacks to build the project: RocksDB's bindings are made
# by bindgen, which loads libclang (package libclang-dev) and asks clang for system headers.
ensure_build_deps() {
  if ! command -v dpkg-query >/dev/null; then
    echo "not a Debian system: make sure libclang and clang are installed (bindgen needs them)" >&2
    return 0
  fi
  ensure_pkgs "needed to build RocksDB's bindings" clang libclang-dev
}

# Installs those of the named Debian packages dpkg does not report installed; fails if any is
# still missing afterwards. The first argument says what they are for.
ensure_pkgs() {
  local why="$1" missing=() p; shift
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  [ "${#missing[@]}" -gt 0 ] || return 0
  echo "installing ${missing[*]} ($why)" >&2
  local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  for p in "${missing[@]}"; do
    pkg_installed "$p" || { echo "failed to install $p" >&2; return 1; }
  done
}

# What scripts/test.sh needs beyond the Rust build, each skippable like its tests:
# Debian's headless Chromium for the console's browser test with node and the pinned
# playwright-core (PLUM_SKIP_BROWSER=1); a venv with the Python SDK and pytest
# (PLUM_SKIP_PYTHON=1; this machine's python3 is pyenv's, not a Debian package, so Debian's is
# installed only when no usable python3 exists); the JDK and Maven with the plugins and
# libraries the Java SDK builds with offline from /usr/share/maven-repo (PLUM_SKIP_JAVA=1).
ensure_test_deps() {
  command -v dpkg-query >/dev/null || { echo "not a Debian system: install the test tools by hand" >&2; return 0; }
  ensure_pkgs "curl for the scripts" curl
  if [ "${PLUM_SKIP_BROWSER:-0}" != 1 ]; then
    ensure_pkgs "the console's browser test" chromium chromium-driver
    pkg_installed nodejs || ensure_pkgs "the console's browser test" nodejs npm
    (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ "${PLUM_SKIP_PYTHON:-0}" != 1 ]; then
    if ! { command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; }; then
      ensure_pkgs "the Python SDK's tests" python3 python3-venv
    fi
    export PLUM_PY_VENV="${PLUM_PY_VENV:-$HOME/.cache/plum-py-venv}"
    [ -x "$PLUM_PY_VENV/bin/python" ] || python3 -m venv "$PLUM_PY_VENV"
    "$PLUM_PY_VENV/bin/pip" install -q --upgrade "$ROOT/sdk/python[test]"
    # The oldest httpx2 the SDK accepts (2.14, the last that installs on Python 3.10, which this
    # machine lacks): the SDK's tests run against it too.
    export PLUM_PY_FLOOR_VENV="${PLUM_PY_FLOOR_VENV:-$HOME/.cache/plum-py-venv-floor}"
    [ -x "$PLUM_PY_FLOOR_VENV/bin/python" ] || python3 -m venv "$PLUM_PY_FLOOR_VENV"
    "$PLUM_PY_FLOOR_VENV/bin/pip" install -q --upgrade "$ROOT/sdk/python[test]" "httpx2==2.14.0"
  fi
  if [ "${PLUM_SKIP_JAVA:-0}" != 1 ]; then
    ensure_pkgs "the Java SDK" openjdk-17-jdk-headless maven junit5 libjackson2-databind-java \
      libsurefire-java libmaven-compiler-plugin-java libmaven-resources-plugin-java \
      libmaven-jar-plugin-java libmaven-install-plugin-java libmaven-clean-plugin-java
  fi
}

# Prints the libclang shared library bindgen will load: LIBCLANG_PATH if set, otherwise the
# unversioned libclang.so that libclang-dev installs (the name bindgen looks for first).
libclang_in_use() {
  if [ -n "${LIBCLANG_PATH:-}" ]; then echo "LIBCLANG_PATH=$LIBCLANG_PATH"; return; fi
  local dev f
  dev="$(dpkg-query -W -f='${Depends}' libclang-dev 2>/dev/null | grep -o 'libclang-[0-9]*-dev' | head -n1)"
  f="$(dpkg -L "${dev:-libclang-dev}" 2>/dev/null | grep -E '/libclang\.so$' | head -n1)"
  if [ -z "$f" ]; then echo "none found (package ${dev:-libclang-dev})"; return; fi
  echo "$f -> $(readlink -f "$f") (from package ${dev:-libclang-dev})"
}

# Builds the named binaries of the chosen profile when any is missing.
ensure_built() {
  local missing=0 b
  for b in "$@"; do [ -x "$BIN_DIR/$b" ] || missing=1; done
  if [ "$missing" = 1 ]; then
    ensure_build_deps
    local flag=""; [ "$PROFILE" = release ] && flag="--release"
    echo "building $* ($PROFILE; a first build compiles RocksDB and takes a while)" >&2
    (cd "$ROOT" && cargo build $flag --workspace --bins) >&2
  fi
}

replica_pid() {
  local f; f="$(replica_pidfile "$1")"
  if [ -f "$f" ]; then cat "$f"; fi
}

replica_running() {
  local pid; pid="$(replica_pid "$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q plum-controller "/proc/$pid/cmdline" 2>/dev/null
}

# The secret replicas authenticate each other with: made once, readable by this user only.
secret_file() { echo "$CLUSTER_DIR/cluster.secret"; }
ensure_secret() {
  local f; f="$(secret_file)"
  [ -s "$f" ] && return 0
  mkdir -p "$CLUSTER_DIR"
  (umask 077 && head -c 32 /dev/urandom | base64 >"$f")
}

# The bootstrap admin token: written by the first replica to start (next to the secret).
admin_token_file() { echo "$CLUSTER_DIR/admin.token"; }

# curl with the admin token (client authentication is on in the local cluster too), trusting
# the local CA when the cluster speaks TLS.
api_curl() {
  local f args=(); f="$(admin_token_file)"
  [ -s "$f" ] && args+=(-H "Authorization: Bearer $(head -n1 "$f")")
  tls_on && args+=(--cacert "$TLS_DIR/ca.pem")
  curl "${args[@]}" "$@"
}

start_replica() {
  local id="$1"
  if replica_running "$id"; then return 0; fi
  # nohup would fail in the background and leave the caller waiting for a replica that never ran.
  [ -x "$BIN_DIR/plum-controller" ] ||
    { echo "no $BIN_DIR/plum-controller (build it, or set CARGO_TARGET_DIR / PLUM_PROFILE)" >&2; return 1; }
  mkdir -p "$CLUSTER_DIR/pids" "$CLUSTER_DIR/logs" "$CLUSTER_DIR/data/$id"
  ensure_secret
  local tls=() via=()
  tls_on && tls=(--tls-cert "$TLS_DIR/controller.pem" --tls-key "$TLS_DIR/controller.key" --tls-ca "$TLS_DIR/ca.pem")
  proxied_on && via=(--peer-via "$(peer_via_list "$id")")
  PLUM_LOG="${PLUM_LOG:-info,openraft=warn}" nohup "$BIN_DIR/plum-controller" \
    --id "$id" --listen "$(replica_addr "$id")" --data-dir "$CLUSTER_DIR/data/$id" \
    --peers "$(peers_list)" "${via[@]}" --cluster-secret-file "$(secret_file)" "${tls[@]}" >>"$(replica_log "$id")" 2>&1 &
  echo $! >"$(replica_pidfile "$id")"
}

stop_replica() {
  local id="$1" pid i
  pid="$(replica_pid "$id")"
  if [ -n "$pid" ] && replica_running "$id"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    # Gone for good before returning: until then it holds its port and a restart cannot bind.
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  fi
  rm -f "$(replica_pidfile "$id")"
}

# Agents: node ids node-1..node-N; each keeps instance pid files and logs in its data dir.
agent_dir() { echo "$CLUSTER_DIR/agents/node-$1"; }
agent_pidfile() { echo "$CLUSTER_DIR/pids/agent-$1.pid"; }
agent_log() { echo "$CLUSTER_DIR/logs/agent-$1.log"; }
agent_token_file() { echo "$(agent_dir "$1")/agent.token"; }

# An `agent` token for node-N (it may act for that node only), made once with the admin token.
ensure_agent_token() {
  local i="$1" f body created token deadline
  f="$(agent_token_file "$i")"
  [ -s "$f" ] && return 0
  mkdir -p "$(agent_dir "$i")"
  body=$(printf '{"name":"agent node-%s","role":"agent","nodeId":"node-%s"}' "$i" "$i")
  deadline=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$deadline" ]; do
    created="$(api_curl -s --max-time 3 -XPOST "$(replica_url 1)/v1/tokens" -d "$body" || true)"
    token="$(printf '%s' "$created" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')"
    if [ -n "$token" ]; then
      (umask 077 && echo "$token" >"$f")
      return 0
    fi
    sleep 0.3
  done
  echo "could not create an agent token for node-$i: $created" >&2
  return 1
}

agent_running() {
  local pid; pid="$(cat "$(agent_pidfile "$1")" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q plum-agent "/proc/$pid/cmdline" 2>/dev/null
}

start_agent() {
  local i="$1"
  if agent_running "$i"; then return 0; fi
  mkdir -p "$CLUSTER_DIR/pids" "$CLUSTER_DIR/logs" "$(agent_dir "$i")"
  ensure_agent_token "$i"
  local tls=()
  tls_on && tls=(--ca-file "$TLS_DIR/ca.pem")
  # PLUM_AGENT_TTL_MS (read by the agent itself) sets the TTL the node declares (default 1 s).
  PLUM_LOG="${PLUM_LOG:-info}" nohup "$BIN_DIR/plum-agent" --node-id "node-$i" \
    --controllers "$(agent_controllers_list "$i")" --data-dir "$(agent_dir "$i")" \
    --token-file "$(agent_token_file "$i")" "${tls[@]}" >>"$(agent_log "$i")" 2>&1 &
  echo $! >"$(agent_pidfile "$i")"
}

# Kills the instance processes an agent started (their process groups, from its pid files).
kill_instances() {
  local f pid
  for f in "$(agent_dir "$1")"/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    [ -n "$pid" ] && kill -"${2:-KILL}" -- "-$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

# SIGKILL: the node is gone at once, agent and instances.
kill_node() {
  local pid; pid="$(cat "$(agent_pidfile "$1")" 2>/dev/null || true)"
  if [ -n "$pid" ] && agent_running "$1"; then kill -KILL "$pid" 2>/dev/null || true; fi
  kill_instances "$1" KILL
  rm -f "$(agent_pidfile "$1")"
}

# A clean stop: the agent, then its instances (which outlive an agent on purpose).
stop_agent() {
  local pid i; pid="$(cat "$(agent_pidfile "$1")" 2>/dev/null || true)"
  if [ -n "$pid" ] && agent_running "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  kill_instances "$1" TERM
  rm -f "$(agent_pidfile "$1")"
}

# Prints the leader id one replica reports, or nothing.
leader_from() {
  api_curl -s --max-time 1 "$(replica_url "$1")/v1/cluster" | sed -n 's/.*"leaderId":\([0-9][0-9]*\).*/\1/p'
}
