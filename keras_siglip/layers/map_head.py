"""Multihead attention pooling (MAP): one learned probe attends to all tokens."""

import keras
from keras import ops

from keras_siglip.layers.attention import MultiHeadAttention
from keras_siglip.layers.mlp import MLPBlock


@keras.saving.register_keras_serializable(package="keras_siglip")
class MAPHead(keras.layers.Layer):
    """Pools `(B, N, W)` tokens into `(B, W)` with a learned probe query.

    `o = MHA(probe, X)`, then `y = o + MLP(LN(o))`. There is no residual from
    the probe and no LayerNorm before the attention (big_vision's
    `MAPHead`). An optional key mask keeps padded NaFlex patches out of the
    pool.

    Args:
        num_heads: int. Attention heads (the encoder's).
        mlp_dim: int. Hidden width of the MLP (the encoder's).
        layer_norm_epsilon: float. Defaults to 1e-6.

    Call arguments:
        x: `(B, N, W)` encoder output.
        key_mask: bool `(B, N)` or None.

    Example:
    >>> head = MAPHead(num_heads=4, mlp_dim=37)
    >>> head(np.zeros((2, 9, 32))).shape
    (2, 32)
    """

    def __init__(self, num_heads, mlp_dim, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.attention = MultiHeadAttention(
            self.num_heads, dtype=self.dtype_policy, name="attention"
        )
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm"
        )
        self.mlp = MLPBlock(self.mlp_dim, dtype=self.dtype_policy, name="mlp")

    def build(self, input_shape):
        width = input_shape[-1]
        self.probe = self.add_weight(
            name="probe",
            shape=(1, 1, width),
            initializer=keras.initializers.GlorotUniform(),
        )
        probe_shape = (input_shape[0], 1, width)
        self.attention.build(probe_shape, input_shape)
        self.layer_norm.build(probe_shape)
        self.mlp.build(probe_shape)

    def call(self, x, key_mask=None):
        batch = ops.shape(x)[0]
        probe = ops.cast(self.probe, x.dtype)
        query = ops.broadcast_to(probe, (batch, 1, ops.shape(probe)[-1]))
        o = self.attention(query, x, key_mask=key_mask)
        y = o + self.mlp(self.layer_norm(o))
        return y[:, 0]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
