"""The affine map behind every projection: `x @ kernel + bias` with flax's multi-axis kernels."""

import math

import keras
from keras import ops

from keras_siglip.backend import affine
from keras_siglip.backend.kernels import ACTIVATIONS


@keras.saving.register_keras_serializable(package="keras_siglip")
class Linear(keras.layers.Layer):
    """`x @ kernel + bias`, contracting the last `input_axes` axes of `x`.

    The kernel is `(*input_dims, *output_shape)` and the bias `output_shape`:
    flax's layouts, e.g. `(W, H, hd)` for an attention query projection
    (`output_shape=(H, hd)`) and `(H, hd, W)` for its output projection
    (`input_axes=2`). It runs as one 2-D matmul on the flattened axes
    (`keras_siglip.backend.affine`: on torch the bias is added inside the
    GEMM instead of in a second pass over the output).

    Args:
        output_shape: int or tuple of ints. The output axes that replace the
            contracted ones.
        input_axes: int. How many trailing input axes are contracted.
        kernel_initializer: initializer of the kernel (Glorot uniform, as
            Keras' `Dense` and `EinsumDense`).
        activation: None or `"gelu_tanh"`: the tanh-approximated GELU applied
            to the affine map, fused into the GEMM where the backend can
            (and, in a reduced compute dtype, before rounding to it).

    Example:
    >>> proj = Linear((4, 8))
    >>> proj(np.zeros((2, 5, 32))).shape
    (2, 5, 4, 8)
    """

    def __init__(
        self,
        output_shape,
        input_axes=1,
        kernel_initializer="glorot_uniform",
        activation=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}; received {activation!r}.")
        self.activation = activation
        if isinstance(output_shape, int):
            output_shape = (output_shape,)
        self.units_shape = tuple(int(d) for d in output_shape)
        self.input_axes = int(input_axes)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel = self.bias = None

    def build(self, input_shape):
        input_dims = tuple(input_shape[-self.input_axes:])
        if any(d is None for d in input_dims):
            raise ValueError(
                f"'{self.name}' needs the last {self.input_axes} input axes to be known; "
                f"received input shape {tuple(input_shape)}."
            )
        self.kernel = self.add_weight(
            name="kernel", shape=input_dims + self.units_shape, initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=self.units_shape, initializer="zeros")

    def call(self, x):
        in_size = math.prod(self.kernel.shape[: self.input_axes])
        out_size = math.prod(self.units_shape)
        leading = ops.shape(x)[: -self.input_axes]
        x = ops.reshape(x, (-1, in_size))
        kernel = ops.reshape(self.kernel, (in_size, out_size))
        bias = ops.reshape(self.bias, (out_size,))
        y = affine(x, kernel, bias, self.activation)
        return ops.reshape(y, (*leading, *self.units_shape))

    def compute_output_shape(self, input_shape):
        return (*input_shape[: -self.input_axes], *self.units_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_shape": self.units_shape,
                "input_axes": self.input_axes,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "activation": self.activation,
            }
        )
        return config
