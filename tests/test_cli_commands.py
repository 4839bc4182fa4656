"""`python -m keras_siglip classify | embed | search` on transformers folders made here.

The `--json` answers on PNG files equal transformers' (its zero-shot pipeline, its model's
embeddings and probabilities) within 1e-5 on the current backend; bad input gives one line on
stderr naming the problem, and exit status 1.
"""

import importlib.util
import json
import shutil

import numpy as np
import pytest

from tests import _hf_checkpoints as hf_files

pytest.importorskip("sentencepiece")
pytest.importorskip("PIL")
pytest.importorskip("safetensors")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from keras_siglip.cli import main  # noqa: E402

TOL = 1e-5
TEXTS = ["a cat", "a dog on the grass", "A RED CAR!"]


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def _close(actual, expected):
    error = float(np.max(np.abs(np.asarray(actual, np.float64) - expected)))
    assert error <= TOL, f"max |command line - transformers| = {error:.3g} > {TOL:g}"


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_classify_json_equals_transformers_pipeline(folders, name, capsys):
    classifier = transformers.pipeline("zero-shot-image-classification", model=str(folders[name]))
    answers = classifier(folders["pngs"], candidate_labels=hf_files.LABELS)
    status, out, err = _run(capsys, "classify", "--model", folders[name], "--labels",
                            ",".join(hf_files.LABELS), "--json", *folders["pngs"])
    assert status == 0, err
    rows = json.loads(out)
    assert [row["image"] for row in rows] == folders["pngs"]
    for row, answer in zip(rows, answers):
        expected = {a["label"]: a["score"] for a in answer}
        _close([row["scores"][label] for label in hf_files.LABELS],
               [expected[label] for label in hf_files.LABELS])
        assert row["best"] == answer[0]["label"]
    assert "loaded" in err  # what is going on goes to stderr, the answer to stdout


def test_classify_table(folders, capsys):
    status, out, _ = _run(capsys, "classify", "--model", folders["siglip"], "--labels",
                          "a cat, a dog", *folders["pngs"][:2])
    assert status == 0
    header, rule, *rows = out.strip().splitlines()
    assert header.split() == ["image", "best", "a", "cat", "a", "dog"]
    assert set(rule.replace(" ", "")) == {"-"} and len(rows) == 2
    assert rows[0].startswith(folders["pngs"][0])


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_embed_and_search_equal_transformers(folders, name, capsys, tmp_path):
    reference = hf_files.hf_reference(folders[name], folders["pngs"], TEXTS)
    images, texts = tmp_path / "images.npy", tmp_path / "texts.npy"
    status, out, err = _run(capsys, "embed", "--model", folders[name], *folders["pngs"],
                            "--out", images, "--json")
    assert status == 0, err
    assert json.loads(out)["count"] == len(folders["pngs"])
    _close(np.load(images), reference["images"])
    names = json.loads(images.with_suffix(".json").read_text())
    assert names["kind"] == "image" and names["names"] == folders["pngs"]

    status, _, err = _run(capsys, "embed", "--model", folders[name], folders["texts"],
                          "--out", texts)  # one text a line; empty lines are skipped
    assert status == 0, err
    _close(np.load(texts), reference["texts"])
    assert json.loads(texts.with_suffix(".json").read_text())["names"] == TEXTS

    status, out, err = _run(capsys, "search", "--model", folders[name], "--index", images,
                            "-k", "2", "--json", *TEXTS)
    assert status == 0, err
    for i, result in enumerate(json.loads(out)):
        expected = reference["probabilities"][:, i]
        best = np.argsort(-expected, kind="stable")[:2]
        assert [hit["name"] for hit in result["results"]] == [folders["pngs"][j] for j in best]
        _close([hit["score"] for hit in result["results"]], expected[best])

    # An image query against the text index.
    status, out, err = _run(capsys, "search", "--model", folders[name], "--index", texts,
                            "--json", folders["pngs"][3])
    assert status == 0, err
    hits = json.loads(out)[0]["results"]
    _close([h["score"] for h in hits], np.sort(reference["probabilities"][3])[::-1])


