"""The encoder stack shared by every tower: `depth` pre-LN blocks and a final LayerNorm."""

import keras

from keras_siglip.layers.encoder_block import EncoderBlock


@keras.saving.register_keras_serializable(package="keras_siglip")
class Encoder(keras.layers.Layer):
    """`depth` `EncoderBlock`s followed by the final LayerNorm (big_vision's `encoder_norm`).

    The image, NaFlex and text towers all run this stack; only the NaFlex tower passes a key
    mask.

    Args:
        depth: int. Number of blocks.
        num_heads: int. Attention heads of each block.
        mlp_dim: int. MLP hidden width of each block.
        layer_norm_epsilon: float. Defaults to 1e-6.

    Call arguments:
        x: `(B, T, W)`.
        key_mask: bool `(B, T)` or None; False marks padded tokens that no query attends to.
        return_intermediates: bool. If True, return `(encoded, stages)` where `stages` holds
            `blockNN/{sa,+sa,mlp,+mlp}` of every block (see `EncoderBlock`).

    Returns:
        `(B, T, W)`: the blocks' output after the final LayerNorm.

    Example:
    >>> encoder = Encoder(depth=2, num_heads=4, mlp_dim=37)
    >>> encoder(np.zeros((2, 7, 32))).shape
    (2, 7, 32)
    """

    def __init__(self, depth, num_heads, mlp_dim, layer_norm_epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.blocks = [
            EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                self.layer_norm_epsilon,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(self.depth)
        ]
        self.norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="encoder_norm"
        )

    def build(self, input_shape):
        for block in self.blocks:
            block.build(input_shape)
        self.norm.build(input_shape)

    def call(self, x, key_mask=None, return_intermediates=False):
        stages = {}
        for i, block in enumerate(self.blocks):
            if return_intermediates:
                x, inner = block(x, key_mask=key_mask, return_intermediates=True)
                for key, value in inner.items():
                    stages[f"block{i:02d}/{key}"] = value
            else:
                x = block(x, key_mask=key_mask)
        x = self.norm(x)
        if return_intermediates:
            return x, stages
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depth": self.depth,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
