"""NaFlex and position-table resizing on this backend (docs/naflex.md, docs/checkpoints.md).

Against the float64 NumPy oracle, big_vision's resize fixture and torch's antialiased bilinear
`interpolate`: the per-example resize layer, the NaFlex tower (eager and compiled, with a batch
mixing grids), the two-tower model, the fixed-resolution resize and its loader option, input
validation, presets and serialisation.
"""

import numpy as np
import pytest

import keras

import keras_siglip_reference as reference
from keras_siglip import SigLIP, SigLIPNaFlexVisionEncoder, list_presets, preset_info
from keras_siglip.convert import load_big_vision, model_to_tree, save_big_vision
from keras_siglip.layers import (
    NaFlexPositionEmbedding,
    antialiased_bilinear_weights,
    resize_naflex_position_table,
    resize_position_embedding,
)
from keras_siglip.testing import (
    TINY_NAFLEX_CONFIG,
    build_tiny,
    build_tiny_naflex,
    random_naflex_inputs,
)
from tests._grad import to_numpy
from tests._paths import fixture_path

TOL = 1e-5  # towers and logits: float32 against float64 on O(1) outputs (measured <= 1.4e-6)
RESIZE_TOL = 1e-6  # position-table resizes on O(1) tables (measured <= 4.1e-7)

# From a 4x4 table: (2, 12) downsamples the rows and upsamples the columns; (4, 4) is the
# identity; (3, 5) mixes again; (1, 24) fills the whole budget with one row.
SHAPES = [(2, 12), (4, 4), (3, 5), (1, 24)]
N_MAX = 24


def _valid_rows(x, shapes):
    return [np.asarray(x[i, : h * w], np.float64) for i, (h, w) in enumerate(shapes)]


def _assert_valid_rows_close(actual, expected, shapes, atol, name=""):
    for i, (a, e) in enumerate(zip(_valid_rows(to_numpy(actual), shapes), _valid_rows(expected, shapes))):
        np.testing.assert_allclose(a, e, atol=atol, rtol=0, err_msg=f"{name} example {i} {shapes[i]}")


# ---------------------------------------------------------------------------------------------
# The per-example resize layer


NAFLEX_WEIGHT_VECTORS = {  # docs/naflex.md, G = 4
    2: [[3 / 7, 3 / 7, 1 / 7, 0], [0, 1 / 7, 3 / 7, 3 / 7]],
    3: [[0.7, 0.3, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.3, 0.7]],
    6: [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0, 5 / 6, 1 / 6, 0], [0, 1 / 6, 5 / 6, 0], [0, 0, 0.5, 0.5],
        [0, 0, 0, 1]],
    1: [[5 / 24, 7 / 24, 7 / 24, 5 / 24]],
}


def test_weight_vectors():
    # All rows of all sizes in one call: the target size varies per row, as in a mixed batch.
    sizes = np.concatenate([np.full(size, size) for size in NAFLEX_WEIGHT_VECTORS])
    index = np.concatenate([np.arange(size) for size in NAFLEX_WEIGHT_VECTORS])
    expected = np.concatenate([rows for rows in NAFLEX_WEIGHT_VECTORS.values()])
    np.testing.assert_allclose(to_numpy(antialiased_bilinear_weights(4, sizes, index)), expected, atol=1e-7)
    interior = to_numpy(antialiased_bilinear_weights(16, np.full((8,), 8), np.arange(8)))
    for i in range(1, 7):  # G = 16 -> 8
        np.testing.assert_allclose(interior[i, 2 * i - 1 : 2 * i + 3], [0.125, 0.375, 0.375, 0.125], atol=1e-7)


def test_resize_matches_oracle_with_mixed_grids():
    table = np.random.default_rng(0).normal(size=(4, 4, 32)).astype(np.float32)
    out = to_numpy(resize_naflex_position_table(table, np.array(SHAPES), N_MAX))
    assert out.shape == (len(SHAPES), N_MAX, 32)
    for i, (h, w) in enumerate(SHAPES):
        expected = reference.resize_posemb_naflex(table, h, w).reshape(h * w, -1)
        np.testing.assert_allclose(out[i, : h * w], expected, atol=RESIZE_TOL, rtol=0)
        # Padded rows hold the resized (0, 0) entry, as transformers writes them.
        np.testing.assert_allclose(out[i, h * w :], np.broadcast_to(expected[0], out[i, h * w :].shape),
                                   atol=RESIZE_TOL)


