"""TensorFlow's compiler for the compiled inference path: XLA or its own oneDNN graph kernels.

Imported on every backend; tensorflow itself is imported only when a function runs.

In float32 XLA and TensorFlow's graph executor run GEMMs of about the same speed and XLA fuses
the elementwise work between them; in bfloat16 XLA's CPU dots are several times slower than
TensorFlow's oneDNN kernels, which reach the AMX units of CPUs that have them
(benchmarks/README.md). Which one wins is decided by timing, not by the dtype or a CPU flag.
"""

from keras_siglip.backend import autotune

TF_CPU_COMPILERS = ("xla", "graph")  # the plain path (what SigLIP's jit_compile="auto" runs) first
COMPILER_ENV = "KERAS_SIGLIP_TF_CPU_COMPILER"


def tf_cpu_compiler(m, k, n, dtype):
    """"xla" or "graph" for a model whose typical MLP is `(m, k) -> (m, n) -> (m, k)` in `dtype`.

    `$KERAS_SIGLIP_TF_CPU_COMPILER` forces one; otherwise one MLP block (LayerNorm, dense,
    tanh-GELU, dense, residual: the fused work XLA gains on, and the GEMMs oneDNN gains on) is
    compiled both ways and timed once on this shape (`autotune.choose`), and the faster is kept.
    Off the CPU always "xla".
    """
    forced = autotune.override(COMPILER_ENV, TF_CPU_COMPILERS)
    if forced is not None:
        return forced
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return "xla"
    key = (int(m), int(k), int(n), str(dtype))
    return autotune.choose("tf_cpu_compiler", key, _candidates(*key))


def _candidates(m, k, n, dtype):
    def candidate(name):
        def make():
            import numpy as np
            import tensorflow as tf

            rng = np.random.default_rng(0)
            x, w1, w2 = (tf.constant(rng.standard_normal(s) / np.sqrt(s[-1]), dtype)
                         for s in ((m, k), (k, n), (n, k)))  # fmt: skip
            b1, b2 = tf.zeros((n,), dtype), tf.zeros((k,), dtype)

            def block(x):
                mean, variance = tf.nn.moments(tf.cast(x, "float32"), axes=[-1], keepdims=True)
                h = tf.cast((tf.cast(x, "float32") - mean) * tf.math.rsqrt(variance + 1e-6), dtype)
                h = tf.nn.gelu(tf.matmul(h, w1) + b1, approximate=True)
                return x + tf.matmul(h, w2) + b2

            fn = tf.function(block, jit_compile=name == "xla")
            return lambda: fn(x).numpy()

        return make

    return {name: candidate(name) for name in TF_CPU_COMPILERS}


def tf_affine(x, kernel, bias, activation=None):
    """`activation(x @ kernel + bias)` as MatMul, BiasAdd and GELU: the pattern TensorFlow's graph
    optimizer fuses into one oneDNN `_FusedMatMul` (XLA fuses it either way)."""
    import tensorflow as tf

    y = tf.nn.bias_add(tf.matmul(x, kernel), tf.cast(bias, x.dtype))
    return y if activation is None else tf.nn.gelu(y, approximate=True)
