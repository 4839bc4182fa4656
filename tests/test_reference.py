"""Tests of the NumPy oracle (`reference/`) against big_vision fixtures, the test vectors
of docs/loss.md, docs/naflex.md and docs/checkpoints.md, finite differences, scipy and torch."""

import json
import math

import numpy as np
import pytest

import keras_siglip_reference as R
from tests._paths import fixture_path

pytestmark = pytest.mark.backend_independent

FIXTURE_ATOL = 1e-5  # float32 big_vision against the float64 oracle, O(1) values


# ---------------------------------------------------------------------------------------------
# big_vision fixture: tiny fixed-resolution SigLIP


@pytest.fixture(scope="module")
def bv():
    data = np.load(fixture_path("bv_siglip_fixed.npz"))
    names = json.loads(str(data["param_names"]))
    params = {name: data[name] for name in names}
    return data, params


@pytest.fixture(scope="module")
def bv_out(bv):
    data, params = bv
    return R.two_tower(params, data["in/image"], data["in/text"])


def _assert_close(actual, expected, atol=FIXTURE_ATOL, rtol=0.0, name=""):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=name)


@pytest.mark.parametrize("key", ["zimg_unnorm", "ztxt_unnorm", "zimg", "ztxt", "logits"])
def test_fixture_two_tower_outputs(bv, bv_out, key):
    data, _ = bv
    _assert_close(bv_out[key], data[key], name=key)


def test_fixture_temperature(bv, bv_out):
    data, _ = bv
    _assert_close(bv_out["t_exp"], data["t_exp"][0], name="t_exp")


def test_fixture_image_intermediates(bv, bv_out):
    data, _ = bv
    img = bv_out["img"]
    pairs = {"stem": "out/img/stem", "with_posemb": "out/img/with_posemb", "encoded": "out/img/encoded",
             "pooled": "out/img/head_input"}
    for i in range(2):
        for part in ("sa", "+sa", "mlp", "+mlp"):
            pairs[f"block{i:02d}/{part}"] = f"out/img/encoder/block{i:02d}/{part}"
    for ours, theirs in pairs.items():
        _assert_close(img[ours], data[theirs], name=ours)


def test_fixture_text_intermediates(bv, bv_out):
    data, _ = bv
    txt = bv_out["txt"]
    # big_vision calls the final-LN output "transformed" and the head output "logits".
    pairs = {"embedded": "out/txt/embedded", "encoded": "out/txt/transformed",
             "pre_logits": "out/txt/pre_logits", "pooled": "out/txt/logits"}
    for i in range(2):
        for part in ("sa", "+sa", "mlp", "+mlp"):
            pairs[f"block{i:02d}/{part}"] = f"out/txt/block{i:02d}/{part}"
    for ours, theirs in pairs.items():
        _assert_close(txt[ours], data[theirs], name=ours)


def test_fixture_loss_and_grads(bv, bv_out):
    data, params = bv
    out = R.sigmoid_loss_grads(bv_out["zimg"][:3], bv_out["ztxt"][:3], params["t"], params["b"])
    _assert_close(out["loss"], data["loss"], name="loss")
    _assert_close(R.sigmoid_loss(bv_out["zimg"][:3], bv_out["ztxt"][:3], params["t"], params["b"]),
                  data["loss"], name="loss")
    for key in ("grad_zimg", "grad_ztxt"):
        _assert_close(out[key], data[key], name=key)
    for key in ("grad_t_param", "grad_b"):
        _assert_close(out[key], data[key][0], name=key)


# (parameter, index) pairs checked by central differences against big_vision's autodiff.
FD_ENTRIES = [
    ("t", (0,)),
    ("b", (0,)),
    ("txt/head/bias", (0,)),
    ("txt/head/bias", (17,)),
    ("img/MAPHead_0/probe", (0, 0, 0)),
    ("img/MAPHead_0/probe", (0, 0, 31)),
    ("img/embedding/bias", (5,)),
    ("img/Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel", (3, 1, 2)),
    ("txt/Encoder_0/encoderblock_1/MlpBlock_0/Dense_0/kernel", (10, 20)),
]


