#!/usr/bin/env bash
# The whole test suite, once per Keras backend (JAX, TensorFlow, PyTorch), in its own virtual
# environment. Backend-independent modules (the NumPy oracle, preprocessing, tokenizers) run in the
# first pass only; the real-size parameter-count tests (marked slow) run once, on TensorFlow, whose
# variable initialisation is the fastest. Extra arguments go to every pytest call.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh || exit 1

reports=$(mktemp -d)
# Two pytest workers, one test file each at a time (module fixtures are built once): most tests are
# single-threaded eager work, so this uses both cores. KERAS_SIGLIP_WORKERS=0 runs in one process.
workers=${KERAS_SIGLIP_WORKERS:-2}
XDIST=""
if [ "$workers" != "0" ]; then XDIST="-n $workers --dist loadfile"; fi
status=0
run() {
  local backend=$1 name=$2; shift 2
  echo
  echo "=== KERAS_BACKEND=$backend: $name ==="
  KERAS_BACKEND=$backend "$PY" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning \
    --junitxml="$reports/$backend-$name.xml" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then status=1; echo "=== FAILED (exit $rc): KERAS_BACKEND=$backend $name ==="; fi
}

# LLVM optimisations off for the JAX pass: eager JAX compiles every op for every shape, and on 2
# cores that compile time, not the arithmetic, dominates the suite (about 2x faster; numerics are
# still checked at the same tolerances).
XLA_FLAGS="${XLA_FLAGS:---xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true}" \
  run jax all -m "not slow" $XDIST "$@"
run tensorflow backend -m "not slow and not backend_independent" $XDIST "$@"
run torch backend -m "not slow and not backend_independent" $XDIST "$@"
if [ -z "${KERAS_SIGLIP_SKIP_SLOW:-}" ]; then
  run tensorflow slow -m "slow" "$@"
fi

"$PY" - "$reports" <<'PY'
import sys, glob, xml.etree.ElementTree as ET
totals = dict(tests=0, failures=0, errors=0, skipped=0)
for path in sorted(glob.glob(sys.argv[1] + "/*.xml")):
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print()
print(f"all backends: {passed} passed, {failed} failed, {totals['skipped']} skipped")
PY
rm -rf "$reports"
exit $status
