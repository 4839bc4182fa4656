"""The Keras towers and two-tower model against the NumPy oracle and the big_vision fixture."""

import numpy as np
import pytest

import keras

import keras_siglip_reference as reference
from keras_siglip import SigLIP, SigLIPTextEncoder, SigLIPVisionEncoder
from keras_siglip.convert import load_big_vision
from keras_siglip.testing import TINY_CONFIGS, build_tiny, random_tree
from tests._grad import to_numpy
from tests._paths import fixture_path

TOL = 1e-5  # float32 target on O(1) embeddings; measured errors are ~1e-6


def _inputs(model, seed, batch=3):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (batch, *model.vision_encoder.image_size, 3)).astype(np.float32)
    ids = rng.integers(
        0, model.text_encoder.vocabulary_size, (batch + 1, model.text_encoder.sequence_length)
    ).astype(np.int32)
    return images, ids


@pytest.fixture(scope="module", params=list(TINY_CONFIGS))
def tiny(request):
    seed = list(TINY_CONFIGS).index(request.param)
    model = build_tiny(request.param, seed=seed)
    tree = random_tree(model, seed=seed)
    images, ids = _inputs(model, seed)
    return model, tree, images, ids, reference.two_tower(tree, images, ids)


def test_embeddings_and_logits_match_oracle(tiny):
    model, tree, images, ids, oracle = tiny
    np.testing.assert_allclose(to_numpy(model.encode_images(images)), oracle["zimg_unnorm"], atol=TOL)
    np.testing.assert_allclose(to_numpy(model.encode_texts(ids)), oracle["ztxt_unnorm"], atol=TOL)
    out = model({"images": images, "token_ids": ids})
    np.testing.assert_allclose(to_numpy(out["image_embeddings"]), oracle["zimg"], atol=TOL)
    np.testing.assert_allclose(to_numpy(out["text_embeddings"]), oracle["ztxt"], atol=TOL)
    assert out["logits"].shape == (3, 4)
    np.testing.assert_allclose(to_numpy(out["logits"]), oracle["logits"], atol=TOL)


def test_unpooled_tokens_match_oracle(tiny):
    model, tree, images, ids, _ = tiny
    image_out = model.vision_encoder(images, return_tokens=True)
    text_out = model.text_encoder(ids, return_tokens=True)
    np.testing.assert_allclose(
        to_numpy(image_out["tokens"]), reference.image_tower(tree, images)["encoded"], atol=TOL
    )
    np.testing.assert_allclose(
        to_numpy(text_out["tokens"]), reference.text_tower(tree, ids)["encoded"], atol=TOL
    )
    grid = model.vision_encoder.grid_size
    assert image_out["tokens"].shape == (3, grid[0] * grid[1], model.vision_encoder.width)


def test_intermediates_match_oracle(tiny):
    model, tree, images, ids, _ = tiny
    ours = model.vision_encoder(images, return_intermediates=True)
    oracle = reference.image_tower(tree, images)
    for key in ("stem", "with_posemb", "block00/sa", "block00/+sa", "block00/mlp", "encoded"):
        np.testing.assert_allclose(to_numpy(ours[key]), oracle[key], atol=TOL, err_msg=key)


@pytest.fixture(scope="module")
def fixture():
    path = fixture_path("bv_siglip_fixed.npz")
    data = np.load(path)
    return path, {k: data[k] for k in data.files}


def test_big_vision_fixture(fixture):
    path, data = fixture
    model = load_big_vision(path, image_size=(32, 24))
    images, text = data["in/image"], data["in/text"]
    out = model({"images": images, "token_ids": text})
    np.testing.assert_allclose(to_numpy(model.encode_images(images)), data["zimg_unnorm"], atol=TOL)
    np.testing.assert_allclose(to_numpy(model.encode_texts(text)), data["ztxt_unnorm"], atol=TOL)
    np.testing.assert_allclose(to_numpy(out["image_embeddings"]), data["zimg"], atol=TOL)
    np.testing.assert_allclose(to_numpy(out["text_embeddings"]), data["ztxt"], atol=TOL)
    np.testing.assert_allclose(to_numpy(out["logits"]), data["logits"], atol=TOL)
    stages = model.vision_encoder(images, return_intermediates=True)
    for key in ("stem", "with_posemb", "encoded"):
        name = {"stem": "out/img/stem", "with_posemb": "out/img/with_posemb", "encoded": "out/img/encoded"}[key]
        np.testing.assert_allclose(to_numpy(stages[key]), data[name], atol=TOL, err_msg=key)
    for i in range(2):
        for part in ("sa", "+sa", "mlp", "+mlp"):
            np.testing.assert_allclose(
                to_numpy(stages[f"block{i:02d}/{part}"]),
                data[f"out/img/encoder/block{i:02d}/{part}"],
                atol=TOL,
            )
    text_stages = model.text_encoder(text, return_intermediates=True)
    np.testing.assert_allclose(to_numpy(text_stages["encoded"]), data["out/txt/transformed"], atol=TOL)


