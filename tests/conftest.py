"""Shared pytest set-up: report which Keras backend this pass runs on; free real-size models."""

import gc

import keras
import pytest


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(autouse=True)
def _free_real_size_models(request):
    """After each `slow` test (real-size models, up to 1.9B parameters), drop what it built.

    Without this, models of earlier tests stay reachable (Keras' global state, reference cycles
    not yet collected) and the peak memory of the slow pass grows from test to test: 17.7 GB on
    TensorFlow against 9.2 GB for the largest preset alone, and past 24 GB (killed) in one run.
    """
    yield
    if request.node.get_closest_marker("slow"):
        keras.backend.clear_session()
        gc.collect()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Random transformers `SiglipModel` / `Siglip2Model` folders written by `save_pretrained`
    with a SentencePiece model trained here and real image-processor configs, and a few PNG
    files (`tests/_hf_checkpoints.py`). Needs torch, transformers, sentencepiece and PIL: the
    modules that use it skip without them."""
    from tests import _hf_checkpoints as hf_files

    return hf_files.make_all(tmp_path_factory.mktemp("checkpoints"))
