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
