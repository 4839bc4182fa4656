"""The compiled inference path of each backend, and what `predict`/`fit` compile with.

JAX: `jax.jit` over `layer.stateless_call`. TensorFlow: `tf.function` compiled with XLA. torch:
the same stateless function recorded once per input signature with `make_fx` and replayed under
`torch.inference_mode()`.
"""

import contextlib

import keras
import numpy as np

from keras_siglip.backend import jax_ops, tf_ops, torch_ops


def is_concrete(x):
    """True when `x` holds values now (not a symbolic or traced tensor)."""
    if isinstance(x, (np.ndarray, list, tuple, int, float)):
        return True
    if isinstance(x, keras.KerasTensor):
        return False
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly() and not isinstance(x, tf.Variable)
    if backend == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def auto_jit_compile():
    """What `jit_compile="auto"` should mean for SigLIP models: True, or None for Keras' choice.

    Keras' "auto" turns XLA off for TensorFlow on CPU-only machines; for these transformer towers
    XLA is the faster TensorFlow path on the CPU too (benchmarks/README.md), so `predict` and
    `fit` use it unless a `tf.distribute` strategy is active or op determinism is on (XLA does
    not support every op deterministically).
    """
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf
    # TensorFlow exports only the setter of op determinism; this is its getter.
    from tensorflow.python.framework.config import is_op_determinism_enabled

    if tf.distribute.has_strategy() or is_op_determinism_enabled():
        return None
    return True


def predict_jit_compile(model):
    """`jit_compile` for `model.predict` on TensorFlow's CPU: XLA or the graph executor, as the
    timing of `tf_ops.tf_cpu_compiler` decides for the model's typical GEMM in its compute dtype
    (on the host of benchmarks/README.md: XLA in bfloat16, 1.2x-1.6x faster there; in float32 a
    near tie, decided by a few percent either way), the same choice `compiled_call` makes for
    `encode_*`. None elsewhere, or where `auto_jit_compile` leaves the choice to Keras."""
    if keras.backend.backend() != "tensorflow" or auto_jit_compile() is None:
        return None
    _, k, n, dtype = typical_gemm(model, [])
    return tf_ops.tf_cpu_compiler(2048, k, n, dtype) == "xla"  # rows of a batch of 8


