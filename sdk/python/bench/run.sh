#!/bin/sh
# The Python SDK's bench program for plum-bench --external (see sdk_bench.py); the SDK's venv,
# else PYTHON, else python3.
here=$(dirname "$0")
py=${PYTHON:-$HOME/.cache/plum-py-venv/bin/python}
[ -x "$py" ] || py=python3
exec "$py" "$here/sdk_bench.py" "$@"
