# Sourced by scripts/test.sh and scripts/run.sh: create the virtual environment and install the
# pinned requirements. Set KERAS_SIGLIP_VENV to use another folder, PIP_EXTRA_ARGS for pip options
# (e.g. "--extra-index-url https://download.pytorch.org/whl/cpu" where PyPI's torch is a CUDA build).
VENV=${KERAS_SIGLIP_VENV:-.venv}
PYTHON_BIN=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.keras-siglip-requirements"
want=$(cat requirements/test.txt requirements/no-deps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing pinned requirements (torch CPU first, then the rest)"
  # torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
  "$PY" -m pip install -q ${PIP_EXTRA_ARGS:-} "$(grep '^torch==' requirements/test.txt)"
  "$PY" -m pip install -q ${PIP_EXTRA_ARGS:-} -r requirements/test.txt
  # Without their declared dependencies (keras-hub's tensorflow-text would replace tensorflow).
  "$PY" -m pip install -q ${PIP_EXTRA_ARGS:-} --no-deps -r requirements/no-deps.txt
  "$PY" -m pip install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
