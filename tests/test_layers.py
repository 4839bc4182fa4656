"""Layers: shapes, masks, configs and `keras.saving` round trips."""

import numpy as np
import pytest

import keras

from keras_siglip.layers import (
    EncoderBlock,
    Linear,
    MAPHead,
    MLPBlock,
    MultiHeadAttention,
    PatchEmbedding,
    PositionEmbedding,
)
from keras_siglip.backend import heads_major_attention, torch_fused_attention
from tests._grad import to_numpy

LAYERS = [
    (lambda: PatchEmbedding(patch_size=4, hidden_dim=12), (2, 13, 9, 3)),
    (lambda: PositionEmbedding(sequence_length=6), (2, 6, 10)),
    (lambda: Linear((3, 4)), (2, 5, 10)),
    (lambda: Linear(6, input_axes=2), (2, 5, 3, 4)),
    (lambda: MLPBlock(mlp_dim=7), (2, 5, 10)),
    (lambda: MultiHeadAttention(num_heads=5), (2, 5, 10)),
    (lambda: EncoderBlock(num_heads=2, mlp_dim=7), (2, 5, 10)),
    (lambda: MAPHead(num_heads=5, mlp_dim=7), (2, 5, 10)),
]


@pytest.mark.parametrize("make,shape", LAYERS)
def test_config_and_saving_round_trip(make, shape, tmp_path):
    layer = make()
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = to_numpy(layer(x))
    assert tuple(layer.compute_output_shape(shape)) == expected.shape
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert clone.get_config() == layer.get_config()
    if not clone.built:
        clone.build(shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(to_numpy(clone(x)), expected)

    inputs = keras.Input(shape[1:])
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "layer.keras")
    restored = keras.saving.load_model(tmp_path / "layer.keras")
    np.testing.assert_array_equal(to_numpy(restored(x)), expected)


def test_patch_embedding_drops_leftover_pixels_row_major():
    layer = PatchEmbedding(patch_size=4, hidden_dim=3)
    x = np.random.default_rng(1).standard_normal((1, 13, 9, 3)).astype(np.float32)
    tokens = to_numpy(layer(x))
    assert tokens.shape == (1, 3 * 2, 3)
    kernel, bias = (to_numpy(w) for w in layer.weights)
    # Token 3 is grid row 1, column 1: pixels [4:8, 4:8].
    patch = x[0, 4:8, 4:8, :]
    expected = np.einsum("ijc,ijcd->d", patch, kernel) + bias
    np.testing.assert_allclose(tokens[0, 3], expected, atol=1e-5)
    # Changing a dropped pixel changes nothing.
    x2 = x.copy()
    x2[0, 12, :, :] = 100.0
    np.testing.assert_array_equal(to_numpy(layer(x2)), tokens)


def test_attention_key_mask_equals_truncation():
    mha = MultiHeadAttention(num_heads=2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 8)).astype(np.float32)
    mask = np.zeros((2, 7), bool)
    mask[:, :4] = True
    x_padded = x.copy()
    x_padded[:, 4:] = 1e3 * rng.standard_normal((2, 3, 8))
    masked = to_numpy(mha(x_padded, key_mask=mask))[:, :4]
    truncated = to_numpy(mha(x[:, :4]))
    np.testing.assert_allclose(masked, truncated, atol=1e-5)


def test_map_head_key_mask_ignores_padding():
    head = MAPHead(num_heads=3, mlp_dim=9)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 12)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    pooled = to_numpy(head(x, key_mask=mask))
    x2 = x.copy()
    x2[0, 4:] = 50.0
    np.testing.assert_allclose(to_numpy(head(x2, key_mask=mask)), pooled, atol=1e-5)
    np.testing.assert_allclose(pooled[0], to_numpy(head(x[:1, :4]))[0], atol=1e-5)


def test_mlp_uses_tanh_gelu():
    mlp = MLPBlock(mlp_dim=3)
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(1, 2, 4)
    out = to_numpy(mlp(x))
    w1, b1, w2, b2 = (to_numpy(w) for w in mlp.weights)
    h = x @ w1 + b1
    gelu = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    np.testing.assert_allclose(out, gelu @ w2 + b2, atol=1e-5)


def test_block_layer_norm_epsilon_is_1e_6():
    block = EncoderBlock(num_heads=2, mlp_dim=4)
    assert block.layer_norm_1.epsilon == 1e-6 and block.layer_norm_2.epsilon == 1e-6
    assert MAPHead(num_heads=2, mlp_dim=4).layer_norm.epsilon == 1e-6


def test_position_embedding_length_mismatch():
    layer = PositionEmbedding(sequence_length=6)
    with pytest.raises(ValueError, match="has 6 positions but received 5 tokens"):
        layer(np.zeros((1, 5, 4), np.float32))


def test_attention_width_must_split_into_heads():
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        MultiHeadAttention(num_heads=3)(np.zeros((1, 2, 10), np.float32))


@pytest.mark.parametrize(
    "output_shape,input_axes,shape", [((3, 4), 1, (2, 5, 10)), (6, 2, (2, 5, 3, 4)), (7, 1, (4, 9))]
)
def test_linear_matches_numpy_tensordot(output_shape, input_axes, shape):
    layer = Linear(output_shape, input_axes=input_axes)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    layer.build(shape)
    kernel = rng.standard_normal(layer.kernel.shape).astype(np.float32)
    bias = rng.standard_normal(layer.bias.shape).astype(np.float32)
    layer.set_weights([kernel, bias])
    expected = np.tensordot(x, kernel, axes=input_axes) + bias
    np.testing.assert_allclose(to_numpy(layer(x)), expected, atol=1e-5)