def test_fixture_end_to_end_param_grads(bv):
    data, params = bv
    images, texts = data["in/image"][:3], data["in/text"][:3]
    _assert_close(R.two_tower_loss(params, images, texts), data["loss_e2e"], name="loss_e2e")
    loss_fn = lambda p: R.two_tower_loss(p, images, texts)  # noqa: E731
    for name, index in FD_ENTRIES:
        numeric = R.numeric_param_grad(loss_fn, params, name, index, step=1e-5)
        expected = float(data[f"grad_params/{name}"][index])
        assert numeric == pytest.approx(expected, rel=1e-4, abs=1e-6), (name, index, numeric, expected)


def test_scan_stacked_blocks_equal_unrolled(bv, bv_out):
    data, params = bv
    stacked = {k: v for k, v in params.items() if "/encoderblock_" not in k}
    leaves = {k.split("encoderblock_0/")[1] for k in params if "img/Transformer/encoderblock_0/" in k}
    for leaf in leaves:
        stacked[f"img/Transformer/encoderblock/{leaf}"] = np.stack(
            [params[f"img/Transformer/encoderblock_{i}/{leaf}"] for i in range(2)])
    for k, v in params.items():
        if k.startswith("txt/Encoder_0/encoderblock_"):
            stacked["params/" + k] = v  # also exercise the optional "params/" prefix
    out = R.image_tower(stacked, data["in/image"][:1])
    np.testing.assert_array_equal(out["pooled"], bv_out["img"]["pooled"][:1])


def test_text_tower_without_head_is_identity(bv):
    data, params = bv
    no_head = {k: v for k, v in params.items() if not k.startswith("txt/head/")}
    out = R.text_tower(no_head, data["in/text"][:2])
    np.testing.assert_array_equal(out["pooled"], out["pre_logits"])


def test_image_tower_rejects_wrong_grid(bv):
    data, params = bv
    with pytest.raises(ValueError, match="resize_posemb_fixed"):
        R.image_tower(params, data["in/image"][:1, :28])


# ---------------------------------------------------------------------------------------------
# Sigmoid loss and L2 normalisation


def test_sigmoid_loss_spec_vector():
    x = np.array([[1.0, 0.0], [0.6, 0.8]])
    y = np.array([[0.8, 0.6], [0.0, 1.0]])
    t_param, b = math.log(10.0), -10.0
    out = R.sigmoid_loss_grads(x, y, t_param, b)
    assert R.sigmoid_loss(x, y, t_param, b) == pytest.approx(2.3834583367, abs=1e-7)
    assert out["loss"] == pytest.approx(2.3834583367, abs=1e-7)
    np.testing.assert_allclose(out["grad_logits"], [[-0.44039854, 2.2698934e-5], [0.20065617, -0.44039854]],
                               atol=1e-7)
    assert out["grad_b"] == pytest.approx(-0.68011821, abs=1e-7)
    assert out["grad_t_param"] == pytest.approx(-5.1200774, abs=1e-6)
    np.testing.assert_allclose(out["grad_zimg"], [[-3.5231883, -2.6421642], [1.6052494, -3.2000484]], atol=1e-6)
    np.testing.assert_allclose(out["grad_ztxt"], [[-3.2000484, 1.6052494], [-2.6421642, -3.5231883]], atol=1e-6)


def test_sigmoid_loss_grads_match_finite_differences():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    t_param, b = 0.7, -1.3
    out = R.sigmoid_loss_grads(x, y, t_param, b)
    h = 1e-6

    def fd(fn):
        return (fn(h) - fn(-h)) / (2 * h)

    assert fd(lambda d: R.sigmoid_loss(x, y, t_param + d, b)) == pytest.approx(out["grad_t_param"], rel=1e-7)
    assert fd(lambda d: R.sigmoid_loss(x, y, t_param, b + d)) == pytest.approx(out["grad_b"], rel=1e-7)
    for arr, key in ((x, "grad_zimg"), (y, "grad_ztxt")):
        for index in [(0, 0), (2, 3), (3, 4)]:
            def shifted(d, arr=arr, index=index):
                moved = arr.copy()
                moved[index] += d
                return R.sigmoid_loss(moved if arr is x else x, moved if arr is y else y, t_param, b)
            assert fd(shifted) == pytest.approx(out[key][index], rel=1e-6, abs=1e-9)


