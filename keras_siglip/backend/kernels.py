"""The kernel behind each hot operation of the layers, chosen per backend.

Each function computes the same math on every backend; only the kernel differs. The choices
were measured on the CPU (benchmarks/README.md): XLA has no fused CPU attention and runs
heads-major batched dots about twice as fast as the `(B, T, H, hd)` einsums of
`ops.dot_product_attention`; torch has a fused attention kernel; XLA's (JAX) and oneDNN's
(torch) CPU convolutions are slower than their GEMMs for a stride-p, p x p patch kernel, while
TensorFlow's XLA convolution is not.
"""

import math

import keras
from keras import ops

from keras_siglip.backend import jax_ops, tf_ops, torch_ops

_PATCH_MATMUL_BACKENDS = ("jax", "torch")


ACTIVATIONS = (None, "gelu_tanh")


def affine(x, kernel, bias, activation=None):
    """`activation(x @ kernel + bias)` for a 2-D `x` and `kernel`.

    `activation` is None or `"gelu_tanh"` (the tanh-approximated GELU of SigLIP's MLPs), applied
    to the float32 sum before it is rounded to a reduced compute dtype, inside the GEMM's
    epilogue where the kernel has one.

    On torch one GEMM with the bias inside it (`torch.addmm`, or oneDNN's linear for
    inference where that is faster, see `torch_cpu_gemm`). On JAX a dot that accumulates
    bfloat16/float16 operands in float32 (`jax_ops.jax_affine`); on TensorFlow a matmul and an
    add, which XLA fuses.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
    backend = keras.backend.backend()
    if backend == "torch":
        return torch_ops.torch_affine(x, kernel, bias, activation)
    if backend == "jax":
        return jax_ops.jax_affine(x, kernel, bias, activation)
    if backend == "tensorflow":
        return tf_ops.tf_affine(x, kernel, bias, activation)
    y = ops.add(ops.matmul(x, kernel), bias)
    return y if activation is None else ops.gelu(y, approximate=True)


def heads_major_attention(q, k, v, mask=None):
    """`softmax(q k^T / sqrt(hd)) v` for `(B, T, H, hd)` inputs, as heads-major batched matmuls.

    Args:
        q: `(B, T, H, hd)`; k, v: `(B, S, H, hd)`.
        mask: bool, broadcastable to `(B, H, T, S)`, or None. False keys get
            zero weight.

    Returns:
        `(B, T, H, hd)`.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    q = ops.transpose(q, (0, 2, 1, 3)) * ops.cast(scale, q.dtype)  # (B, H, T, hd)
    k = ops.transpose(k, (0, 2, 3, 1))  # (B, H, hd, S)
    v = ops.transpose(v, (0, 2, 1, 3))  # (B, H, S, hd)
    logits = ops.matmul(q, k)
    if mask is not None:
        logits = ops.where(mask, logits, ops.cast(-1e30, logits.dtype))
    # softmax(l) v = (exp(l - max) v) / sum(exp(l - max)): dividing the (T, hd) product instead
    # of the (T, S) weights saves a pass over the largest tensor. The max only stabilises exp:
    # no gradient through it.
    e = ops.exp(logits - ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True)))
    x = ops.matmul(e, v) / ops.sum(e, axis=-1, keepdims=True)
    return ops.transpose(x, (0, 2, 1, 3))


def dot_product_attention(q, k, v, mask=None):
    """Scaled dot-product attention of `(B, T, H, hd)` queries over `(B, S, H, hd)` keys/values.

    `q`, `k`, `v` and the result `(B, T, H, hd)` are in the compute dtype; `mask` is bool,
    broadcastable to `(B, H, T, S)`, and False keys get zero weight. The logits and the
    softmax are float32 on every backend: torch runs its fused kernel
    (`scaled_dot_product_attention`) in the compute dtype, as transformers does (for bfloat16
    it accumulates and normalises in float32); JAX and TensorFlow run `heads_major_attention`
    on operands cast to float32 (measured as fast as bfloat16 operands on JAX).
    """
    if keras.backend.backend() == "torch":
        return torch_ops.torch_fused_attention(q, k, v, mask)
    dtype = keras.backend.standardize_dtype(q.dtype)
    if dtype == "float32":
        return heads_major_attention(q, k, v, mask)
    q, k, v = (ops.cast(t, "float32") for t in (q, k, v))
    return ops.cast(heads_major_attention(q, k, v, mask), dtype)


def patches_as_matmul():
    """True where the patch convolution runs faster as one matmul of flattened patches."""
    return keras.backend.backend() in _PATCH_MATMUL_BACKENDS
