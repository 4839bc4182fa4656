"""The canonical big_vision tree: loading real checkpoint layouts, saving, and mismatch reports."""

import json

import numpy as np
import pytest

from keras_siglip.convert import (
    infer_architecture,
    load_big_vision,
    model_to_tree,
    read_tree,
    save_big_vision,
)
from keras_siglip.testing import build_tiny
from tests._grad import to_numpy
from tests._paths import fixture_path


@pytest.fixture(scope="module")
def fixture_tree():
    data = np.load(fixture_path("bv_siglip_fixed.npz"))
    names = json.loads(str(data["param_names"]))
    return {name: data[name] for name in names}, data


@pytest.fixture(scope="module")
def fixture_model(fixture_tree):
    tree, _ = fixture_tree
    return load_big_vision(tree, image_size=(32, 24))


def _assert_same_weights(a, b):
    ta, tb = model_to_tree(a), model_to_tree(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        np.testing.assert_array_equal(ta[name], tb[name], err_msg=name)


def test_architecture_inferred_from_shapes(fixture_tree):
    tree, _ = fixture_tree
    naflex, vision, text = infer_architecture(tree, image_size=(32, 24))
    assert not naflex
    assert vision == dict(width=48, depth=2, mlp_dim=96, num_heads=3, patch_size=4, image_size=(32, 24))
    assert text == dict(vocabulary_size=101, sequence_length=16, width=48, depth=2, mlp_dim=96,
                        num_heads=3, use_head=True, embed_dim=48)


def test_non_square_grid_needs_image_size(fixture_tree):
    tree, _ = fixture_tree
    with pytest.raises(ValueError, match="48 positions, not a square grid: pass image_size"):
        load_big_vision(tree)


def test_save_then_load_is_bit_exact(tmp_path, fixture_model):
    path = save_big_vision(fixture_model, tmp_path / "model.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    restored = load_big_vision(path, image_size=(32, 24))
    _assert_same_weights(fixture_model, restored)
    with np.load(path) as data:
        assert data["img/MAPHead_0/MultiHeadDotProductAttention_0/query/kernel"].shape == (48, 3, 16)
        assert data["t"].shape == (1,)


def test_exported_tree_equals_the_checkpoint(fixture_tree, fixture_model):
    tree, _ = fixture_tree
    exported = model_to_tree(fixture_model)
    assert sorted(exported) == sorted(tree)
    for name in tree:
        np.testing.assert_array_equal(exported[name], tree[name], err_msg=name)


def _scan_stack(tree):
    stacked, groups = {}, {}
    for name, value in tree.items():
        if "/encoderblock_" in name:
            head, rest = name.split("/encoderblock_", 1)
            index, leaf = rest.split("/", 1)
            groups.setdefault((head, leaf), {})[int(index)] = value
        else:
            stacked[name] = value
    for (head, leaf), parts in groups.items():
        stacked[f"{head}/encoderblock/{leaf}"] = np.stack([parts[i] for i in sorted(parts)])
    return stacked


def _to_bf16_void(x):
    bits = np.asarray(x, np.float32).view(np.uint32)
    # Round to nearest even, as a bfloat16 cast does.
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return rounded.view("V2")


def _from_bf16_void(v):
    return (v.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def test_prefix_scan_and_bfloat16_layouts_load_the_same_model(tmp_path, fixture_tree, fixture_model):
    tree, _ = fixture_tree
    np.savez(tmp_path / "prefixed.npz", **{f"params/{k}": v for k, v in tree.items()})
    np.savez(tmp_path / "scanned.npz", **_scan_stack(tree))
    for name in ("prefixed.npz", "scanned.npz"):
        model = load_big_vision(tmp_path / name, image_size=(32, 24))
        _assert_same_weights(fixture_model, model)

    bf16 = {f"params/{k}": _to_bf16_void(v) for k, v in _scan_stack(tree).items()}
    np.savez(tmp_path / "bf16.npz", **bf16)
    with np.load(tmp_path / "bf16.npz") as data:
        assert data["params/t"].dtype == np.dtype("V2")
    model = load_big_vision(tmp_path / "bf16.npz", image_size=(32, 24))
    rounded = {k: _from_bf16_void(_to_bf16_void(v)) for k, v in tree.items()}
    exported = model_to_tree(model)
    for name in tree:
        np.testing.assert_array_equal(exported[name], rounded[name], err_msg=name)
    # Rounding to bfloat16 changes values by at most 2^-8 relative.
    np.testing.assert_allclose(rounded["txt/head/kernel"], tree["txt/head/kernel"], rtol=2**-8)


def test_bf16_widening_matches_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    as_bf16 = values.astype(ml_dtypes.bfloat16)
    widened = read_tree({"t": as_bf16.view("V2")})["t"]
    np.testing.assert_array_equal(widened, as_bf16.astype(np.float32))


def test_mismatch_lists_every_problem(fixture_tree):
    tree, _ = fixture_tree
    broken = dict(tree)
    del broken["img/Transformer/encoder_norm/scale"]
    broken["txt/head/kernel"] = np.zeros((48, 40), np.float32)
    broken["img/extra/thing"] = np.zeros((3,), np.float32)
    model = build_tiny("fixture_like")
    from keras_siglip.convert.big_vision import assign_tree

    before = to_numpy(model.logit_bias).copy()
    with pytest.raises(ValueError) as info:
        assign_tree(model, broken)
    message = str(info.value)
    assert "1 missing tensor(s):\n  img/Transformer/encoder_norm/scale (48,)" in message
    assert "1 unexpected tensor(s):\n  img/extra/thing (3,)" in message
    assert "txt/head/kernel: checkpoint (48, 40), model expects (48, 48)" in message
    np.testing.assert_array_equal(to_numpy(model.logit_bias), before)  # nothing assigned


def test_missing_tensor_in_architecture_inference(fixture_tree):
    tree, _ = fixture_tree
    broken = {k: v for k, v in tree.items() if k != "txt/Embed_0/embedding"}
    with pytest.raises(ValueError, match="no 'txt/Embed_0/embedding'"):
        load_big_vision(broken, image_size=(32, 24))


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a readable big_vision .npz"):
        load_big_vision(bad)
    with pytest.raises(FileNotFoundError, match="No big_vision checkpoint"):
        load_big_vision(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="no SigLIP parameters"):
        load_big_vision({"opt/state/step": np.zeros(())})


def test_failed_save_leaves_nothing(tmp_path, fixture_model, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        save_big_vision(fixture_model, tmp_path / "out.npz")
    assert list(tmp_path.iterdir()) == []