@pytest.fixture(scope="module")
def bv_resize():
    data = np.load(fixture_path("bv_posemb_resize.npz"))
    targets = [(int(h), int(w)) for h, w in data["targets_hw"]]
    n_max = max(h * w for h, w in targets)
    out = to_numpy(resize_naflex_position_table(data["input"], np.array(targets), n_max))
    return data, targets, out


def test_resize_matches_oracle_on_fixture_input(bv_resize):
    # One batch holding all of the fixture's targets (8x32, 12x20, 3x5, 16x16, 40x7), each
    # against the float64 oracle on the same float32 input (|values| <= 3.3).
    # Measured max |layer - oracle|: 2.9e-7 jax, 2.0e-7 tensorflow, 2.0e-7 torch.
    data, targets, out = bv_resize
    for i, (h, w) in enumerate(targets):
        expected = reference.resize_posemb_naflex(data["input"], h, w)
        np.testing.assert_allclose(out[i, : h * w].reshape(h, w, -1), expected, atol=RESIZE_TOL,
                                   rtol=0, err_msg=f"{h}x{w}")


def test_resize_matches_big_vision_fixture(bv_resize):
    # The fixture itself is float32 jax output and is off the float64 oracle by up to 2.46e-6
    # (12x20) and 1.37e-6 (40x7); 8x32 and 3x5 are within 1.6e-7. The cause: jax builds its
    # weights from float32 centres (i + 0.5)·G/S − 0.5 (up to 15.5, ulp ~1e-6), so each weight is
    # off by up to ~5e-7, times |table| <= 3.3. Re-computing those float32 weights below
    # reproduces the fixture to 2e-7. Our layer forms the same distances as exact integers
    # over one division (see `antialiased_bilinear_weights`), so it is within 3e-7 of the oracle
    # and its distance to the fixture is the fixture's own error: measured max |layer - fixture|
    # 2.3e-6 jax, 2.4e-6 tensorflow, 2.5e-6 torch (12x20). The tightest honest tolerance per
    # target is therefore |fixture - oracle| + RESIZE_TOL (triangle inequality).
    data, targets, out = bv_resize
    for i, (h, w) in enumerate(targets):
        oracle = reference.resize_posemb_naflex(data["input"], h, w)
        ours = out[i, : h * w].reshape(h, w, -1)
        for key in (f"out_{h}x{w}", f"naflex_path_{h}x{w}"):
            fixture = np.asarray(data[key], np.float64)
            fixture_error = np.abs(fixture - oracle).max()
            assert fixture_error < 2.5e-6, (key, fixture_error)
            np.testing.assert_allclose(ours, fixture, atol=fixture_error + RESIZE_TOL, rtol=0, err_msg=key)

    def float32_textbook_weights(G, S):  # what jax.image.scale_and_translate computes
        f = np.float32
        scale = f(G) / f(S)
        centre = (np.arange(S, dtype=f) + f(0.5)) * scale - f(0.5)
        w = np.maximum(f(0), f(1) - np.abs(np.arange(G, dtype=f)[None] - centre[:, None]) / max(scale, f(1)))
        return (w / w.sum(1, keepdims=True)).astype(np.float64)

    for h, w in targets:
        emulated = np.einsum("ai,bj,ijc->abc", float32_textbook_weights(16, h),
                             float32_textbook_weights(16, w), data["input"].astype(np.float64))
        np.testing.assert_allclose(emulated, data[f"out_{h}x{w}"], atol=2.5e-7, err_msg=f"{h}x{w}")


TORCH_CASES = {  # down- and up-sampling on each axis, one mixed batch per table size
    16: [(8, 8), (20, 7), (5, 40), (1, 1)],
    4: [(2, 12), (6, 3), (4, 4)],
}


