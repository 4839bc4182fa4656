"""JAX kernels: reduced-precision dots that accumulate in float32, and XLA's CPU dot library.

Imported on every backend; jax itself is imported only when a function runs.

XLA's CPU compiler turns a dot of bfloat16 operands with a bfloat16 result into a float32 dot
between conversions (slower than float32 itself), while the same dot asked for a float32 result
(`preferred_element_type`) goes to YNNPACK, whose bfloat16 kernels use AVX512-BF16 or AMX where
the CPU has them: 3x faster on a Sapphire Rapids host (benchmarks/README.md). Accumulating in
float32 is also what the other frameworks do for bfloat16 GEMMs.

Which library XLA hands float32 dots to is a timed choice (`jax_cpu_dot`): YNNPACK (XLA's
default), XLA's Eigen contraction, or XNNPACK differ by up to 10% with the shape and the CPU.
"""

from keras_siglip.backend import autotune

REDUCED = ("bfloat16", "float16")
JAX_CPU_DOTS = ("default", "eigen", "xnnpack")  # XLA's own choice first
DOT_ENV = "KERAS_SIGLIP_JAX_CPU_DOT"
# XLA CPU debug options of each dot library, passed to `jax.jit(..., compiler_options=...)`.
_NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}
_OPTIONS = {
    "default": None,
    "eigen": _NO_YNN,
    "xnnpack": {**_NO_YNN, "xla_cpu_experimental_xnn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"},
}


def jax_affine(x, kernel, bias, activation=None):
    """`activation(x @ kernel + bias)` for 2-D `x`, `kernel`; reduced dtypes accumulate in float32.

    For bfloat16/float16 operands the bias and the activation (None or "gelu_tanh") apply to
    the float32 product, and the result is rounded once to the input dtype: one fused pass
    instead of a chain of reduced-precision elementwise ops, each rounding again.
    """
    import jax
    import jax.numpy as jnp

    x, kernel, bias = (jnp.asarray(t) for t in (x, kernel, bias))  # Keras variables too
    reduced = jnp.dtype(x.dtype).name in REDUCED
    if reduced:
        y = jax.lax.dot_general(
            x, kernel, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32
        ) + bias.astype(jnp.float32)
    else:
        y = jnp.matmul(x, kernel) + bias
    if activation == "gelu_tanh":
        y = jax.nn.gelu(y, approximate=True)
    return y.astype(x.dtype) if reduced else y


def jax_cpu_dot(m, k, n, dtype):
    """XLA's dot library for a program whose typical dot is `(m, k) @ (k, n)` in `dtype`.

    One of `JAX_CPU_DOTS`. `$KERAS_SIGLIP_JAX_CPU_DOT` forces one; otherwise each compiles and
    runs `jax_affine` on this shape once (`autotune.choose`) and the fastest is kept. Off the
    CPU always "default" (the options are XLA CPU's). A library that this jaxlib does not
    know fails to compile and is left out of the choice.
    """
    forced = autotune.override(DOT_ENV, JAX_CPU_DOTS)
    if forced is not None:
        return forced
    import jax

    if jax.default_backend() != "cpu":
        return "default"
    key = (int(m), int(k), int(n), str(dtype))
    return autotune.choose("jax_cpu_dot", key, _dot_candidates(*key))


def compiler_options(dot):
    """The `jax.jit` compiler options of a dot library of `JAX_CPU_DOTS` (None: XLA's default)."""
    return _OPTIONS[dot]


def _dot_candidates(m, k, n, dtype):
    def candidate(name):
        def make():
            import jax
            import numpy as np

            rng = np.random.default_rng(0)
            x, w, b = (jax.numpy.asarray(rng.standard_normal(s), dtype)
                       for s in ((m, k), (k, n), (n,)))  # fmt: skip
            fn = jax.jit(jax_affine, compiler_options=_OPTIONS[name])
            return lambda: fn(x, w, b).block_until_ready()

        return make

    return {name: candidate(name) for name in JAX_CPU_DOTS}
