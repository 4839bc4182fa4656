"""The conformance kit: deterministic bytes, clean verification, the first-failing-stage locator.

Run once per backend (KERAS_BACKEND=jax|tensorflow|torch). Building a Keras model dominates the
cost, so each kit's model is built once per module and broken variants are applied and undone in
place.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from keras_siglip import conformance

# Where each deliberate mistake must be located: the first stage it actually changes.
EXPECTED_FIRST = {
    "gelu_erf": "img/block00/mlp",  # the image tower is computed first
    "ln_eps": "img/block00/sa",  # the first stage behind a LayerNorm
    "map_residual": "img/pooled",
    "map_unscaled": "img/pooled",
}


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module", params=["fixture_like", "naflex"])
def kit_and_model(request):
    kit = conformance.build_kit(request.param, seed=0)
    return kit, conformance.keras_model(kit)


def test_same_bytes_for_same_seed(tmp_path):
    for name in ("odd_nonsquare", "naflex"):
        a = conformance.write_kit(conformance.build_kit(name, seed=3), tmp_path / f"{name}_a")
        b = conformance.write_kit(conformance.build_kit(name, seed=3), tmp_path / f"{name}_b")
        assert _digest(a) == _digest(b)
        c = conformance.write_kit(conformance.build_kit(name, seed=4), tmp_path / f"{name}_c")
        assert _digest(a)["kit.npz"] != _digest(c)["kit.npz"]


def test_kit_reads_with_numpy_alone(tmp_path):
    folder = conformance.write_kit(conformance.build_kit("fixture_like"), tmp_path / "kit")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["config"]["text"]["sequence_length"] == 16
    assert manifest["config"]["vision"]["image_size"] == [32, 24]  # non-square
    with np.load(folder / "kit.npz") as data, np.load(folder / "kit_float32.npz") as data32:
        for stage in manifest["stages"]:
            value = data["expected/" + stage["name"]]
            assert value.dtype == np.float64 and list(value.shape) == stage["shape"]
            assert data32["expected/" + stage["name"]].dtype == np.float32
        assert data["params/img/embedding/kernel"].dtype == np.float32
        assert data["inputs/token_ids"].dtype == np.int32
    names = [s["name"] for s in manifest["stages"]]
    assert names.index("img/block00/sa") < names.index("img/pooled") < names.index("txt/pooled")
    assert names[-5:] == ["loss", "grad_zimg", "grad_ztxt", "grad_t_param", "grad_b"]
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64


def test_naflex_kit_has_mixed_grids():
    kit = conformance.build_kit("naflex")
    shapes = kit["inputs"]["spatial_shapes"]
    assert len({tuple(s) for s in shapes}) == len(shapes)
    assert kit["inputs"]["patch_mask"].sum(1).tolist() == [int(h * w) for h, w in shapes]
    stages = {s["name"]: s for s in kit["manifest"]["stages"]}
    assert stages["img/posemb"]["valid_rows"] == "patch_mask"
    assert stages["img/pooled"]["valid_rows"] is None


def test_keras_verifies_cleanly(kit_and_model):
    kit, model = kit_and_model
    report = conformance.verify(kit, conformance.keras_fn(kit, model), require_all=True)
    assert report.ok, str(report)


@pytest.mark.parametrize("variant", sorted(EXPECTED_FIRST))
def test_locator_pins_broken_keras_variant(kit_and_model, variant):
    kit, model = kit_and_model
    restore = conformance.break_keras_model(model, variant)
    try:
        report = conformance.verify(kit, conformance.keras_fn(kit, model))
    finally:
        restore()
    assert report.first_failure == EXPECTED_FIRST[variant], str(report)


def test_locator_names_first_stage_of_a_post_processed_output():
    kit = conformance.build_kit("odd_nonsquare")

    def fn(params, inputs):  # the oracle itself, with a text-tower stage and the logits nudged
        stages = dict(kit["expected"])
        stages["txt/block00/+mlp"] = stages["txt/block00/+mlp"] + 1e-3
        stages["logits"] = stages["logits"] + 1.0
        return stages

    report = conformance.verify(kit, fn)
    assert report.first_failure == "txt/block00/+mlp"
    row = next(r for r in report.rows if r["stage"] == "txt/block00/+mlp")
    assert row["max_abs"] == pytest.approx(1e-3, rel=1e-6)


def test_missing_stages_are_reported_not_failed():
    kit = conformance.build_kit("no_text_head")
    report = conformance.verify(kit, lambda p, i: {"img/pooled": kit["expected"]["img/pooled"]})
    assert report.ok
    assert {r["status"] for r in report.rows} == {"ok", "missing"}
    strict = conformance.verify(kit, lambda p, i: {}, require_all=True)
    assert strict.first_failure == "img/stem"


@pytest.mark.parametrize("name", ["fixture_like", "naflex"])
def test_transformers_verifies_and_locates(name):
    import keras

    if keras.backend.backend() != "torch":
        # transformers runs on torch whatever the Keras backend; check it once, in the torch pass
        # (importing torch next to jax or TensorFlow would double this module's time).
        pytest.skip("transformers is checked in the KERAS_BACKEND=torch pass")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    kit = conformance.build_kit(name)
    report = conformance.verify(kit, conformance.transformers_fn(kit), require_all=True)
    assert report.ok, str(report)
    for variant in ("gelu_erf", "ln_eps", "map_residual"):
        broken = conformance.verify(kit, conformance.transformers_fn(kit, variant))
        assert broken.first_failure == EXPECTED_FIRST[variant], (variant, str(broken))


# --------------------------------------------------------------------------------------
# Preset kits, with a tiny fake preset whose big_vision file is put in a temporary cache.

FAKE_PRESET = "fake_tiny_preset"


@pytest.fixture
def fake_preset(monkeypatch, tmp_path):
    from keras_siglip import presets

    info = dict(presets.PRESETS["siglip_base_patch16_224"])
    info.update(image_variant="pico", text_variant="pico", patch_size=4, image_size=16,
                sequence_length=16, vocabulary_size=101, embed_dim=48,
                hf_id="example/fake-tiny", big_vision_file="gs://example/fake_tiny_123.npz")
    monkeypatch.setitem(presets.PRESETS, FAKE_PRESET, info)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("KERAS_SIGLIP_CACHE", str(cache))
    return cache


def _save_fake_weights(cache):
    from keras_siglip.convert import save_big_vision
    from keras_siglip.models import SigLIP

    model = SigLIP.from_preset(FAKE_PRESET, load_weights=False)
    return save_big_vision(model, cache / "fake_tiny_123.npz")  # the big_vision file name


def test_preset_kit_points_at_checkpoint_and_verifies(fake_preset, tmp_path):
    weights = _save_fake_weights(fake_preset)
    a = conformance.run_vectors(tmp_path / "a", preset=FAKE_PRESET, seed=1)[0]
    b = conformance.run_vectors(tmp_path / "b", preset=FAKE_PRESET, seed=1)[0]
    assert _digest(a) == _digest(b)  # deterministic

    manifest = json.loads((a / "manifest.json").read_text())
    pointer = manifest["checkpoint"]
    assert pointer["preset"] == FAKE_PRESET and pointer["hf_id"] == "example/fake-tiny"
    assert pointer["big_vision_file"] == "gs://example/fake_tiny_123.npz"
    assert pointer["file"] == "fake_tiny_123.npz" and pointer["format"] == "big_vision"
    assert pointer["sha256"] == {weights.name: hashlib.sha256(weights.read_bytes()).hexdigest()}
    assert manifest["config"]["vision"]["image_size"] == [16, 16]
    with np.load(a / "kit.npz") as data:
        assert not [k for k in data.files if k.startswith("params/")]  # a pointer, not params
        assert data["inputs/images"].shape == (conformance.PRESET_BATCH, 16, 16, 3)
        assert data["inputs/token_ids"].shape == (conformance.PRESET_BATCH, 16)
        assert data["inputs/token_ids"].max() < 101
    names = manifest["stage_order"]
    assert "img/block01/+mlp" in names and "txt/block01/+mlp" in names and names[-1] == "grad_b"

    kit = conformance.load_kit(a)  # finds the weights in the cache and checks their sha256
    assert set(kit["params"]) == {p["name"][len("params/"):] for p in manifest["params"]}
    report = conformance.verify(kit, conformance.keras_fn(kit), require_all=True)
    assert report.ok, str(report)

    # A different file at the pointer's place: a clear sha256 error, before anything runs.
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(conformance.KitWeightsError, match="sha256 mismatch"):
        conformance.verify(a, lambda p, i: {})
    assert not conformance.run_verify(a).ok  # the command line: an error line, exit code 1


def test_preset_kit_refuses_missing_weights(fake_preset, tmp_path, capsys):
    from keras_siglip.cli import main

    out = tmp_path / "kit"
    assert main(["vectors", str(out), "--preset", FAKE_PRESET]) == 1
    assert not out.exists()
    err = capsys.readouterr().err
    assert "gs://example/fake_tiny_123.npz" in err  # what to download
    assert str(fake_preset / "fake_tiny_123.npz") in err  # where to put it
    # A .keras re-save alone is refused too: the kit must hash a published checkpoint.
    (fake_preset / f"{FAKE_PRESET}.keras").write_bytes(b"not used")
    with pytest.raises(ValueError, match=r"\.keras"):
        conformance.run_vectors(out, preset=FAKE_PRESET)
    assert not out.exists()


def test_preset_kit_from_transformers_folder(fake_preset, tmp_path):
    pytest.importorskip("safetensors")
    from keras_siglip.convert import save_transformers
    from keras_siglip.models import SigLIP

    folder = save_transformers(SigLIP.from_preset(FAKE_PRESET, load_weights=False),
                               fake_preset / FAKE_PRESET)
    out = conformance.run_vectors(tmp_path / "kit", preset=FAKE_PRESET)[0]
    pointer = json.loads((out / "manifest.json").read_text())["checkpoint"]
    assert pointer["format"] == "transformers" and pointer["file"] == FAKE_PRESET
    files = sorted(p for p in Path(folder).iterdir() if p.suffix == ".safetensors")
    assert pointer["sha256"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    kit = conformance.load_kit(out)
    assert conformance.verify(kit, conformance.keras_fn(kit), require_all=True).ok


# --------------------------------------------------------------------------------------
# The command line: `vectors OUT` and `verify OUT` compose; edited kits are refused.


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    """`python -m keras_siglip vectors OUT`: the default set, one sub-folder per kit."""
    from keras_siglip.cli import main

    out = tmp_path_factory.mktemp("kits") / "out"
    assert main(["vectors", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(conformance.DEFAULT_KITS)
    return out


def test_vectors_then_verify_passes(kits, capsys):
    from keras_siglip.cli import main

    capsys.readouterr()
    assert main(["verify", str(kits), "--against", "keras"]) == 0
    out = capsys.readouterr().out
    assert out.count("all stages within tolerance") == len(conformance.DEFAULT_KITS)
    assert f"{len(conformance.DEFAULT_KITS)} of {len(conformance.DEFAULT_KITS)} kits pass" in out


def test_vectors_then_verify_against_transformers(kits, capsys):
    import keras

    if keras.backend.backend() != "torch":
        pytest.skip("transformers is checked in the KERAS_BACKEND=torch pass")
    pytest.importorskip("transformers")
    from keras_siglip.cli import main

    assert main(["verify", str(kits), "--against", "transformers"]) == 0
    assert "kits pass" in capsys.readouterr().out


def test_vectors_refuses_to_replace_a_kit_without_overwrite(kits, capsys):
    from keras_siglip.cli import main

    before = _digest(kits / "naflex")
    assert main(["vectors", str(kits)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["vectors", str(kits), "--overwrite"]) == 0
    assert _digest(kits / "naflex") == before  # same seed, same bytes


def _edited_kit(tmp_path, name="odd_nonsquare"):
    return conformance.write_kit(conformance.build_kit(name), tmp_path / name)


def test_verify_ignores_loosened_tolerances_in_the_manifest(tmp_path):
    # A broken implementation must not pass because someone raised the manifest's atol:
    # tolerances come from the library's rule, a manifest may only tighten them.
    folder = _edited_kit(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    for stage in manifest["stages"]:
        stage["atol"] = 1e9
    (folder / "manifest.json").write_text(json.dumps(manifest))
    kit = conformance.load_kit(folder)  # the data still matches its sha256
    broken = lambda p, i: {k: v + 1.0 for k, v in kit["expected"].items()}  # noqa: E731
    with pytest.raises(conformance.KitDataError, match="looser than the library's"):
        conformance.verify(folder, broken)
    # Tightening is allowed, and then the kit's own (stricter) tolerance applies.
    for stage in manifest["stages"]:
        stage["atol"] = 0.0
    (folder / "manifest.json").write_text(json.dumps(manifest))
    nudged = lambda p, i: {k: v + 1e-9 for k, v in kit["expected"].items()}  # noqa: E731
    assert conformance.verify(folder, nudged).first_failure == manifest["stages"][0]["name"]
