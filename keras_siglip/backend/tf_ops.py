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

    `$KERAS_SIGLIP_TF_CPU_COMPILER` forces one; otherwise one transformer block (`_timing_block`:
    LayerNorms, attention, the MLP; the fused work XLA gains on and the GEMMs oneDNN gains on)
    of that width, on `m` tokens, is compiled both ways and timed once on this shape
    (`autotune.choose`), and the faster is kept. Timing the MLP alone picked the graph executor
    in float32 on a host where the whole tower ran 10% slower with it at batch 1.
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
    """`autotune.choose` candidates; the block's weights are made only when a timing runs (the
    choice is looked up on every call of a compiled model, and answered from the cache after
    the first)."""
    made = {}

    def block_inputs():
        if not made:
            import numpy as np
            import tensorflow as tf

            rng = np.random.default_rng(0)
            tokens = min(m, 256)
            shapes = {"x": (max(m // tokens, 1), tokens, k), "qkv": (k, 3 * k), "out": (k, k),
                      "up": (k, n), "down": (n, k)}  # fmt: skip
            for name, shape in shapes.items():
                made[name] = tf.constant(rng.standard_normal(shape) / np.sqrt(shape[-2]), dtype)
        return made

    def candidate(name):
        def make():
            import tensorflow as tf

            w = block_inputs()
            fn = tf.function(lambda x: _timing_block(x, w), jit_compile=name == "xla")
            return lambda: fn(w["x"]).numpy()

        return make

    return {name: candidate(name) for name in TF_CPU_COMPILERS}


def _timing_block(x, w):
    """A pre-LayerNorm transformer block as the towers compute it (float32 LayerNorms, attention
    logits and softmax in float32, `tf_affine` GEMMs; heads of 64): what the compiler choice is
    timed on. Written here rather than taken from `layers`, which build on this package."""
    import tensorflow as tf

    def norm(x):
        x32 = tf.cast(x, "float32")
        mean, variance = tf.nn.moments(x32, axes=[-1], keepdims=True)
        return tf.cast((x32 - mean) * tf.math.rsqrt(variance + 1e-6), x.dtype)

    def dense(x, kernel, activation=None):
        flat = tf.reshape(x, (-1, x.shape[-1]))
        y = tf_affine(flat, kernel, tf.zeros(kernel.shape[-1:], kernel.dtype), activation)
        return tf.reshape(y, (*x.shape[:-1], kernel.shape[-1]))

    batch, tokens, width = x.shape
    heads = width // 64 if width >= 64 and width % 64 == 0 else 1
    qkv = tf.cast(dense(norm(x), w["qkv"]), "float32")
    qkv = tf.transpose(tf.reshape(qkv, (batch, tokens, 3, heads, width // heads)), (2, 0, 3, 1, 4))
    logits = tf.matmul(qkv[0], qkv[1], transpose_b=True) / (width // heads) ** 0.5
    attended = tf.matmul(tf.nn.softmax(logits), qkv[2])
    attended = tf.reshape(tf.transpose(attended, (0, 2, 1, 3)), (batch, tokens, width))
    x = x + dense(tf.cast(attended, x.dtype), w["out"])
    return x + dense(dense(norm(x), w["up"], "gelu_tanh"), w["down"])


def tf_affine(x, kernel, bias, activation=None):
    """`activation(x @ kernel + bias)` for 2-D `x` and `kernel`.

    Traced for XLA (`jit_compile=True`) with bfloat16/float16 operands: one `BatchMatMulV3` with a
    float32 result (XLA's dot with a float32 `preferred_element_type`, which its CPU compiler
    hands to YNNPACK's AVX512-BF16/AMX kernels instead of a float32 dot between conversions:
    2x-3.5x on the B/16 shapes), the bias and the activation applied to the float32 sum, rounded
    once to the input dtype, as `jax_ops.jax_affine` does; its gradient is two such dots
    (`_reduced_dot`). Otherwise MatMul, BiasAdd and GELU: the pattern TensorFlow's graph
    optimizer fuses into one oneDNN `_FusedMatMul` (XLA fuses it either way); the graph
    executor has no kernel for a float32 result of bfloat16 operands.
    """
    import tensorflow as tf

    if x.dtype in (tf.bfloat16, tf.float16) and in_xla_trace():
        y = _reduced_dot(x, tf.cast(kernel, x.dtype))
        y = tf.nn.bias_add(y, tf.cast(bias, tf.float32))
        if activation is not None:
            y = tf.nn.gelu(y, approximate=True)
        return tf.cast(y, x.dtype)
    y = tf.nn.bias_add(tf.matmul(x, kernel), tf.cast(bias, x.dtype))
    return y if activation is None else tf.nn.gelu(y, approximate=True)


def _reduced_dot(x, kernel):
    """`x @ kernel` of bfloat16/float16 operands as a float32 result, with its own gradient.

    TensorFlow's registered gradient of `BatchMatMulV3` multiplies the float32 output gradient
    by the reduced-precision operands (a dtype error for float16, float32 dots for bfloat16);
    here the output gradient is rounded to the operands' dtype and both products are again
    reduced-precision dots with float32 results, rounded to the operands' dtype, as torch and
    JAX compute the backward pass of a bfloat16 matmul.
    """
    import tensorflow as tf

    def dot(a, b, adj_x=False, adj_y=False):
        return tf.raw_ops.BatchMatMulV3(x=a, y=b, Tout=tf.float32, adj_x=adj_x, adj_y=adj_y)

    @tf.custom_gradient
    def forward(x, kernel):
        def grad(dy):
            dy = tf.cast(dy, x.dtype)
            return (
                tf.cast(dot(dy, kernel, adj_y=True), x.dtype),
                tf.cast(dot(x, dy, adj_x=True), kernel.dtype),
            )

        return dot(x, kernel), grad

    return forward(x, kernel)


def in_xla_trace():
    """True while a function compiled with XLA (`tf.function(jit_compile=True)`) is traced."""
    import tensorflow as tf
    # TensorFlow exports no public test for the XLA context a function is traced in; this is the
    # one its own control-flow code uses.
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext

    graph = tf.compat.v1.get_default_graph()
    return not tf.executing_eagerly() and GraphOrParentsInXlaContext(graph)
