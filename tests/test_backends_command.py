"""`python -m keras_siglip backends`: children per backend, oracle agreement, honest timing.

Each backend pass runs the command for its own backend only (a child process per backend costs
seconds of imports and compilation), on a transformers folder written by `save_pretrained`;
the table logic is checked on made-up results.
"""

import json

import keras
import numpy as np
import pytest

from keras_siglip.apps import backends
from keras_siglip.cli import main
from tests import _hf_checkpoints as hf_files

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("sentencepiece")
    pytest.importorskip("safetensors")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    work = tmp_path_factory.mktemp("checkpoint")
    return hf_files.save_siglip(work / "siglip", work)


def test_checkpoint_on_this_backend_agrees_with_the_oracle(checkpoint, capsys, monkeypatch):
    others = [b for b in backends.BACKENDS if b != BACKEND]
    real = backends.installed
    monkeypatch.setattr(backends, "installed", lambda b: b == BACKEND or (b != others[0]
                                                                          and real(b)))
    status = main(["backends", "--model", str(checkpoint), "--backends",
                   f"{BACKEND},{others[0]}", "--rounds", "2", "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert status == 0, err
    report = json.loads(out)
    mine = report["backends"][BACKEND]
    assert mine["status"] == "ok", mine
    assert mine["oracle_diff"]["float32"] <= 1e-5  # float32 target on tiny models
    assert mine["oracle_diff"]["bfloat16"] <= 0.1  # bfloat16 runs, within its precision
    for dtype in ("float32", "bfloat16"):
        assert set(mine["seconds"][dtype]) == {"1", "8"}
        assert all(0 < s < 60 for s in mine["seconds"][dtype].values())
    assert report["backends"][others[0]] == {"status": "not installed"}
    assert f"KERAS_BACKEND={BACKEND}" in report["recommendation"]
    assert "running" in err  # progress on stderr


def _result(seconds8, oracle=1e-7, bf16=None):
    seconds = {"float32": {"1": seconds8 / 2, "8": seconds8}}
    if bf16:
        seconds["bfloat16"] = {"1": bf16 / 2, "8": bf16}
    emb = {"float32/zimg": np.full((2, 3), oracle), "float32/ztxt": np.zeros((2, 3))}
    return {"status": "ok", "seconds": seconds, "errors": {}, "embeddings": emb}


def test_compare_table_and_recommendation():
    oracle = (np.zeros((2, 3)), np.zeros((2, 3)))
    results = {"jax": _result(0.004, bf16=0.002), "tensorflow": _result(0.002, oracle=0.5),
               "torch": _result(0.008)}  # fmt: skip
    backends.compare(results, oracle)
    assert results["jax"]["oracle_diff"]["float32"] == pytest.approx(1e-7)
    assert results["jax"]["others_diff"] == pytest.approx(0.5 - 1e-7)
    # tensorflow is fastest but disagrees with the oracle: not recommended.
    line = backends.recommend(results)
    assert "KERAS_BACKEND=jax" in line and "2.0x faster than torch" in line
    assert "bfloat16 is 2.0x faster" in line
    table = backends.table(results)
    assert table.splitlines()[0].split()[:2] == ["backend", "status"]
    assert "5.0e-01" in table and "4.0" in table  # tensorflow's difference; jax's 4.0 ms
    failed = {"jax": {"status": "failed: ImportError: x"}}
    backends.compare(failed, oracle)
    assert "No backend" in backends.recommend(failed)


def test_bad_arguments_are_one_line(capsys):
    assert main(["backends", "--backends", "jax,mxnet"]) == 1
    assert "subset of jax,tensorflow,torch" in capsys.readouterr().err
    assert main(["backends", "--rounds", "0"]) == 1
    assert main(["backends", "--model", "/nonexistent/folder"]) == 1
    assert capsys.readouterr().err.startswith("error:")
