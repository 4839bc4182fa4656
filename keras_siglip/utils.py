"""Small helpers shared by the towers: input checks that need concrete values."""

import keras
import numpy as np


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


def static_shape(x):
    """The shape of `x` as a tuple of ints or None."""
    return tuple(getattr(x, "shape", np.shape(x)))


def check_rank_and_last_dim(name, x, rank, last_dim, expected):
    """Raise a ValueError naming `name` unless `x` has `rank` dims ending in `last_dim`."""
    shape = static_shape(x)
    if len(shape) != rank or (last_dim is not None and shape[-1] not in (None, last_dim)):
        raise ValueError(f"`{name}` must have shape {expected}; received shape {shape}.")
    return shape


def compiled_call(layer, inputs):
    """`layer(inputs)` through a cached compiled function of the backend.

    JAX: `jax.jit` over `layer.stateless_call`. torch: the same function recorded once per input
    signature with `make_fx` (an FX graph of the ATen calls eager mode makes, run without Keras'
    per-layer Python work) under `torch.inference_mode()`, returning ordinary tensors. In both the
    weights are arguments, so later weight updates are seen. TensorFlow: `tf.function` compiled
    with XLA. Inputs are validated by the layer at trace time.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        return _torch_compiled_call(layer, inputs)
    if backend not in ("jax", "tensorflow"):
        return layer(inputs)
    cache = layer.__dict__.setdefault("_keras_siglip_compiled", {})
    fn = cache.get(backend)
    if backend == "jax":
        if fn is None:
            import jax

            fn = cache[backend] = jax.jit(_stateless_forward(layer))
        return fn(*_weight_values(layer), inputs)
    if fn is None:
        import tensorflow as tf

        # XLA: fused elementwise work and the same dot kernels as JAX; measured faster than
        # plain graph mode on the CPU (benchmarks/README.md).
        fn = cache[backend] = tf.function(layer.__call__, jit_compile=True, reduce_retracing=True)
    return fn(inputs)


def _stateless_forward(layer):
    """`(trainable, non_trainable, inputs) -> outputs`: `layer` with its weights as arguments."""

    def forward(trainable, non_trainable, inputs):
        return layer.stateless_call(trainable, non_trainable, inputs)[0]

    return forward


def _weight_values(layer):
    """The current `(trainable, non_trainable)` weight values, as `_stateless_forward` takes them."""
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

    Eager Keras on torch leaves gaps between its ATen calls (layer `__call__` bookkeeping, op
    conversions: ~100 ms per B/16 forward at batch 1 against ~20 ms for transformers, measured
    with `torch.profiler`), long enough for the OpenMP workers to fall asleep between matmuls.
    `make_fx` records the ATen calls of one eager run of `stateless_call` (on real tensors, so
    every value check runs as in eager mode) and the graph replays exactly those kernels: the
    numbers are bit-identical to eager inference (under `no_grad`; with autograd on, the matmuls
    may run another kernel, see `layers.linear.torch_cpu_gemm`). Shapes are fixed per graph;
    nothing in the towers branches on tensor values.
    """
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    from keras_siglip.layers.linear import torch_cpu_gemm

    inputs = keras.tree.map_structure(
        lambda x: x if isinstance(x, torch.Tensor) else keras.ops.convert_to_tensor(x), inputs
    )
    trainable, non_trainable = _weight_values(layer)
    cache = layer.__dict__.setdefault("_keras_siglip_torch_graphs", {})
    # The matmul kernel (`layers.linear.torch_cpu_gemm`) is part of what a graph records.
    key = (_signature((inputs, trainable, non_trainable)), torch_cpu_gemm())
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
