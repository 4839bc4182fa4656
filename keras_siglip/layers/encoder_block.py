"""The pre-LayerNorm transformer block shared by both towers."""

import keras

from keras_siglip.layers.attention import MultiHeadAttention
from keras_siglip.layers.mlp import MLPBlock


@keras.saving.register_keras_serializable(package="keras_siglip")
class EncoderBlock(keras.layers.Layer):
    """`x += MHA(LN(x))`, then `x += MLP(LN(x))`.

    No layer-scale, no drop-path, no dropout; LayerNorm eps is 1e-6
    (Keras' default of 1e-3 would be wrong).

    Args:
        num_heads: int. Attention heads.
        mlp_dim: int. Hidden width of the MLP.
        layer_norm_epsilon: float. Defaults to 1e-6.

    Call arguments:
        x: `(B, T, W)`.
        key_mask: bool `(B, T)` or None; False marks padded tokens.
        return_intermediates: bool. If True, also return a dict with the
            attention output (`sa`), the residual sum after it (`+sa`), the
            MLP output (`mlp`) and the block output (`+mlp`).

    Example:
    >>> block = EncoderBlock(num_heads=4, mlp_dim=37)
    >>> block(np.zeros((2, 7, 32))).shape
    (2, 7, 32)
    """

    def __init__(self, num_heads, mlp_dim, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.layer_norm_1 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm_1"
        )
        self.attention = MultiHeadAttention(
            self.num_heads, dtype=self.dtype_policy, name="attention"
        )
        self.layer_norm_2 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm_2"
        )
        self.mlp = MLPBlock(self.mlp_dim, dtype=self.dtype_policy, name="mlp")

    def build(self, input_shape):
        self.layer_norm_1.build(input_shape)
        self.attention.build(input_shape)
        self.layer_norm_2.build(input_shape)
        self.mlp.build(input_shape)

    def call(self, x, key_mask=None, return_intermediates=False):
        sa = self.attention(self.layer_norm_1(x), key_mask=key_mask)
        x_sa = x + sa
        mlp = self.mlp(self.layer_norm_2(x_sa))
        out = x_sa + mlp
        if return_intermediates:
            return out, {"sa": sa, "+sa": x_sa, "mlp": mlp, "+mlp": out}
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

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
