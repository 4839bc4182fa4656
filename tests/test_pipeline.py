"""`SigLIPPipeline` on the current backend against transformers, on checkpoint folders made here.

Embeddings, zero-shot probabilities (transformers' `pipeline("zero-shot-image-classification")`)
and retrieval scores on PNG files must agree within 1e-5, for a SigLIP 1 fixed-resolution and
a SigLIP 2 NaFlex checkpoint; saving (as `.keras` with its processor, or as a transformers
folder) must give the same answers after loading.
"""

import numpy as np
import pytest

from tests import _hf_checkpoints as hf_files

pytest.importorskip("sentencepiece")
pytest.importorskip("PIL")
pytest.importorskip("safetensors")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from keras_siglip.pipeline import SigLIPPipeline  # noqa: E402
from keras_siglip.processor import ImageReadError  # noqa: E402

TOL = 1e-5
TEXTS = ["a cat", "a dog on the grass", "A RED CAR!"]


@pytest.fixture(scope="module")
def pipes(folders):
    return {name: SigLIPPipeline.from_preset(folders[name], batch_size=2)
            for name in ("siglip", "siglip2")}  # fmt: skip


def _close(actual, expected):
    error = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    assert error <= TOL, f"max |keras-siglip - transformers| = {error:.3g} > {TOL:g}"


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_embeddings_and_probabilities_match_transformers(folders, pipes, name):
    pipe = pipes[name]
    reference = hf_files.hf_reference(folders[name], folders["pngs"], TEXTS)
    _close(pipe.embed_images(folders["pngs"]), reference["images"])
    _close(pipe.embed_texts(TEXTS), reference["texts"])
    _close(pipe.probabilities(pipe.embed_images(folders["pngs"]), pipe.embed_texts(TEXTS)),
           reference["probabilities"])


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_zero_shot_matches_transformers_pipeline(folders, pipes, name):
    classifier = transformers.pipeline("zero-shot-image-classification", model=str(folders[name]))
    answers = classifier(folders["pngs"], candidate_labels=hf_files.LABELS)
    expected = np.array([[next(a["score"] for a in answer if a["label"] == label)
                          for label in hf_files.LABELS] for answer in answers])  # fmt: skip
    result = pipes[name].zero_shot_classify(folders["pngs"], hf_files.LABELS, top_k=2)
    _close(result.probabilities, expected)
    assert result.top_k.shape == (len(folders["pngs"]), 2)
    assert np.array_equal(result.top_k[:, 0], np.argmax(expected, axis=1))


def test_retrieve_ranks_by_the_pairs_probability(folders, pipes):
    pipe = pipes["siglip"]
    reference = hf_files.hf_reference(folders["siglip"], folders["pngs"], TEXTS)
    index = pipe.embed_images(folders["pngs"])
    found = pipe.retrieve(TEXTS, index, k=3)
    expected = reference["probabilities"].T  # (texts, images)
    order = np.argsort(-expected, axis=1, kind="stable")[:, :3]
    assert np.array_equal(found.indices, order)
    _close(found.scores, np.take_along_axis(expected, order, axis=1))
    back = pipe.retrieve(folders["pngs"][:2], pipe.embed_texts(TEXTS), k=10, kind="image")
    assert back.indices.shape == (2, len(TEXTS))  # k is capped at the index size
    with pytest.raises(ValueError, match=r"shape \(count, 32\)"):
        pipe.retrieve(TEXTS, index[:, :5])
    with pytest.raises(ValueError, match="kind must be"):
        pipe.retrieve(TEXTS, index, kind="audio")


def test_unreadable_files_stop_or_are_skipped(folders, pipes, tmp_path, capsys):
    pipe = pipes["siglip"]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    files = [folders["pngs"][0], str(broken), folders["pngs"][1]]
    with pytest.raises(ImageReadError, match=r"image 1 \(.*broken\.png\)"):
        pipe.embed_images(files)
    kept = pipe.embed_images_kept(files, on_error="skip")
    assert kept.kept.tolist() == [0, 2]
    # (batches differ: one padded image and two; float32 rounding only)
    np.testing.assert_allclose(kept.embeddings, pipe.embed_images([files[0], files[2]]), atol=1e-6)
    assert "warning: skipped image 1" in capsys.readouterr().err
    with pytest.raises(ImageReadError, match="None of the 1 images"):
        pipe.embed_images_kept([str(broken)], on_error="skip")


def test_long_runs_show_progress(folders, pipes, capsys):
    pipe = SigLIPPipeline(pipes["siglip"].model, pipes["siglip"].processor, batch_size=1)
    pipe.embed_images(folders["pngs"] * 2, progress=True)
    assert "encoding images" in capsys.readouterr().err


def test_image_arrays_of_the_wrong_rank_or_none_are_refused(pipes):
    pipe = pipes["siglip"]
    with pytest.raises(ValueError, match=r"one image \(height, width, channels\).*\(8, 8\)"):
        pipe.embed_images(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="No images given"):
        pipe.embed_images(np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="No texts given"):
        pipe.embed_texts([])


def test_model_and_processor_must_belong_together(pipes):
    with pytest.raises(ValueError, match="the model is fixed-resolution, the processor NaFlex"):
        SigLIPPipeline(pipes["siglip"].model, pipes["siglip2"].processor)
    with pytest.raises(TypeError, match="SigLIPProcessor"):
        SigLIPPipeline(pipes["siglip"].model, pipes["siglip"].processor.tokenizer)


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_save_keeps_model_and_processor_together(folders, pipes, name, tmp_path):
    pipe = pipes[name]
    expected = pipe.zero_shot_classify(folders["pngs"], hf_files.LABELS).probabilities
    keras_file = pipe.save(tmp_path / "model.keras")
    assert (tmp_path / "model.processor" / "keras_siglip_processor.json").is_file()
    again = SigLIPPipeline.from_preset(keras_file)
    _close(again.zero_shot_classify(folders["pngs"], hf_files.LABELS).probabilities, expected)
    with pytest.raises(FileExistsError, match="overwrite"):
        pipe.save(keras_file)
    # A transformers folder that transformers itself reads, processor included.
    folder = pipe.save(tmp_path / "hf")
    _close(hf_files.hf_reference(folder, folders["pngs"], TEXTS)["probabilities"],
           hf_files.hf_reference(folders[name], folders["pngs"], TEXTS)["probabilities"])
    _close(SigLIPPipeline.from_preset(folder).embed_texts(TEXTS), pipe.embed_texts(TEXTS))