def _compiled_forward(model, images, ids):
    backend = keras.backend.backend()
    inputs = {"images": images, "token_ids": ids}
    if backend == "jax":
        import jax

        @jax.jit
        def forward(trainable, non_trainable, images, ids):
            out, _ = model.stateless_call(trainable, non_trainable, {"images": images, "token_ids": ids})
            return out

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return forward(trainable, non_trainable, images, ids)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x: model(x), jit_compile=True)(inputs)
    # torch: the backend's default compiled path is `predict` (the same graph as eager).
    return model.predict(inputs, verbose=0)


def test_compiled_forward_matches_oracle():
    model = build_tiny("odd_nonsquare", seed=1)
    tree = random_tree(model, seed=1)
    images, ids = _inputs(model, 7)
    oracle = reference.two_tower(tree, images, ids[:3])
    out = _compiled_forward(model, images, ids[:3])
    np.testing.assert_allclose(to_numpy(out["logits"]), oracle["logits"], atol=TOL)
    predicted = model.predict({"images": images, "token_ids": ids[:3]}, verbose=0, batch_size=3)
    np.testing.assert_allclose(predicted["logits"], oracle["logits"], atol=TOL)


def test_encode_is_a_compiled_inference_path():
    model = build_tiny("fixture_like", seed=3)
    images, ids = _inputs(model, 3)
    backend = keras.backend.backend()
    embeddings = model.encode_images(images)
    texts = model.encode_texts(ids)
    np.testing.assert_allclose(to_numpy(embeddings), to_numpy(model.vision_encoder(images)), atol=1e-5)
    np.testing.assert_allclose(to_numpy(texts), to_numpy(model.text_encoder(ids)), atol=1e-5)
    if backend == "torch":
        assert not embeddings.requires_grad and not texts.requires_grad  # no autograd graph
        # The graph runs in inference mode, but hands back ordinary tensors: a probe trained on
        # the embeddings can save them for its backward pass.
        import torch

        assert not embeddings.is_inference() and not texts.is_inference()
        probe = torch.ones(embeddings.shape[-1], 2, requires_grad=True)
        (embeddings @ probe).sum().backward()
        np.testing.assert_allclose(
            probe.grad.numpy(), np.repeat(to_numpy(embeddings).sum(0)[:, None], 2, 1), rtol=1e-6
        )
        # The recorded graph replays the kernels of eager inference (no_grad: the matmul kernel
        # may differ from the autograd one, see keras_siglip.backend.torch_cpu_gemm): bit-identical,
        # one graph per shape, and weights are arguments, so an update after recording is seen.
        with torch.no_grad():
            np.testing.assert_array_equal(
                to_numpy(embeddings), to_numpy(model.vision_encoder(images))
            )
            np.testing.assert_array_equal(to_numpy(texts), to_numpy(model.text_encoder(ids)))
        assert len(model.vision_encoder._keras_siglip_torch_graphs) == 1
        head = model.vision_encoder.head.weights[-1]
        head.assign(head.value + 1.0)
        with torch.no_grad():
            np.testing.assert_array_equal(
                to_numpy(model.encode_images(images)), to_numpy(model.vision_encoder(images))
            )
        # predict goes through the same graphs and matches the eager forward.
        both = {"images": images, "token_ids": ids[:3]}
        with torch.no_grad():
            eager = model(both)
        predicted = model.predict(both, batch_size=3, verbose=0)
        for key in ("image_embeddings", "text_embeddings", "logits"):
            np.testing.assert_array_equal(predicted[key], to_numpy(eager[key]))
        in_two = model.predict({"images": images}, batch_size=2, verbose=0)  # batches of 2 and 1
        # (matmuls over 2 and 1 rows round differently from one over 3: not bit-identical)
        np.testing.assert_allclose(
            in_two["image_embeddings"], to_numpy(eager["image_embeddings"]), atol=1e-6
        )
    # predict/fit compile with XLA on JAX and on TensorFlow (also without an accelerator).
    assert model.jit_compile == (backend != "torch")


