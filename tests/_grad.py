"""Backend-native gradients for tests: `value_and_grad(fn, *args)` -> (value, [grads]) in NumPy."""

import keras
import numpy as np


def value_and_grad(fn, *args):
    """Evaluate `fn(*args)` (a scalar) and its gradient w.r.t. every arg, with the backend's autodiff."""
    backend = keras.backend.backend()
    args = [np.asarray(a, np.float32) for a in args]
    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
        return float(value), [np.asarray(g) for g in grads]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
        grads = tape.gradient(value, tensors)
        return float(value), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        value = fn(*tensors)
        grads = torch.autograd.grad(value, tensors)
        return float(value.detach()), [g.detach().cpu().numpy() for g in grads]
    raise NotImplementedError(backend)


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))