def test_unreadable_images_stop_or_are_skipped(folders, capsys, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    missing = tmp_path / "missing.png"
    args = ["classify", "--model", folders["siglip"], "--labels", "a cat,a dog"]
    status, out, err = _run(capsys, *args, folders["pngs"][0], missing)
    assert status == 1 and not out
    assert f"{missing} (not found)" in err and "--on-error skip" in err
    status, out, err = _run(capsys, *args, folders["pngs"][0], broken)
    assert status == 1 and f"image 1 ({broken}) cannot be read as an image" in err
    status, out, err = _run(capsys, *args, "--on-error", "skip", "--json",
                            broken, folders["pngs"][0], missing)
    assert status == 0
    assert [row["image"] for row in json.loads(out)] == [folders["pngs"][0]]
    assert "skipped image 0" in err and "skipped image 2" in err


def test_checkpoint_without_tokenizer_names_the_file(folders, capsys, tmp_path):
    folder = tmp_path / "no_tokenizer"
    shutil.copytree(folders["siglip"], folder)
    (folder / "spiece.model").unlink()
    status, _, err = _run(capsys, "classify", "--model", folder, "--labels", "a cat",
                          folders["pngs"][0])
    assert status == 1
    assert err.count("\n") == 1 and "spiece.model" in err and "Hugging Face hub" in err


def test_other_errors_are_one_line(folders, capsys, tmp_path):
    out = tmp_path / "out.npy"
    out.write_bytes(b"mine")
    status, _, err = _run(capsys, "embed", "--model", folders["siglip"], folders["texts"],
                          "--out", out)
    assert status == 1 and "--overwrite" in err and out.read_bytes() == b"mine"
    status, _, err = _run(capsys, "embed", "--model", folders["siglip"], folders["texts"],
                          "--out", out, "--overwrite")  # not a .npy embed wrote: kept
    assert status == 1 and "never replaced" in err and out.read_bytes() == b"mine"
    out.unlink()
    (tmp_path / "out.json").write_text('{"my": "settings"}')  # the names file's place
    status, _, err = _run(capsys, "embed", "--model", folders["siglip"], folders["texts"],
                          "--out", out, "--overwrite")
    assert status == 1 and "out.json" in err and "never replaced" in err and not out.exists()
    assert (tmp_path / "out.json").read_text() == '{"my": "settings"}'
    status, _, err = _run(capsys, "embed", "--model", folders["siglip"], folders["texts"],
                          "--out", tmp_path / "out.txt")
    assert status == 1 and "must be a .npy file" in err
    status, _, err = _run(capsys, "search", "--model", folders["siglip"], "--index",
                          tmp_path / "none.npy", "a cat")
    assert status == 1 and "embed --out" in err
    status, _, err = _run(capsys, "classify", "--model", tmp_path / "model.npz", "--labels",
                          "a", folders["pngs"][0])
    assert status == 1 and "--preset NAME" in err
    status, _, err = _run(capsys, "classify", "--model", folders["siglip"], "--labels", " , ",
                          folders["pngs"][0])
    assert status == 1 and "--labels is empty" in err


def test_missing_package_names_the_extra(folders, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sentencepiece" else real(name, *a))
    status, _, err = _run(capsys, "classify", "--model", folders["siglip"], "--labels", "a cat",
                          folders["pngs"][0])
    assert status == 1
    assert "needs sentencepiece" in err and "pip install 'keras-siglip[text]'" in err


def test_convert_carries_the_processor_over(folders, capsys, tmp_path):
    # `convert` writes the source's tokenizer and image settings beside a .keras DST and into a
    # transformers DST, so the converted checkpoint answers the same.
    args = ["classify", "--labels", ",".join(hf_files.LABELS), "--json", *folders["pngs"][:2]]
    status, expected, err = _run(capsys, *args, "--model", folders["siglip"])
    assert status == 0, err
    keras_file = tmp_path / "model.keras"
    status, out, err = _run(capsys, "convert", folders["siglip"], keras_file)
    assert status == 0, err
    assert (tmp_path / "model.processor" / "spiece.model").is_file()
    status, out, err = _run(capsys, *args, "--model", keras_file)
    assert status == 0, err
    for ours, theirs in zip(json.loads(out), json.loads(expected)):
        _close(list(ours["scores"].values()), list(theirs["scores"].values()))
    back = tmp_path / "back"
    status, _, err = _run(capsys, "convert", keras_file, back)
    assert status == 0, err
    assert {"spiece.model", "tokenizer_config.json", "preprocessor_config.json"} <= {
        p.name for p in back.iterdir()}
    hf = transformers.AutoProcessor.from_pretrained(str(back))
    assert type(hf.tokenizer).__name__ == "SiglipTokenizer"
    # A big_vision .npz holds no tokenizer: the checkpoint is written, with a note.
    status, _, err = _run(capsys, "convert", folders["siglip"], tmp_path / "model.npz")
    assert status == 0 and "holds no tokenizer" in err


def test_convert_checks_the_processor_folder_before_writing(folders, capsys, tmp_path):
    # The processor folder beside a .keras DST is checked before the model is written: a folder
    # of the user's in the way stops the conversion with nothing written.
    keras_file = tmp_path / "m.keras"
    (tmp_path / "m.processor").mkdir()
    (tmp_path / "m.processor" / "notes.txt").write_text("mine")
    status, _, err = _run(capsys, "convert", folders["siglip"], keras_file, "--overwrite")
    assert status == 1 and "notes.txt" in err and "never replaced" in err
    assert not keras_file.exists()
    assert (tmp_path / "m.processor" / "notes.txt").read_text() == "mine"
