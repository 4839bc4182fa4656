"""Patch embedding of fixed-resolution images: a strided VALID convolution."""

import keras
from keras import ops

from keras_siglip.backend import affine, patches_as_matmul


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
        grid = None
        if patches_as_matmul():
            grid = self.patch_matmul(images)
        if grid is None:
            grid = self.conv(images)
        _, h, w, d = ops.shape(grid)
        tokens = ops.reshape(grid, (-1, h * w, d))
        if return_grid:
            return tokens, grid
        return tokens

    def patch_matmul(self, images):
        """The convolution as one matmul of flattened patches, `(B, h, w, D)`.

        The same numbers as the convolution up to summation order; None when the image size is
        not static. `call` uses it where the backend's GEMM is faster than its convolution
        (`keras_siglip.backend.patches_as_matmul`).
        """
        _, height, width, channels = images.shape
        if height is None or width is None or channels is None:
            return None
        p = self.patch_size
        h, w = height // p, width // p
        images = images[:, : h * p, : w * p, :]  # VALID: drop pixels that fill no whole patch
        patches = ops.reshape(images, (-1, h, p, w, p, channels))
        patches = ops.transpose(patches, (0, 1, 3, 2, 4, 5))  # (B, h, w, p, p, C)
        patches = ops.reshape(patches, (-1, p * p * channels))
        # The kernel's (p, p, C) axes are in the patches' order, so a reshape lines them up.
        kernel = ops.reshape(self.conv.kernel, (p * p * channels, self.hidden_dim))
        grid = affine(patches, kernel, self.conv.bias)
        return ops.reshape(grid, (-1, h, w, self.hidden_dim))

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