def no_grad():
    """A context without autograd recording (torch records graphs for eager calls)."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def inference_context(training, inputs):
    """The context of a model call: on torch, no autograd recording outside training.

    A call with `training` not True, with autograd on and no input that requires a gradient,
    runs under `torch.no_grad()`, so its outputs are plain tensors (`np.asarray` works, as on JAX
    and TensorFlow). Training steps (`fit`, a custom loop's `model(x, training=True)`) and
    calls on inputs that require a gradient (`backend.value_and_grads`) keep the graph.
    """
    if training or keras.backend.backend() != "torch":
        return contextlib.nullcontext()
    import torch

    if not torch.is_grad_enabled() or any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in keras.tree.flatten(inputs)
    ):
        return contextlib.nullcontext()
    return torch.no_grad()


def predicts_through_graphs(model):
    """True where `model.predict` should run `compiled_call` instead of Keras' predict step.

    On torch Keras runs `predict` eagerly (or with `torch.compile` under `jit_compile=True`); the
    recorded graph of `compiled_call` runs the same kernels without the per-layer Python work.
    """
    return keras.backend.backend() == "torch" and not model.jit_compile


def compiled_call(layer, inputs):
    """`layer(inputs)` through a cached compiled function of the backend.

    JAX: `jax.jit` over `layer.stateless_call`, with XLA's CPU dot library chosen by timing
    (`jax_ops.jax_cpu_dot`). torch: the same function recorded once per input signature with
    `make_fx` (an FX graph of the ATen calls eager mode makes, run without Keras' per-layer
    Python work) under `torch.inference_mode()`, returning ordinary tensors. In both the weights
    are arguments, so later weight updates are seen. TensorFlow: `tf.function`, compiled with
    XLA or run by TensorFlow's graph executor as timing decides (`tf_ops.tf_cpu_compiler`).
    Inputs are validated by the layer at trace time.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_compiled_call(layer, inputs)
    if backend not in ("jax", "tensorflow"):
        return layer(inputs)
    cache = layer.__dict__.setdefault("_keras_siglip_compiled", {})
    shape = typical_gemm(layer, inputs)
    if backend == "jax":
        dot = jax_ops.jax_cpu_dot(*shape)
        fn = cache.get((backend, dot))
        if fn is None:
            import jax

            fn = cache[backend, dot] = jax.jit(
                _stateless_forward(layer), compiler_options=jax_ops.compiler_options(dot)
            )
        return fn(*_weight_values(layer), inputs)
    compiler = tf_ops.tf_cpu_compiler(*shape)
    fn = cache.get((backend, compiler))
    if fn is None:
        import tensorflow as tf

        fn = cache[backend, compiler] = tf.function(
            layer.__call__, jit_compile=compiler == "xla", reduce_retracing=True
        )
    return fn(inputs)


def typical_gemm(layer, inputs):
    """`(m, k, n, dtype)`: the shape of the GEMMs that dominate a forward pass of `layer`.

    `(k, n)` is the largest 2-D dense kernel (a block's MLP in a tower), `m` about the rows it
    multiplies (256 tokens per example, at most 4096: kernel choices do not turn on the exact
    count), `dtype` the layer's compute dtype. Kernel choices are timed on this shape.
    """
    kernels = [v.shape for v in layer.weights if v.path.endswith("kernel") and len(v.shape) == 2]
    k, n = max(kernels, key=lambda s: s[0] * s[1]) if kernels else (256, 256)
    leaves = keras.tree.flatten(inputs)
    batch = int(leaves[0].shape[0]) if leaves and leaves[0].shape else 1
    return min(max(batch, 1) * 256, 4096), int(k), int(n), layer.compute_dtype


def _stateless_forward(layer):
    """`(trainable, non_trainable, inputs) -> outputs`: `layer` with its weights as arguments."""

    def forward(trainable, non_trainable, inputs):
        return layer.stateless_call(trainable, non_trainable, inputs)[0]

    return forward


def _weight_values(layer):
    """The current `(trainable, non_trainable)` weight values, as `_stateless_forward` takes them.
    """
    return (
        [v.value for v in layer.trainable_variables],
        [v.value for v in layer.non_trainable_variables],
    )


def _signature(tree_of_tensors):
    leaves = keras.tree.flatten(tree_of_tensors)
    return (
        keras.tree.map_structure(lambda _: None, tree_of_tensors).__repr__(),
        tuple((tuple(x.shape), str(x.dtype), str(x.device)) for x in leaves),
    )


def _torch_compiled_call(layer, inputs):
    """torch's compiled inference path: one `make_fx` graph per input and weight signature.

    Eager Keras on torch leaves gaps between its ATen calls (layer `__call__` bookkeeping and op
    conversions, several times the kernel time of a batch-1 B/16 forward in `torch.profiler`;
    see benchmarks/README.md), long enough for the OpenMP workers to fall asleep between matmuls.
    `make_fx` records the ATen calls of one eager run of `stateless_call` on real tensors, and
    the graph replays exactly those kernels: the numbers are bit-identical to eager inference (under `no_grad`; with autograd on, the matmuls
    may run another kernel, see `torch_ops.torch_cpu_gemm`). Shapes are fixed per graph;
    nothing in the towers branches on tensor values.
    """
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    inputs = keras.tree.map_structure(
        lambda x: x if isinstance(x, torch.Tensor) else keras.ops.convert_to_tensor(x), inputs
    )
    trainable, non_trainable = _weight_values(layer)
    cache = layer.__dict__.setdefault("_keras_siglip_torch_graphs", {})
    # The matmul kernel (`torch_cpu_gemm`) is part of what a graph records.
    key = (_signature((inputs, trainable, non_trainable)), torch_ops.torch_cpu_gemm())
    graph = cache.get(key)
    if graph is None:
        with torch.no_grad():
            forward = make_fx(_stateless_forward(layer))
            graph = cache[key] = forward(trainable, non_trainable, inputs)
    # inference_mode skips the view and version-counter bookkeeping that no_grad still does for
    # the ~300 views of a B/16 graph (2% of a batch-1 forward, benchmarks/README.md); same kernels,
    # same numbers.
    with torch.inference_mode():
        outputs = graph(trainable, non_trainable, inputs)
    # Inference tensors cannot be saved for a later backward pass (a probe trained on the
    # embeddings would fail): return ordinary tensors. The outputs are small (pooled embeddings,
    # logits), so the copy is cheap.
    return keras.tree.map_structure(torch.clone, outputs)
