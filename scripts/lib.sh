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

replica_addr() { echo "127.0.0.1:$((BASE_PORT + $1 - 1))"; }
replica_pidfile() { echo "$CLUSTER_DIR/pids/$1.pid"; }
replica_log() { echo "$CLUSTER_DIR/logs/$1.log"; }

peers_list() {
  local out="" i
  for i in $(seq 1 "$REPLICAS"); do out="$out${out:+,}$i=$(replica_addr "$i")"; done
  echo "$out"
}

controllers_list() {
  local out="" i
  for i in $(seq 1 "$REPLICAS"); do out="$out${out:+,}http://$(replica_addr "$i")"; done
  echo "$out"
}

# Installs what a fresh Debian machine lacks to build the project (RocksDB's bindings need libclang).
ensure_build_deps() {
  if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
    echo "installing clang and libclang-dev (needed to build RocksDB's bindings)" >&2
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-dev >/dev/null
  fi
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

start_replica() {
  local id="$1"
  if replica_running "$id"; then return 0; fi
  mkdir -p "$CLUSTER_DIR/pids" "$CLUSTER_DIR/logs" "$CLUSTER_DIR/data/$id"
  PLUM_LOG="${PLUM_LOG:-info,openraft=warn}" nohup "$BIN_DIR/plum-controller" \
    --id "$id" --listen "$(replica_addr "$id")" --data-dir "$CLUSTER_DIR/data/$id" \
    --peers "$(peers_list)" >>"$(replica_log "$id")" 2>&1 &
  echo $! >"$(replica_pidfile "$id")"
}

stop_replica() {
  local id="$1" pid i
  pid="$(replica_pid "$id")"
  if [ -n "$pid" ] && replica_running "$id"; then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(replica_pidfile "$id")"
}

# Prints the leader id one replica reports, or nothing.
leader_from() {
  curl -s --max-time 1 "http://$(replica_addr "$1")/v1/cluster" | sed -n 's/.*"leaderId":\([0-9][0-9]*\).*/\1/p'
}