@pytest.mark.parametrize("G", sorted(TORCH_CASES))
def test_resize_matches_torch_antialiased_bilinear(G):
    # torch in float64 is the exact reference; measured max |layer - torch| <= 4e-7.
    torch = pytest.importorskip("torch")
    table = np.random.default_rng(G).normal(size=(G, G, 5)).astype(np.float32)
    grid = torch.from_numpy(table.astype(np.float64)).permute(2, 0, 1)[None]
    targets = TORCH_CASES[G]
    out = to_numpy(resize_naflex_position_table(table, np.array(targets), max(h * w for h, w in targets)))
    for i, (h, w) in enumerate(targets):
        expected = torch.nn.functional.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False,
                                                   antialias=True)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(out[i, : h * w].reshape(h, w, -1), expected, atol=RESIZE_TOL, rtol=0,
                                   err_msg=f"{G} -> {h}x{w}")


def test_position_embedding_layer_casts_and_serialises():
    layer = NaFlexPositionEmbedding(grid_size=4, dtype="mixed_bfloat16")
    layer.build((None, None, 32))
    assert tuple(layer.embeddings.shape) == (4, 4, 32) and layer.embeddings.dtype == "float32"
    out = layer(np.array(SHAPES), num_patches=N_MAX)  # resized in float32, then cast
    assert tuple(out.shape) == (len(SHAPES), N_MAX, 32)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    clone = NaFlexPositionEmbedding.from_config(layer.get_config())
    assert clone.grid_size == 4


# ---------------------------------------------------------------------------------------------
# The NaFlex tower and the two-tower model


@pytest.fixture(scope="module")
def tiny():
    model = build_tiny_naflex(seed=0)
    tree = model_to_tree(model)
    inputs = random_naflex_inputs(SHAPES, N_MAX, patch_size=2, seed=1)
    ids = np.random.default_rng(2).integers(0, 99, (len(SHAPES), 16)).astype(np.int32)
    oracle = reference.two_tower(tree, token_ids=ids, naflex=dict(inputs, masking="transformers"))
    return model, tree, inputs, ids, oracle


def test_tower_matches_oracle(tiny):
    model, _, inputs, _, oracle = tiny
    encoder = model.vision_encoder
    assert encoder.is_naflex and isinstance(encoder, SigLIPNaFlexVisionEncoder)
    assert tuple(encoder.patch_embedding.kernel.shape) == (12, 32)
    assert tuple(encoder.position_embedding.embeddings.shape) == (4, 4, 32)
    stages = encoder(inputs, return_intermediates=True)
    expected_stages = oracle["img"]
    assert set(stages) == set(expected_stages)
    for name, value in stages.items():
        if name == "pooled":
            np.testing.assert_allclose(to_numpy(value), expected_stages[name], atol=TOL)
        else:
            _assert_valid_rows_close(value, expected_stages[name], SHAPES, TOL, name)
    out = encoder(inputs, return_tokens=True)
    _assert_valid_rows_close(out["tokens"], expected_stages["encoded"], SHAPES, TOL, "tokens")
    np.testing.assert_allclose(to_numpy(model.encode_images(inputs)), oracle["zimg_unnorm"], atol=TOL)


def test_compiled_encode_resizes_for_each_call_grids(tiny):
    """`encode_images` compiles once per padded shape (jit, XLA, a torch graph); a second call
    with other grids in the same budget must resize for its own grids, as the oracle does."""
    model, tree, inputs, _, _ = tiny
    model.encode_images(inputs)  # compiled for these shapes
    other_shapes = [(6, 4), (1, 1), (5, 3), (24, 1)]
    other = random_naflex_inputs(other_shapes, N_MAX, patch_size=2, seed=7)
    expected = reference.naflex_image_tower(tree, **other, masking="transformers")["pooled"]
    np.testing.assert_allclose(to_numpy(model.encode_images(other)), expected, atol=TOL)