def test_keras_save_load_is_bit_exact(tmp_path):
    model = build_tiny("asymmetric_text", seed=2)
    images, ids = _inputs(model, 2)
    path = tmp_path / "tiny.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, SigLIP)
    for a, b in zip(model.weights, restored.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    np.testing.assert_array_equal(
        to_numpy(model({"images": images, "token_ids": ids})["logits"]),
        to_numpy(restored({"images": images, "token_ids": ids})["logits"]),
    )
    also = SigLIP.from_preset(str(path))
    np.testing.assert_array_equal(to_numpy(also.logit_bias), to_numpy(model.logit_bias))


def test_mixed_bfloat16_close_to_float32():
    reference_model = build_tiny("fixture_like", seed=0)
    images, ids = _inputs(reference_model, 0)
    expected = to_numpy(reference_model({"images": images, "token_ids": ids})["logits"])
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_tiny("fixture_like", seed=0)
        assert model.vision_encoder.blocks[0].attention.query.compute_dtype == "bfloat16"
        out = model({"images": images, "token_ids": ids})
        encoded = to_numpy(model.encode_images(images)).astype(np.float32)  # the compiled path
    finally:
        keras.config.set_dtype_policy(previous)
    logits = to_numpy(out["logits"]).astype(np.float32)
    assert np.all(np.isfinite(logits))
    # bfloat16 keeps 8 bits of mantissa; logits are t * cos + b with t ~ 10.
    np.testing.assert_allclose(logits, expected, atol=0.15)
    emb = to_numpy(out["image_embeddings"]).astype(np.float32)
    cos = np.sum(emb * to_numpy(reference_model({"images": images})["image_embeddings"]), axis=1)
    assert np.all(cos > 0.99)
    reference_encoded = to_numpy(reference_model.encode_images(images))
    cos = np.sum(encoded * reference_encoded, axis=1) / (
        np.linalg.norm(encoded, axis=1) * np.linalg.norm(reference_encoded, axis=1)
    )
    assert np.all(cos > 0.99)


def test_layer_configs_round_trip():
    model = build_tiny("no_text_head")
    for tower in (model.vision_encoder, model.text_encoder):
        clone = tower.__class__.from_config(tower.get_config())
        assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in tower.weights]
    clone = SigLIP.from_config(model.get_config())
    assert clone.text_encoder.head is None
    assert float(to_numpy(clone.logit_scale)[0]) == pytest.approx(np.log(10.0), abs=1e-6)
    assert float(to_numpy(clone.logit_bias)[0]) == -10.0


def test_bad_inputs_name_the_problem():
    model = build_tiny("fixture_like")
    with pytest.raises(ValueError, match=r"`images` must have shape \(batch, height, width, 3\)"):
        model.encode_images(np.zeros((2, 32, 24), np.float32))
    with pytest.raises(ValueError, match=r"received shape \(2, 32, 24, 1\)"):
        model.encode_images(np.zeros((2, 32, 24, 1), np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(batch, 32, 24, 3\)"):
        model.encode_images(np.zeros((2, 24, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"outside the vocabulary .*\[0, 100\]"):
        model.encode_texts(np.full((2, 16), 101, np.int32))
    with pytest.raises(ValueError, match=r"`token_ids` must have shape \(batch, 16\)"):
        model.encode_texts(np.zeros((2, 15), np.int32))
    with pytest.raises(ValueError, match="dtype float32"):
        model.encode_texts(np.zeros((2, 16), np.float32))
    with pytest.raises(ValueError, match="'images' and/or 'token_ids'"):
        model(np.zeros((2, 32, 24, 3), np.float32))
    vision = SigLIPVisionEncoder((8, 8), 4, width=8, depth=1, mlp_dim=8, num_heads=2)
    text = SigLIPTextEncoder(10, 4, width=6, depth=1, mlp_dim=8, num_heads=2)
    with pytest.raises(ValueError, match="embed_dim"):
        SigLIP(vision, text)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch's CPU matmul kernels")
def test_torch_encode_matches_oracle_with_each_cpu_gemm(monkeypatch):
    from keras_siglip.backend import available_torch_cpu_gemms

    model = build_tiny("odd_nonsquare", seed=4)
    tree = random_tree(model, seed=4)
    images, ids = _inputs(model, 4)
    oracle = reference.two_tower(tree, images, ids)
    gemms = available_torch_cpu_gemms()
    for gemm in gemms:
        monkeypatch.setenv("KERAS_SIGLIP_TORCH_CPU_GEMM", gemm)
        np.testing.assert_allclose(
            to_numpy(model.encode_images(images)), oracle["zimg_unnorm"], atol=TOL
        )
        np.testing.assert_allclose(
            to_numpy(model.encode_texts(ids)), oracle["ztxt_unnorm"], atol=TOL
        )
    # One recorded graph per kernel: changing the variable takes effect without a restart.
    assert len(model.vision_encoder._keras_siglip_torch_graphs) == len(gemms)
