#!/usr/bin/env bash
# chaos/scenario.sh SCENARIO [plum-bench flags...]
# Runs one plum-bench scenario against the running local cluster (scripts/cluster.sh up); the
# named scripts beside this one call it. Prints the scenario's trial lines and one result line;
# exits non-zero when the scenario failed (a lost write, a duplicate, a violation).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
if [ ! -f "$ENV_FILE" ]; then
  echo "no running cluster found ($ENV_FILE missing): run scripts/cluster.sh up first" >&2
  exit 1
fi
ensure_built plum-bench
cd "$ROOT"
exec "$BIN_DIR/plum-bench" --plum-home "$PLUM_HOME" "$@"
