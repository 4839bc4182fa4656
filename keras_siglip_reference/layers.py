"""The transformer pieces shared by all towers, for ONE example at a time.

Every function takes a single sequence `(T, W)`; the towers loop over the batch. Attention loops
over heads and the softmax and LayerNorm are written out, so that each line can be checked against
docs/architecture.md by eye.
"""

import math

import numpy as np

from ._params import f64

LN_EPS = 1e-6  # every LayerNorm in SigLIP (blocks, final, MAP head); the Keras default 1e-3 is wrong here

# Logit used for masked attention entries. exp(MASKED - max) underflows to exactly 0, so a masked
# key contributes nothing, whatever its value (transformers adds finfo.min, big_vision writes it).
MASKED = np.finfo(np.float64).min

MASKING_MODES = ("transformers", "big_vision")


def stack_examples(per_example):
    """List of per-example dicts -> dict of arrays with a leading batch axis."""
    return {k: np.stack([d[k] for d in per_example]) for k in per_example[0]}


def layer_norm(x, p):
    """LayerNorm over the last axis with biased variance and eps 1e-6. `p` has `scale` and `bias`."""
    x = f64(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased, as in flax and torch
    return (x - mean) / np.sqrt(var + LN_EPS) * p.get("scale") + p.get("bias")


def gelu_tanh(x):
    """GELU with the tanh approximation (jax default, transformers `gelu_pytorch_tanh`)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def dense(x, p):
    """`x @ kernel + bias`, kernel `(in, out)` as in flax."""
    return f64(x) @ p.get("kernel") + p.get("bias")


def softmax_rows(logits):
    """Softmax over the last axis of a 2-D array, one row at a time, max-subtracted."""
    out = np.empty_like(logits)
    for r in range(logits.shape[0]):
        row = logits[r]
        e = np.exp(row - row.max())
        out[r] = e / e.sum()
    return out


def attention(p, x_q, x_kv, *, key_valid=None, query_valid=None, masking="transformers"):
    """Multi-head dot-product attention for one example.

    Args:
        p: `Params` with `query`, `key`, `value` (`kernel (W,H,hd)`, `bias (H,hd)`) and
            `out` (`kernel (H,hd,W)`, `bias (W,)`).
        x_q: `(Tq, W)` queries; x_kv: `(Tk, W)` keys and values.
        key_valid: optional `(Tk,)` bool; False keys get zero attention weight.
        query_valid: `(Tq,)` bool, used only by `masking="big_vision"`.
        masking: "transformers" masks keys only (padded query rows attend to the valid keys);
            "big_vision" masks (query, key) pairs `valid_q & valid_k`, so padded query rows
            attend uniformly to everything. Valid query rows are the same in both (docs/naflex.md).

    Returns:
        `(Tq, W)`.
    """
    if masking not in MASKING_MODES:
        raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
    wq, wk, wv = p.get("query/kernel"), p.get("key/kernel"), p.get("value/kernel")
    bq, bk, bv = p.get("query/bias"), p.get("key/bias"), p.get("value/bias")
    wo, bo = p.get("out/kernel"), p.get("out/bias")
    num_heads, head_dim = wq.shape[1], wq.shape[2]
    x_q, x_kv = f64(x_q), f64(x_kv)

    out = np.zeros((x_q.shape[0], wo.shape[-1]))
    for h in range(num_heads):
        q = x_q @ wq[:, h, :] + bq[h]  # (Tq, hd)
        k = x_kv @ wk[:, h, :] + bk[h]  # (Tk, hd)
        v = x_kv @ wv[:, h, :] + bv[h]  # (Tk, hd)
        logits = (q @ k.T) / math.sqrt(head_dim)  # (Tq, Tk)
        if key_valid is not None:
            key_valid = np.asarray(key_valid, dtype=bool)
            if masking == "transformers":
                logits = logits + np.where(key_valid, 0.0, MASKED)[None, :]
            else:
                if query_valid is None:
                    raise ValueError("masking='big_vision' needs query_valid")
                pair = np.asarray(query_valid, dtype=bool)[:, None] & key_valid[None, :]
                logits = np.where(pair, logits, MASKED)
        weights = softmax_rows(logits)
        # Output projection per head == concat over heads (index h*hd + d) then one matmul.
        out += (weights @ v) @ wo[h]
    return out + bo


def mlp(x, p):
    """`Dense_0 -> tanh GELU -> Dense_1` (big_vision `MlpBlock_0`)."""
    return dense(gelu_tanh(dense(x, p.sub("Dense_0"))), p.sub("Dense_1"))


def encoder_block(x, p, *, valid=None, masking="transformers"):
    """One pre-LN block for one example. Returns `(x_out, {"sa", "+sa", "mlp", "+mlp"})`."""
    out = {}
    y = layer_norm(x, p.sub("LayerNorm_0"))
    y = out["sa"] = attention(
        p.sub("MultiHeadDotProductAttention_0"), y, y, key_valid=valid, query_valid=valid, masking=masking
    )
    x = out["+sa"] = x + y
    y = out["mlp"] = mlp(layer_norm(x, p.sub("LayerNorm_1")), p.sub("MlpBlock_0"))
    x = out["+mlp"] = x + y
    return x, out


def encoder(x, params, prefix, *, valid=None, masking="transformers"):
    """All blocks under `prefix` then `prefix/encoder_norm`, for one example.

    Returns `(encoded, intermediates)` with keys `block{i:02d}/{sa,+sa,mlp,+mlp}`.
    """
    out = {}
    for i in range(params.depth(prefix)):
        x, block_out = encoder_block(x, params.block(prefix, i), valid=valid, masking=masking)
        for name, value in block_out.items():
            out[f"block{i:02d}/{name}"] = value
    return layer_norm(x, params.sub(prefix + "/encoder_norm")), out


def map_head(x, p, *, valid=None):
    """Multihead attention pooling for one example: `(N, W) -> (W,)`.

    The probe is the only query; it is always valid, so both masking modes reduce to a key mask.
    There is NO residual around the attention and no LayerNorm before it (docs/architecture.md).
    """
    probe = p.get("probe")[0]  # (1, W)
    o = attention(
        p.sub("MultiHeadDotProductAttention_0"), probe, x, key_valid=valid, query_valid=np.ones(1, bool)
    )
    y = o + mlp(layer_norm(o, p.sub("LayerNorm_0")), p.sub("MlpBlock_0"))
    return y[0]
