#!/usr/bin/env bash
# The main job on a fresh machine: set up the environment, then run `python -m keras_siglip demo`
# on the backend named by KERAS_BACKEND (default jax). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
exec "$PY" -m keras_siglip demo "$@"
