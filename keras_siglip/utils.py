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

    JAX: `jax.jit` over `layer.stateless_call` (the weights are arguments, so
    later weight updates are seen). TensorFlow: `tf.function` compiled with XLA. torch: eager
    (Keras' torch backend runs eagerly by default) under `torch.no_grad()`:
    this is an inference path. Inputs are validated by the layer at trace time.
    """
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        # An inference path: building an autograd graph would cost time and memory.
        with torch.no_grad():
            return layer(inputs)
    if backend not in ("jax", "tensorflow"):
        return layer(inputs)
    cache = layer.__dict__.setdefault("_keras_siglip_compiled", {})
    fn = cache.get(backend)
    if backend == "jax":
        if fn is None:
            import jax

            def forward(trainable, non_trainable, inputs):
                return layer.stateless_call(trainable, non_trainable, inputs)[0]

            fn = cache[backend] = jax.jit(forward)
        return fn(
            [v.value for v in layer.trainable_variables],
            [v.value for v in layer.non_trainable_variables],
            inputs,
        )
    if fn is None:
        import tensorflow as tf

        # XLA: fused elementwise work and the same dot kernels as JAX; measured faster than
        # plain graph mode on the CPU (benchmarks/README.md).
        fn = cache[backend] = tf.function(layer.__call__, jit_compile=True, reduce_retracing=True)
    return fn(inputs)
