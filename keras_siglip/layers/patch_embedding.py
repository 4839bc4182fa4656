"""Patch embedding of fixed-resolution images: a strided VALID convolution."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_siglip")
class PatchEmbedding(keras.layers.Layer):
    """Cuts `(B, H, W, 3)` images into `p x p` patches and embeds each one.

    A `p x p` convolution with stride `p` and VALID padding: bottom and right
    pixels that do not fill a whole patch are dropped, as in big_vision and
    transformers. The `(B, H//p, W//p, D)` grid is flattened row-major.

    Args:
        patch_size: int. Side `p` of a square patch.
        hidden_dim: int. Embedding width `D`.

    Example:
    >>> embed = PatchEmbedding(patch_size=4, hidden_dim=48)
    >>> embed(np.zeros((2, 32, 24, 3))).shape
    (2, 48, 48)
    """

    def __init__(self, patch_size, hidden_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.hidden_dim = int(hidden_dim)
        self.conv = keras.layers.Conv2D(
            self.hidden_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            data_format="channels_last",
            kernel_initializer=keras.initializers.LecunNormal(),
            dtype=self.dtype_policy,
            name="conv",
        )

    def build(self, input_shape):
        self.conv.build(input_shape)

    def call(self, images, return_grid=False):
        grid = self.conv(images)
        _, h, w, d = ops.shape(grid)
        tokens = ops.reshape(grid, (-1, h * w, d))
        if return_grid:
            return tokens, grid
        return tokens

    def compute_output_shape(self, input_shape):
        p = self.patch_size
        n = None
        if input_shape[1] is not None and input_shape[2] is not None:
            n = (input_shape[1] // p) * (input_shape[2] // p)
        return (input_shape[0], n, self.hidden_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"patch_size": self.patch_size, "hidden_dim": self.hidden_dim})
        return config
