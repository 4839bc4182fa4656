"""TensorFlow's compiler for the compiled inference path: XLA or its own oneDNN graph kernels.

Imported on every backend; tensorflow itself is imported only when a function runs.

In float32 XLA and TensorFlow's graph executor run GEMMs of about the same speed and XLA fuses
the elementwise work between them. In bfloat16 XLA's CPU dots are fast only when asked for a
float32 result (`tf_affine` does so when traced for XLA); the graph executor runs oneDNN's
bfloat16 GEMMs, which reach the AMX units of CPUs that have them, but leaves the ops between
them unfused (benchmarks/README.md). Which one wins is decided by timing, not by the dtype or
a CPU flag.
"""

from keras_siglip.backend import autotune

TF_CPU_COMPILERS = ("xla", "graph")  # the plain path (what SigLIP's jit_compile="auto" runs) first
COMPILER_ENV = "KERAS_SIGLIP_TF_CPU_COMPILER"


def tf_cpu_compiler(m, k, n, dtype):
    """"xla" or "graph" for a model whose typical MLP is `(m, k) -> (m, n) -> (m, k)` in `dtype`.

    `$KERAS_SIGLIP_TF_CPU_COMPILER` forces one; otherwise one transformer block of the library
    (`layers.EncoderBlock`: LayerNorms, attention, the MLP; the fused work XLA gains on and the
    GEMMs oneDNN gains on) of that width, on `m` tokens, is compiled both ways and timed once
    on this shape (`autotune.choose`), and the faster is kept. Timing the MLP alone picked the
    graph executor in float32 on a host where the whole tower ran 10% slower with it at batch 1.
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
    """`autotune.choose` candidates; the block is built only when a timing runs (the choice is
    looked up on every call of a compiled model, and answered from the cache after the first)."""
    built = {}

    def block_and_inputs():
        if not built:
            import numpy as np

            from keras_siglip.layers.encoder_block import EncoderBlock

            tokens = min(m, 256)
            heads = k // 64 if k >= 64 and k % 64 == 0 else 1
            block = EncoderBlock(heads, n, dtype=dtype, name="timing_block")
            x = np.random.default_rng(0).standard_normal((max(m // tokens, 1), tokens, k))
            block.build(x.shape)
            built["block"], built["x"] = block, x
        return built["block"], built["x"]

    def candidate(name):
        def make():
            import tensorflow as tf

            block, x = block_and_inputs()
            inputs = tf.constant(x, block.compute_dtype)
            fn = tf.function(block.__call__, jit_compile=name == "xla")
            return lambda: fn(inputs).numpy()

        return make

    return {name: candidate(name) for name in TF_CPU_COMPILERS}


def tf_affine(x, kernel, bias, activation=None):
    """`activation(x @ kernel + bias)` for 2-D `x` and `kernel`.

    Traced for XLA (`jit_compile=True`) with bfloat16/float16 operands: one `BatchMatMulV3` with a
    float32 result (XLA's dot with a float32 `preferred_element_type`, which its CPU compiler
    hands to YNNPACK's AVX512-BF16/AMX kernels instead of a float32 dot between conversions:
    3.5x on the MLP shape), the bias and the activation applied to the float32 sum, rounded once
    to the input dtype, as `jax_ops.jax_affine` does. Otherwise MatMul, BiasAdd and GELU: the
    pattern TensorFlow's graph optimizer fuses into one oneDNN `_FusedMatMul` (XLA fuses it
    either way); the graph executor has no kernel for a float32 result of bfloat16 operands.
    """
    import tensorflow as tf

    if x.dtype in (tf.bfloat16, tf.float16) and in_xla_trace():
        y = tf.raw_ops.BatchMatMulV3(x=x, y=tf.cast(kernel, x.dtype), Tout=tf.float32)
        y = tf.nn.bias_add(y, tf.cast(bias, tf.float32))
        if activation is not None:
            y = tf.nn.gelu(y, approximate=True)
        return tf.cast(y, x.dtype)
    y = tf.nn.bias_add(tf.matmul(x, kernel), tf.cast(bias, x.dtype))
    return y if activation is None else tf.nn.gelu(y, approximate=True)


def in_xla_trace():
    """True while a function compiled with XLA (`tf.function(jit_compile=True)`) is traced."""
    import tensorflow as tf
    # TensorFlow exports no public test for the XLA context a function is traced in; this is the
    # one its own control-flow code uses.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext

    graph = tf.compat.v1.get_default_graph()
    return not tf.executing_eagerly() and GraphOrParentsInXlaContext(graph)
