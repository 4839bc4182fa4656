"""Backend-native gradients for tests: `value_and_grad(fn, *args)` -> (value, [grads]) in NumPy."""

import keras
import numpy as np

from keras_siglip.backend import value_and_grads


def value_and_grad(fn, *args):
    """Evaluate `fn(*args)` (a scalar) and its gradient w.r.t. every arg, with the backend's autodiff."""
    value, grads = value_and_grads(fn, *args)
    return float(value), grads


def to_numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))
