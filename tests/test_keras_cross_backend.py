"""A `.keras` saved on any backend loads on each other one with outputs within 1e-5.

One subprocess per backend saves a tiny SigLIP and a tiny NaFlex SigLIP with their outputs; then
one subprocess per backend loads the other two backends' files: all 6 ordered pairs.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "tensorflow", "torch")


def _run_all(step, folder):
    procs = {}
    for backend in BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(ROOT))
        procs[backend] = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "_keras_cross_worker.py"), step, str(folder)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
    results = {}
    for backend, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{step} on {backend}:\n{err[-3000:]}"
        results[backend] = out
    return results


def test_keras_files_load_on_every_other_backend(tmp_path):
    _run_all("save", tmp_path)
    for backend in BACKENDS:
        assert (tmp_path / f"fixed_{backend}.keras").exists()
        assert (tmp_path / f"naflex_{backend}.keras").exists()
    results = _run_all("load", tmp_path)
    for backend, out in results.items():
        assert "worst" in out, (backend, out)