def test_sigmoid_loss_is_stable_and_requires_square_batch():
    x = np.eye(2)
    assert math.isfinite(R.sigmoid_loss(x, x, 50.0, -1e6))
    with pytest.raises(ValueError):
        R.sigmoid_loss(np.ones((2, 3)), np.ones((3, 3)), 0.0, 0.0)
    with pytest.raises(ValueError):
        R.sigmoid_loss_grads(np.ones((2, 3)), np.ones((3, 3)), 0.0, 0.0)


@pytest.mark.parametrize("eps", [1e-8, 0.0, 0.1])
def test_l2_normalize_backward_matches_finite_differences(eps):
    rng = np.random.default_rng(1)
    u, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    analytic = R.l2_normalize_backward(u, g, eps=eps)
    h = 1e-6
    numeric = np.zeros_like(u)
    for index in np.ndindex(*u.shape):
        up, down = u.copy(), u.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (np.sum(R.l2_normalize(up, eps) * g) - np.sum(R.l2_normalize(down, eps) * g)) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
    if eps == 0.0:  # transformers form (g - z<z,g>)/n
        z = u / np.linalg.norm(u, axis=1, keepdims=True)
        expected = (g - z * np.sum(z * g, axis=1, keepdims=True)) / np.linalg.norm(u, axis=1, keepdims=True)
        np.testing.assert_allclose(analytic, expected, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Position-embedding resizing


def test_naflex_resize_matches_big_vision_fixture():
    # The fixture is float32 jax output with |values| up to 3.3; for 12x20 its own rounding reaches
    # 2.5e-6 (torch float32 antialiased bilinear is off by the same amount, torch float64 agrees with
    # the oracle to 1e-15), hence 3e-6 rather than 1e-6.
    data = np.load(fixture_path("bv_posemb_resize.npz"))
    for h, w in np.asarray(data["targets_hw"]):
        out = R.resize_posemb_naflex(data["input"], int(h), int(w))
        _assert_close(out, data[f"out_{h}x{w}"], atol=3e-6, name=f"{h}x{w}")
        _assert_close(out, data[f"naflex_path_{h}x{w}"], atol=3e-6, name=f"naflex_path {h}x{w}")


NAFLEX_WEIGHT_VECTORS = {
    2: [[3 / 7, 3 / 7, 1 / 7, 0], [0, 1 / 7, 3 / 7, 3 / 7]],
    3: [[0.7, 0.3, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.3, 0.7]],
    6: [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 5 / 6, 1 / 6, 0], [0, 1 / 6, 5 / 6, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]],
    1: [[5 / 24, 7 / 24, 7 / 24, 5 / 24]],
}


@pytest.mark.parametrize("size", sorted(NAFLEX_WEIGHT_VECTORS))
def test_naflex_weight_vectors(size):
    np.testing.assert_allclose(R.naflex_posemb_weights(4, size), NAFLEX_WEIGHT_VECTORS[size], atol=1e-12)


def test_naflex_weights_interior_rows_16_to_8():
    w = R.naflex_posemb_weights(16, 8)
    for i in range(1, 7):
        np.testing.assert_allclose(w[i, 2 * i - 1:2 * i + 3], [0.125, 0.375, 0.375, 0.125], atol=1e-12)
        assert w[i].sum() == pytest.approx(1.0)


ZOOM_VECTORS = {
    6: [[1, 0, 0, 0], [0.4, 0.6, 0, 0], [0, 0.8, 0.2, 0], [0, 0.2, 0.8, 0], [0, 0, 0.6, 0.4], [0, 0, 0, 1]],
    3: [[1, 0, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 1]],
    2: [[1, 0, 0, 0], [0, 0, 0, 1]],
}


@pytest.mark.parametrize("size", sorted(ZOOM_VECTORS))
def test_zoom_weight_vectors(size):
    np.testing.assert_allclose(R.zoom_linear_weights(4, size), ZOOM_VECTORS[size], atol=1e-12)


@pytest.mark.parametrize("old,new", [(4, 6), (4, 3), (4, 2), (7, 12), (16, 24), (24, 16), (27, 32), (5, 1)])
def test_big_vision_fixed_resize_matches_scipy_zoom(old, new):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(2)
    posemb = rng.normal(size=(1, old * old, 3))
    grid = posemb[0].reshape(old, old, 3)
    expected = ndimage.zoom(grid, (new / old, new / old, 1), order=1)  # big_vision resample_posemb
    assert expected.shape[:2] == (new, new)
    out = R.resize_posemb_fixed(posemb, new, method="big_vision")
    np.testing.assert_allclose(out, expected.reshape(1, new * new, 3), atol=1e-12)


