"""The demo (`python -m keras_siglip demo`) end to end with tiny settings, on the current backend.

The 90% zero-shot accuracy of the default settings is measured by running the demo itself; a few
steps of a tiny model only show that every stage runs and writes what the examples load.
"""

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("sentencepiece")
pytest.importorskip("matplotlib")

import keras  # noqa: E402

from keras_siglip import cli  # noqa: E402
from keras_siglip.apps import digits as demo  # noqa: E402

TINY = ["--steps", "6", "--batch-size", "10", "--image-size", "8", "--patch-size", "4",
        "--width", "16", "--depth", "1", "--heads", "2", "--learning-rate", "3e-3"]  # fmt: skip
METRICS = ("zero_shot_accuracy", "recall@1_image_to_text", "recall@1_text_to_image")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run through the command line; returns its folder and `run_demo`'s results."""
    folder = tmp_path_factory.mktemp("demo")
    returned = []
    original = demo.run_demo

    def recording(**kwargs):
        returned.append(original(**kwargs))
        return returned[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "run_demo", recording)
        assert cli.main(["demo", *TINY, "--seed", "1", "--output", str(folder)]) == 0
    assert len(returned) == 1
    return folder, returned[0]


@pytest.fixture(scope="module")
def output(run):
    return run[0]


def test_demo_writes_plots_model_and_tokenizer(output):
    for name in (demo.MATRIX_FILE, demo.CURVE_FILE):
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / demo.MODEL_FILE).stat().st_size > 0
    assert (output / demo.TOKENIZER_FILE).stat().st_size > 0
    metadata = json.loads((output / demo.METADATA_FILE).read_text())
    assert metadata["backend"] == keras.backend.backend()
    for key in METRICS:
        assert 0.0 <= metadata[key] <= 1.0
    assert len(metadata["test_indices"]) == 359


def test_saved_model_reproduces_the_reported_accuracy(output):
    # What the examples do: reload model and tokenizer, classify the held-out digits.
    from keras_siglip.tasks import zero_shot_classify

    model, tokenizer, metadata = demo.load_trained(output)
    _, images, labels = demo.held_out_digits(metadata)
    result = zero_shot_classify(
        model, tokenizer, images, metadata["class_names"], metadata["eval_templates"]
    )
    accuracy = np.mean(result.top_k[:, 0] == labels)
    assert accuracy == pytest.approx(metadata["zero_shot_accuracy"], abs=1 / len(labels))


def test_run_demo_returns_metrics(run):
    folder, results = run
    assert results["backend"] == keras.backend.backend()
    assert results["steps"] == 6 and results["epochs"] == 1
    for key in METRICS:
        assert 0.0 <= results[key] <= 1.0
    assert np.isfinite(results["final_loss"]) and results["train_seconds"] > 0
    assert results["paths"]["model"] == str(folder / demo.MODEL_FILE)


def test_missing_output_says_to_run_the_demo(tmp_path):
    with pytest.raises(FileNotFoundError, match="Run the demo first"):
        demo.load_trained(tmp_path / "nothing")


def test_batches_are_class_balanced():
    labels = np.repeat(np.arange(10), 7)
    schedule = demo.batch_schedule(labels, 20, 2, np.random.default_rng(0))
    assert schedule.shape == (2, 3, 20)
    for batch in schedule.reshape(-1, 20):
        assert np.all(np.bincount(labels[batch], minlength=10) == 2)


def test_backend_flag_round_trips_to_the_child_command():
    import argparse

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args([*TINY, "--backend", "torch", "--output", "x"])
    child = parser.parse_args(demo._argv_for_child(args)[1:])
    assert {**vars(child), "backend": "torch"} == vars(args)