def test_padded_patches_change_nothing_valid(tiny):
    model, tree, inputs, _, oracle = tiny
    noisy = random_naflex_inputs(SHAPES, N_MAX, patch_size=2, seed=1, padding="random")
    assert np.abs(noisy["patches"][0, 24:]).size == 0 and np.abs(noisy["patches"][1, 16:]).max() > 100
    out = model.vision_encoder(noisy, return_tokens=True)
    np.testing.assert_allclose(to_numpy(out["pooled"]), oracle["img"]["pooled"], atol=TOL)
    _assert_valid_rows_close(out["tokens"], oracle["img"]["encoded"], SHAPES, TOL, "tokens")
    # The oracle does not zero padded patches: its valid rows ignore them through the masks alone.
    noisy_oracle = reference.naflex_image_tower(tree, noisy["patches"], noisy["patch_mask"],
                                                noisy["spatial_shapes"])
    np.testing.assert_allclose(noisy_oracle["pooled"], oracle["img"]["pooled"], atol=1e-10)
    # Even inf and NaN in the padding.
    broken = dict(noisy, patches=noisy["patches"].copy())
    broken["patches"][1, 16:] = np.inf
    broken["patches"][2, 15:] = np.nan
    np.testing.assert_allclose(to_numpy(model.vision_encoder(broken)), oracle["img"]["pooled"], atol=TOL)


def test_siglip_logits_match_oracle(tiny):
    model, _, inputs, ids, oracle = tiny
    out = model({"images": inputs, "token_ids": ids})
    np.testing.assert_allclose(to_numpy(out["logits"]), oracle["logits"], atol=TOL)
    np.testing.assert_allclose(to_numpy(out["image_embeddings"]), oracle["zimg"], atol=TOL)
    np.testing.assert_allclose(to_numpy(out["text_embeddings"]), oracle["ztxt"], atol=TOL)


def _compiled_pooled(encoder, inputs):
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.jit
        def forward(trainable, non_trainable, inputs):
            return encoder.stateless_call(trainable, non_trainable, inputs)[0]

        return forward([v.value for v in encoder.trainable_variables],
                       [v.value for v in encoder.non_trainable_variables], inputs)
    if backend == "tensorflow":
        import tensorflow as tf

        # Unknown batch and sequence length: the resize must not need a static N.
        signature = [{
            "patches": tf.TensorSpec((None, None, 12), tf.float32),
            "patch_mask": tf.TensorSpec((None, None), tf.int32),
            "spatial_shapes": tf.TensorSpec((None, 2), tf.int32),
        }]
        return tf.function(lambda x: encoder(x), input_signature=signature)(inputs)
    # torch: the backend's compiled path is `predict` (the same graph as eager).
    return encoder.predict(inputs, verbose=0, batch_size=len(SHAPES))


def test_compiled_tower_with_mixed_grids(tiny):
    # Measured max |compiled - oracle| <= 5e-7 on every backend; |compiled - eager| <= 4.2e-7.
    model, _, inputs, _, oracle = tiny
    encoder = model.vision_encoder
    compiled = to_numpy(_compiled_pooled(encoder, inputs))
    np.testing.assert_allclose(compiled, oracle["img"]["pooled"], atol=TOL)
    np.testing.assert_allclose(compiled, to_numpy(encoder(inputs)), atol=1e-6)


def test_bad_inputs_name_the_problem(tiny):
    from keras_siglip.preprocessing import naflex_patchify

    encoder = tiny[0].vision_encoder
    good = random_naflex_inputs([(2, 3), (1, 4)], 6, patch_size=2, seed=3)

    def variant(**changes):
        return {**good, **{k: np.asarray(v) for k, v in changes.items()}}

    with pytest.raises(ValueError, match="max_num_patches"):
        naflex_patchify([np.zeros((8, 8, 3), np.uint8)], 2, 0)
    with pytest.raises(ValueError, match="budget .* must be at least 1"):
        encoder(variant(patches=np.zeros((2, 0, 12)), patch_mask=np.zeros((2, 0))))
    with pytest.raises(ValueError, match=r"needs 9 patches but the inputs hold only 6 rows"):
        encoder(variant(spatial_shapes=[[3, 3], [1, 4]]))
    with pytest.raises(ValueError, match=r"h > 0 and w > 0"):
        encoder(variant(spatial_shapes=[[2, 3], [0, 4]]))
    with pytest.raises(ValueError, match=r"patch_mask\[1\] disagrees .* marks 4 rows\."):
        encoder(variant(spatial_shapes=[[2, 3], [1, 3]]))
    mask = good["patch_mask"].copy()
    mask[1] = [0, 1, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="not a prefix"):
        encoder(variant(patch_mask=mask))
    with pytest.raises(ValueError, match=r"patch_size=2 gives 2\*2\*3 = 12 values per patch"):
        encoder(variant(patches=np.zeros((2, 6, 13))))
    with pytest.raises(ValueError, match="expects a dict with keys"):
        encoder(good["patches"])
    # `SigLIP.encode_images` compiles its call; the value checks still run first.
    with pytest.raises(ValueError, match=r"patch_mask\[1\] disagrees"):
        tiny[0].encode_images(variant(spatial_shapes=[[2, 3], [1, 3]]))