def test_fixed_resize_options():
    posemb = np.random.default_rng(3).normal(size=(1, 16, 2))
    for method in R.FIXED_RESIZE_METHODS:  # same size is the identity for both kernels
        np.testing.assert_allclose(R.resize_posemb_fixed(posemb, (4, 4), method=method), posemb, atol=1e-12)
    with pytest.raises(ValueError, match="square"):
        R.resize_posemb_fixed(posemb, (4, 6), method="big_vision")
    with pytest.raises(ValueError, match="square"):
        R.resize_posemb_fixed(np.zeros((1, 12, 2)), 4, method="transformers")
    with pytest.raises(ValueError, match="method"):
        R.resize_posemb_fixed(posemb, 4, method="bilinear")
    assert R.resize_posemb_fixed(posemb, (3, 7), method="transformers").shape == (1, 21, 2)


@pytest.mark.parametrize("old,hw", [(4, (6, 6)), (4, (3, 3)), (5, (7, 3)), (7, (2, 11)), (16, (24, 20)), (14, (1, 5))])
def test_transformers_fixed_resize_matches_torch_bicubic(old, hw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    posemb = rng.normal(size=(1, old * old, 3))
    grid = torch.from_numpy(posemb[0].reshape(old, old, 3)).permute(2, 0, 1)[None]  # NCHW float64
    expected = torch.nn.functional.interpolate(grid, size=hw, mode="bicubic", align_corners=False)
    expected = expected[0].permute(1, 2, 0).reshape(1, -1, 3).numpy()
    out = R.resize_posemb_fixed(posemb, hw, method="transformers")
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("G,hw", [(16, (8, 8)), (16, (5, 3)), (16, (1, 1)), (4, (6, 13)), (4, (2, 12)),
                                  (16, (20, 7)), (16, (16, 16))])
def test_naflex_resize_matches_torch_antialiased_bilinear(G, hw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    table = rng.normal(size=(G, G, 3))
    grid = torch.from_numpy(table).permute(2, 0, 1)[None]
    expected = torch.nn.functional.interpolate(grid, size=hw, mode="bilinear", align_corners=False, antialias=True)
    expected = expected[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(R.resize_posemb_naflex(table, *hw), expected, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# NaFlex preprocessing


NAFLEX_SIZE_VECTORS = [
    # big_vision ops_naflex_test.py
    ((48, 48), 3, 121, (33, 33)),
    ((112, 109), 7, 225, (105, 105)),
    ((176, 176), 11, 64, (88, 88)),
    ((256, 64), 16, 12, (96, 32)),
    ((256, 64), 8, 15, (56, 16)),
    ((63, 241), 16, 16, (32, 128)),
    ((16, 512), 16, 16, (16, 256)),
    # transformers, p = 16
    ((2200, 1700), 16, 256, (288, 224)),
    ((480, 640), 16, 256, (224, 288)),
    ((224, 224), 16, 256, (256, 256)),
    ((1024, 224), 16, 256, (512, 112)),
    ((100, 1000), 16, 256, (80, 800)),
    ((7, 3000), 16, 256, (16, 4096)),
    ((100, 224), 16, 256, (176, 368)),
    ((500, 500), 16, 1024, (512, 512)),
    # derived from the algorithm
    ((1024, 1024), 16, 256, (256, 256)),
]


@pytest.mark.parametrize("hw,p,n_max,expected", NAFLEX_SIZE_VECTORS)
def test_naflex_size_vectors(hw, p, n_max, expected):
    assert R.naflex_size(*hw, p, n_max) == expected


def test_naflex_patchify_big_vision_vector():
    rng = np.random.default_rng(6)
    for height, width in [(6, 8), (7, 9), (8, 10)]:
        img = rng.normal(size=(height, width, 3))
        patches, mask, shape = R.naflex_patchify_array(img, (3, 4), 6)
        assert patches.shape == (6, 36)
        np.testing.assert_array_equal(mask, [1, 1, 1, 1, 0, 0])
        np.testing.assert_array_equal(shape, [2, 2])
        np.testing.assert_array_equal(patches[3], img[3:6, 4:8, :].reshape(-1))
        np.testing.assert_array_equal(patches[4:], 0.0)


def test_naflex_patchify_equals_reshape_transpose():
    img = np.random.default_rng(7).normal(size=(8, 12, 3))
    patches, mask, shape = R.naflex_patchify_array(img, 4, 8)
    expected = img.reshape(2, 4, 3, 4, 3).transpose(0, 2, 1, 3, 4).reshape(6, 48)
    np.testing.assert_array_equal(patches[:6], expected)
    assert mask.dtype == np.int32 and shape.dtype == np.int64 and mask.sum() == 6
    with pytest.raises(ValueError):
        R.naflex_patchify_array(img, 4, 5)


# ---------------------------------------------------------------------------------------------
# NaFlex tower on tiny random weights


def _random_image_params(rng, *, width=16, heads=2, depth=2, mlp=24, patch=2, grid=4, naflex=True):
    params = {}

    def block(prefix):
        for ln in ("LayerNorm_0", "LayerNorm_1"):
            params[f"{prefix}/{ln}/scale"] = 1.0 + 0.1 * rng.normal(size=width)
            params[f"{prefix}/{ln}/bias"] = 0.1 * rng.normal(size=width)
        attention(f"{prefix}/MultiHeadDotProductAttention_0")
        mlp_block(f"{prefix}/MlpBlock_0")

    def attention(prefix):
        hd = width // heads
        for name in ("query", "key", "value"):
            params[f"{prefix}/{name}/kernel"] = rng.normal(size=(width, heads, hd)) / math.sqrt(width)
            params[f"{prefix}/{name}/bias"] = 0.1 * rng.normal(size=(heads, hd))
        params[f"{prefix}/out/kernel"] = rng.normal(size=(heads, hd, width)) / math.sqrt(width)
        params[f"{prefix}/out/bias"] = 0.1 * rng.normal(size=width)

    def mlp_block(prefix):
        params[f"{prefix}/Dense_0/kernel"] = rng.normal(size=(width, mlp)) / math.sqrt(width)
        params[f"{prefix}/Dense_0/bias"] = 0.1 * rng.normal(size=mlp)
        params[f"{prefix}/Dense_1/kernel"] = rng.normal(size=(mlp, width)) / math.sqrt(mlp)
        params[f"{prefix}/Dense_1/bias"] = 0.1 * rng.normal(size=width)

    kernel = rng.normal(size=(patch, patch, 3, width)) / math.sqrt(patch * patch * 3)
    params["img/embedding/kernel"] = kernel.reshape(-1, width) if naflex else kernel
    params["img/embedding/bias"] = 0.1 * rng.normal(size=width)
    table = rng.normal(size=(grid, grid, width))
    params["img/pos_embedding"] = table if naflex else table.reshape(1, grid * grid, width)
    for i in range(depth):
        block(f"img/Transformer/encoderblock_{i}")
    params["img/Transformer/encoder_norm/scale"] = 1.0 + 0.1 * rng.normal(size=width)
    params["img/Transformer/encoder_norm/bias"] = 0.1 * rng.normal(size=width)
    params["img/MAPHead_0/probe"] = rng.normal(size=(1, 1, width))
    attention("img/MAPHead_0/MultiHeadDotProductAttention_0")
    params["img/MAPHead_0/LayerNorm_0/scale"] = 1.0 + 0.1 * rng.normal(size=width)
    params["img/MAPHead_0/LayerNorm_0/bias"] = 0.1 * rng.normal(size=width)
    mlp_block("img/MAPHead_0/MlpBlock_0")
    return params


@pytest.fixture(scope="module")
def naflex_batch():
    rng = np.random.default_rng(8)
    params = _random_image_params(rng)
    n_max = 12
    shapes = [(2, 5), (4, 3), (1, 12), (3, 3)]  # down+up sampling, exact fit, non-square
    patches, masks = [], []
    for h, w in shapes:
        patches_i, mask_i, _ = R.naflex_patchify_array(rng.uniform(-1, 1, size=(2 * h, 2 * w, 3)), 2, n_max)
        patches.append(patches_i)
        masks.append(mask_i)
    return params, np.stack(patches), np.stack(masks), np.array(shapes)


def _valid_rows(out, mask):
    return [out[n][mask[n].astype(bool)] for n in range(len(mask))]


@pytest.mark.parametrize("masking", R.MASKING_MODES)
def test_naflex_valid_rows_ignore_padded_patches(naflex_batch, masking):
    params, patches, mask, shapes = naflex_batch
    clean = R.naflex_image_tower(params, patches, mask, shapes, masking=masking)
    noisy_patches = patches.copy()
    pad = ~mask.astype(bool)
    noisy_patches[pad] = 1e3 * np.random.default_rng(9).normal(size=noisy_patches[pad].shape)
    noisy = R.naflex_image_tower(params, noisy_patches, mask, shapes, masking=masking)
    np.testing.assert_allclose(noisy["pooled"], clean["pooled"], rtol=0, atol=1e-12)
    for key in ("encoded", "block01/+mlp", "block00/sa"):
        for a, b in zip(_valid_rows(noisy[key], mask), _valid_rows(clean[key], mask)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_naflex_masking_modes_agree_on_valid_rows(naflex_batch):
    params, patches, mask, shapes = naflex_batch
    a = R.naflex_image_tower(params, patches, mask, shapes, masking="transformers")
    b = R.naflex_image_tower(params, patches, mask, shapes, masking="big_vision")
    np.testing.assert_allclose(a["pooled"], b["pooled"], atol=1e-12)
    for x, y in zip(_valid_rows(a["encoded"], mask), _valid_rows(b["encoded"], mask)):
        np.testing.assert_allclose(x, y, atol=1e-12)
    # Padded rows do differ (they are meaningless); make sure the switch is not a no-op.
    pad = ~mask.astype(bool)
    assert not np.allclose(a["encoded"][pad], b["encoded"][pad])
    with pytest.raises(ValueError, match="masking"):
        R.naflex_image_tower(params, patches, mask, shapes, masking="causal")


def test_naflex_posemb_rows(naflex_batch):
    params, patches, mask, shapes = naflex_batch
    out = R.naflex_image_tower(params, patches[:1], mask[:1], shapes[:1])
    h, w = shapes[0]
    resized = R.resize_posemb_naflex(params["img/pos_embedding"], h, w).reshape(h * w, -1)
    np.testing.assert_allclose(out["posemb"][0, : h * w], resized, atol=1e-12)
    np.testing.assert_allclose(out["posemb"][0, h * w:], np.broadcast_to(resized[0], (12 - h * w, 16)), atol=1e-12)


def test_naflex_tower_equals_fixed_tower_on_the_native_grid():
    """With the table's own grid and no padding, NaFlex is the fixed-resolution tower."""
    params = _random_image_params(np.random.default_rng(10), naflex=False)
    fixed = dict(params)
    naflex = dict(params)
    naflex["img/embedding/kernel"] = params["img/embedding/kernel"].reshape(-1, 16)
    naflex["img/pos_embedding"] = params["img/pos_embedding"].reshape(4, 4, 16)
    images = np.random.default_rng(11).uniform(-1, 1, size=(2, 9, 8, 3))  # one leftover row dropped
    ref = R.image_tower(fixed, images)
    patches = np.stack([R.naflex_patchify_array(img, 2, 16)[0] for img in images])
    out = R.naflex_image_tower(naflex, patches, np.ones((2, 16)), np.array([[4, 4], [4, 4]]))
    np.testing.assert_allclose(out["pooled"], ref["pooled"], atol=1e-12)
    np.testing.assert_allclose(out["encoded"], ref["encoded"], atol=1e-12)
    np.testing.assert_allclose(out["stem"], ref["stem"].reshape(2, 16, 16), atol=1e-12)


def test_two_tower_accepts_naflex_inputs(naflex_batch):
    params, patches, mask, shapes = naflex_batch
    params = dict(params, t=np.array([math.log(10.0)]), b=np.array([-2.0]))
    out = R.two_tower(params, naflex={"patches": patches, "patch_mask": mask, "spatial_shapes": shapes},
                      l2_eps=0.0)
    direct = R.naflex_image_tower(params, patches, mask, shapes)
    np.testing.assert_allclose(out["zimg_unnorm"], direct["pooled"], atol=0)
    np.testing.assert_allclose(np.linalg.norm(out["zimg"], axis=1), 1.0, atol=1e-12)
    assert "logits" not in out
