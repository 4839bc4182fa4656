"""Gradients of a scalar function with the running backend's own autodiff."""

import keras
import numpy as np


def value_and_grads(fn, *args):
    """`fn(*args)` (a scalar) and its gradients w.r.t. every argument, as float32 NumPy.

    `jax.value_and_grad`, a `tf.GradientTape` or `torch.autograd.grad`, whichever backend runs;
    only that framework is imported. Returns `(value, [grad per argument])`.
    """
    backend = keras.backend.backend()
    args = [np.asarray(a, np.float32) for a in args]
    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
        return np.asarray(value), [np.asarray(g) for g in grads]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
        return np.asarray(value), [np.asarray(g) for g in tape.gradient(value, tensors)]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        value = fn(*tensors)
        grads = torch.autograd.grad(value, tensors)
        return value.detach().cpu().numpy(), [g.detach().cpu().numpy() for g in grads]
    raise NotImplementedError(f"No gradients for the {backend!r} backend.")