def _attention_numpy(q, k, v, mask):
    """Plain per-example, per-head softmax attention in float64."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    out = np.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(q.shape[2]):
            logits = q[b, :, h] @ k[b, :, h].T / np.sqrt(q.shape[-1])
            logits = np.where(mask[b][None, :], logits, -np.inf)
            weights = np.exp(logits - logits.max(-1, keepdims=True))
            weights /= weights.sum(-1, keepdims=True)
            out[b, :, h] = weights @ v[b, :, h]
    return out


@pytest.mark.parametrize("use_mask", [False, True])
def test_heads_major_attention_matches_numpy_and_fused_op(use_mask):
    """The XLA path (heads-major matmuls), torch's path and `ops.dot_product_attention` agree."""
    rng = np.random.default_rng(6)
    q = rng.standard_normal((2, 5, 3, 8)).astype(np.float32)
    k, v = (rng.standard_normal((2, 7, 3, 8)).astype(np.float32) for _ in range(2))
    mask = np.ones((2, 7), bool)
    if use_mask:
        mask[0, 4:] = False
        mask[1, 1] = False
        k[0, 4:] = 1e4  # masked keys may hold anything
    expected = _attention_numpy(q, k, v, mask)
    keras_mask = mask[:, None, None, :] if use_mask else None
    np.testing.assert_allclose(to_numpy(heads_major_attention(q, k, v, keras_mask)), expected, atol=1e-5)
    fused = keras.ops.dot_product_attention(q, k, v, mask=keras_mask)
    np.testing.assert_allclose(to_numpy(fused), expected, atol=1e-5)
    if keras.backend.backend() == "torch":
        q, k, v = (keras.ops.convert_to_tensor(a) for a in (q, k, v))
        torch_mask = None if keras_mask is None else keras.ops.convert_to_tensor(keras_mask)
        out = torch_fused_attention(q, k, v, torch_mask)
        np.testing.assert_allclose(to_numpy(out), expected, atol=1e-5)


def test_linear_mixed_bfloat16_computes_in_bfloat16():
    layer = Linear(6, dtype="mixed_bfloat16")
    x = np.random.default_rng(7).standard_normal((3, 10)).astype(np.float32)
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    kernel, bias = (to_numpy(w) for w in layer.weights)
    assert kernel.dtype == np.float32  # variables stay float32
    np.testing.assert_allclose(to_numpy(keras.ops.cast(out, "float32")), x @ kernel + bias, atol=0.05)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch's CPU matmul kernels")
@pytest.mark.parametrize("activation", [None, "gelu_tanh"])
def test_torch_cpu_gemm_kernels_match_numpy_and_keep_gradients(monkeypatch, activation):
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    from keras_siglip.backend import affine, available_torch_cpu_gemms

    def gelu(y):
        return 0.5 * y * (1 + np.tanh(np.sqrt(2 / np.pi) * (y + 0.044715 * y**3)))

    rng = np.random.default_rng(11)
    x, kernel = rng.standard_normal((70, 96)), rng.standard_normal((96, 40)) / 10
    bias, upstream = rng.standard_normal(40), rng.standard_normal((70, 40))
    pre = x @ kernel + bias  # float64
    expected = pre if activation is None else gelu(pre)
    slope = 1.0 if activation is None else (gelu(pre + 1e-6) - gelu(pre - 1e-6)) / 2e-6

    def fn(x, w, b):
        return affine(x, w, b, activation)

    for gemm in available_torch_cpu_gemms():
        monkeypatch.setenv("KERAS_SIGLIP_TORCH_CPU_GEMM", gemm)
        tx, tk, tb = (torch.tensor(a, dtype=torch.float32) for a in (x, kernel, bias))
        with torch.no_grad():
            np.testing.assert_allclose(fn(tx, tk, tb).numpy(), expected, atol=1e-5)
            graph = make_fx(fn)(tx, tk, tb)
            # bfloat16 operands (rounded inputs, float32 accumulation): within bfloat16 rounding.
            low = fn(*(t.to(torch.bfloat16) for t in (tx, tk, tb))).float().numpy()
            np.testing.assert_allclose(low, expected, atol=0.05)
        ops_run = {str(node.target) for node in graph.graph.nodes if node.op == "call_function"}
        assert ("mkldnn._linear_pointwise.default" in ops_run) == (gemm == "onednn"), ops_run
        # With autograd on, the GEMM is one with a backward (oneDNN's linear has none): the
        # gradients are x^T g', g'^T 1 and g' W^T with g' = g * activation'(x W + b).
        tx, tk, tb = (t.requires_grad_() for t in (tx, tk, tb))
        out = fn(tx, tk, tb)
        np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-5)
        out.backward(torch.tensor(upstream, dtype=torch.float32))
        g = upstream * slope
        np.testing.assert_allclose(tk.grad.numpy(), x.T @ g, atol=1e-3)
        np.testing.assert_allclose(tb.grad.numpy(), g.sum(0), atol=1e-3)
        np.testing.assert_allclose(tx.grad.numpy(), g @ kernel.T, atol=1e-4)


