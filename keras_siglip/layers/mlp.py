"""The transformer MLP: Dense -> tanh-approximated GELU -> Dense."""

import keras

from keras_siglip.layers.linear import Linear


@keras.saving.register_keras_serializable(package="keras_siglip")
class MLPBlock(keras.layers.Layer):
    """Two dense layers with a tanh-approximated GELU between them.

    SigLIP uses the tanh approximation (jax `gelu`, transformers
    `gelu_pytorch_tanh`); the exact erf GELU gives different numbers.

    Args:
        mlp_dim: int. Width of the hidden layer.
        output_dim: int or None. Output width; `None` keeps the input width.

    Example:
    >>> mlp = MLPBlock(mlp_dim=37)
    >>> mlp(np.zeros((2, 5, 32))).shape
    (2, 5, 32)
    """

    def __init__(self, mlp_dim, output_dim=None, **kwargs):
        super().__init__(**kwargs)
        self.mlp_dim = int(mlp_dim)
        self.output_dim = output_dim
        # The GELU is part of fc1 (`Linear(activation=...)`): one fused pass on the GEMM output.
        self.fc1 = Linear(
            self.mlp_dim, activation="gelu_tanh", dtype=self.dtype_policy, name="fc1"
        )
        self.fc2 = None

    def build(self, input_shape):
        width = input_shape[-1] if self.output_dim is None else self.output_dim
        self.fc2 = Linear(width, dtype=self.dtype_policy, name="fc2")
        self.fc1.build(input_shape)
        self.fc2.build((*input_shape[:-1], self.mlp_dim))

    def call(self, x):
        return self.fc2(self.fc1(x))

    def compute_output_shape(self, input_shape):
        width = input_shape[-1] if self.output_dim is None else self.output_dim
        return (*input_shape[:-1], width)

    def get_config(self):
        config = super().get_config()
        config.update({"mlp_dim": self.mlp_dim, "output_dim": self.output_dim})
        return config