# ---------------------------------------------------------------------------------------------
# Fixed-resolution resize, the loader option and the tower helper


@pytest.mark.parametrize("method,old,new", [
    ("big_vision", 4, 6), ("big_vision", 4, 3), ("big_vision", 7, 12), ("big_vision", 27, 16),
    ("transformers", 4, (6, 6)), ("transformers", 16, (24, 20)), ("transformers", 5, (7, 3)),
    ("transformers", 14, (1, 5)),
])
def test_fixed_resize_matches_oracle(method, old, new):
    posemb = np.random.default_rng(old).normal(size=(1, old * old, 6)).astype(np.float32)
    expected = reference.resize_posemb_fixed(posemb, new, method=method)
    out = resize_position_embedding(posemb, old, new, method)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=RESIZE_TOL, rtol=0)
    if (old, new) in ((7, 12), (16, (24, 20))):  # the backend path, once per method
        as_tensor = resize_position_embedding(keras.ops.convert_to_tensor(posemb), old, new, method)
        np.testing.assert_allclose(to_numpy(as_tensor), expected, atol=RESIZE_TOL, rtol=0)


def test_fixed_resize_options():
    posemb = np.random.default_rng(0).normal(size=(1, 16, 3)).astype(np.float32)
    for method in ("big_vision", "transformers"):
        np.testing.assert_array_equal(resize_position_embedding(posemb, 4, 4, method), posemb)
    with pytest.raises(ValueError, match="valid methods: 'big_vision', 'transformers'"):
        resize_position_embedding(posemb, 4, 6, "bicubic")
    with pytest.raises(ValueError, match="square grids only"):
        resize_position_embedding(posemb, 4, (4, 6), "big_vision")
    with pytest.raises(ValueError, match="5x5 source grid"):
        resize_position_embedding(posemb, 5, 6, "transformers")


def test_load_big_vision_resizes_position_embedding():
    model = build_tiny("no_text_head", seed=4)  # 20x20 images, patch 5: a 4x4 grid
    tree = model_to_tree(model)
    with pytest.raises(ValueError, match=r"4x4 grid .* needs a 6x6 grid .*posemb_resize="):
        load_big_vision(tree, image_size=30)
    with pytest.raises(ValueError, match="posemb_resize='nearest'"):
        load_big_vision(tree, image_size=30, posemb_resize="nearest")
    images = np.random.default_rng(5).uniform(-1, 1, (2, 30, 30, 3)).astype(np.float32)
    for method in ("big_vision", "transformers"):
        resized = load_big_vision(tree, image_size=30, posemb_resize=method)
        assert resized.vision_encoder.grid_size == (6, 6)
        expected = reference.resize_posemb_fixed(tree["img/pos_embedding"], 6, method=method)
        table = to_numpy(resized.vision_encoder.position_embedding.embeddings)
        np.testing.assert_allclose(table, expected, atol=RESIZE_TOL, err_msg=method)
        oracle = reference.image_tower({**tree, "img/pos_embedding": expected}, images)
        np.testing.assert_allclose(to_numpy(resized.encode_images(images)), oracle["pooled"], atol=TOL)
        # The tower helper gives the same table.
        tower = model.vision_encoder.with_image_size(30, posemb_resize=method)
        np.testing.assert_array_equal(to_numpy(tower.position_embedding.embeddings), table)
    # The checkpoint's own grid: nothing to resize.
    assert load_big_vision(tree, posemb_resize="big_vision").vision_encoder.grid_size == (4, 4)


# ---------------------------------------------------------------------------------------------
# Serialisation


def test_keras_save_load_is_bit_exact(tiny, tmp_path):
    model, _, inputs, ids, _ = tiny
    path = tmp_path / "naflex.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.vision_encoder, SigLIPNaFlexVisionEncoder)
    assert restored.vision_encoder.position_grid_size == 4
    for a, b in zip(model.weights, restored.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    batch = {"images": inputs, "token_ids": ids}
    np.testing.assert_array_equal(to_numpy(model(batch)["logits"]), to_numpy(restored(batch)["logits"]))


def test_big_vision_round_trip_is_bit_exact(tiny, tmp_path):
    model, tree, inputs, ids, _ = tiny
    path = save_big_vision(model, tmp_path / "naflex.npz")
    with np.load(path) as data:
        assert data["img/embedding/kernel"].shape == (12, 32)
        assert data["img/pos_embedding"].shape == (4, 4, 32)
    restored = load_big_vision(path)
    assert isinstance(restored.vision_encoder, SigLIPNaFlexVisionEncoder)
    assert restored.vision_encoder.get_config()["position_grid_size"] == 4
    again = model_to_tree(restored)
    assert set(again) == set(tree)
    for name in tree:
        np.testing.assert_array_equal(again[name], tree[name], err_msg=name)
    batch = {"images": inputs, "token_ids": ids}
    np.testing.assert_array_equal(to_numpy(model(batch)["logits"]), to_numpy(restored(batch)["logits"]))


# ---------------------------------------------------------------------------------------------
# Presets

NAFLEX_PRESETS = {"siglip2_base_patch16_naflex": "B", "siglip2_so400m_patch16_naflex": "So400m"}
SPEC_VARIANTS = {"B": (768, 12, 3072, 12), "So400m": (1152, 27, 4304, 16)}  # docs/architecture.md


def _expected_parameter_count(variant, patch=16, grid=16, vocab=256_000, length=64):
    """Parameters of a NaFlex SigLIP 2 from docs/checkpoints.md's tree shapes, not the model."""
    width, depth, mlp, _ = SPEC_VARIANTS[variant]
    attention = 3 * (width * width + width) + (width * width + width)  # q, k, v (W,H,hd) + out
    mlp_block = (width * mlp + mlp) + (mlp * width + width)
    block = 2 * 2 * width + attention + mlp_block  # two LayerNorms
    vision = (patch * patch * 3 * width + width) + grid * grid * width + depth * block + 2 * width
    vision += width + attention + 2 * width + mlp_block  # MAP head: probe, MHA, LayerNorm, MLP
    text = vocab * width + length * width + depth * block + 2 * width + (width * width + width)
    return vision + text + 2  # t, b


def test_naflex_presets_listed():
    for name, variant in NAFLEX_PRESETS.items():
        assert name in list_presets()
        info = preset_info(name)
        assert info["naflex"] and info["image_variant"] == variant
        assert (info["patch_size"], info["position_grid_size"], info["max_num_patches"]) == (16, 16, 256)
        assert (info["sequence_length"], info["tokenizer"]) == (64, "gemma")
        assert info["hf_id"] == "google/" + name.replace("_", "-")
        assert info["big_vision_file"].startswith("gs://big_vision/siglip2/")


def test_naflex_preset_builds_with_overrides():
    model = SigLIP.from_preset("siglip2_base_patch16_naflex", load_weights=False, image_variant="mu",
                               text_variant="mu", vocabulary_size=99, embed_dim=32, position_grid_size=4,
                               sequence_length=16)
    assert isinstance(model.vision_encoder, SigLIPNaFlexVisionEncoder)
    assert model.vision_encoder.patch_size == 16
    assert tuple(model.vision_encoder.position_embedding.embeddings.shape) == (4, 4, 32)
    mu = TINY_NAFLEX_CONFIG["vision"]
    assert (model.vision_encoder.width, model.vision_encoder.depth) == (mu["width"], mu["depth"])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NAFLEX_PRESETS))
def test_naflex_preset_parameter_count(name):
    model = SigLIP.from_preset(name, load_weights=False)
    assert model.vision_encoder.is_naflex
    assert model.count_params() == _expected_parameter_count(NAFLEX_PRESETS[name])
