"""The fixed-resolution SigLIP image tower: a ViT with a MAP head and no CLS token."""

import keras
import numpy as np
from keras import ops

from keras_siglip import backend
from keras_siglip.layers import (
    MAPHead,
    PatchEmbedding,
    PositionEmbedding,
    resize_position_embedding,
)
from keras_siglip.models import safety, validation
from keras_siglip.models.tower import Tower


def _pair(size):
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


@keras.saving.register_keras_serializable(package="keras_siglip")
class SigLIPVisionEncoder(Tower):
    """SigLIP image tower for `(B, H, W, 3)` images in `[-1, 1]`.

    Patch embedding (VALID conv) + learned position embedding, `depth`
    pre-LN blocks, a final LayerNorm and the MAP head, whose output is the
    image embedding (there is no image projection). `H` and `W` need not be
    equal; pixels beyond the last whole patch are dropped.

    Args:
        image_size: int or `(H, W)`. The trained input size.
        patch_size: int. Patch side `p`.
        width: int. Token width `W`.
        depth: int. Number of encoder blocks.
        mlp_dim: int. MLP hidden width.
        num_heads: int. Attention heads.
        layer_norm_epsilon: float. Defaults to 1e-6.

    Call arguments:
        images: float `(B, H, W, 3)`.
        return_tokens: bool. Also return the un-pooled tokens: the result is
            then a dict `{"tokens": (B, N, W), "pooled": (B, W)}`.
        return_intermediates: bool. Return a dict of every stage (patch
            grid, tokens with position embedding, each block's attention and
            MLP outputs, final-LN tokens, pooled), named like big_vision's
            intermediates.
        training: bool or None. Unless True (or an input requires a gradient), a torch call
            records no autograd graph, so `np.asarray(output)` works as on JAX and TF.

    Example:
    >>> tower = SigLIPVisionEncoder((32, 24), 4, width=48, depth=2,
    ...                             mlp_dim=96, num_heads=3)
    >>> tower(np.zeros((2, 32, 24, 3))).shape
    (2, 48)
    """

    # A public flag for users; the library itself tells towers apart with isinstance.
    is_naflex = False

    def __init__(
        self,
        image_size,
        patch_size,
        width,
        depth,
        mlp_dim,
        num_heads,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = _pair(image_size)
        self.patch_size = int(patch_size)
        self.width = int(width)
        self.depth = int(depth)
        self.mlp_dim = int(mlp_dim)
        self.num_heads = int(num_heads)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        h, w = self.image_size
        self.grid_size = (h // self.patch_size, w // self.patch_size)
        if min(self.grid_size) < 1:
            raise ValueError(
                f"image_size {self.image_size} is smaller than one {self.patch_size}x"
                f"{self.patch_size} patch."
            )
        self.num_patches = self.grid_size[0] * self.grid_size[1]

        self.patch_embedding = PatchEmbedding(
            self.patch_size, self.width, dtype=self.dtype_policy, name="patch_embedding"
        )
        self.position_embedding = PositionEmbedding(
            self.num_patches, dtype=self.dtype_policy, name="position_embedding"
        )
        self._make_encoder()
        self.head = MAPHead(
            self.num_heads,
            self.mlp_dim,
            self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="head",
        )
        self.build((None, *self.image_size, 3))

    def build(self, input_shape):
        if self.built:
            return
        self.patch_embedding.build(input_shape)
        token_shape = (input_shape[0], self.num_patches, self.width)
        self.position_embedding.build(token_shape)
        self.encoder.build(token_shape)
        self.head.build(token_shape)
        self.built = True

    def validate(self, images, values=True):
        """Raise a ValueError naming the problem unless `images` fit this tower.

        Shape and dtype always; with `values` and host-resident pixels also their range (and,
        on request, finiteness): see `Tower.set_input_checks`.
        """
        validation.check_images(self, images, values)

    def call(self, images, return_tokens=False, return_intermediates=False, training=None):
        # Outside training torch records no autograd graph (`backend.inference_context`).
        with backend.inference_context(safety.records_gradients(self, training), images):
            stages = {}
            x, grid = self.patch_embedding(images, return_grid=True)
            stages["stem"] = grid
            x = self.position_embedding(x)
            stages["with_posemb"] = x
            x = self._run_encoder(x, stages, return_intermediates=return_intermediates)
            pooled = self.head(x)
            stages["pooled"] = pooled
            if return_intermediates:
                return stages
            if return_tokens:
                return {"tokens": x, "pooled": pooled}
            return pooled

    def with_image_size(self, image_size, posemb_resize="big_vision"):
        """A copy of this tower for another input size, its position table resized.

        Args:
            image_size: int or `(H, W)`, the new input size.
            posemb_resize: `"big_vision"` (the linear zoom big_vision applies at load time;
                square grids only) or `"transformers"` (transformers' bicubic
                `interpolate_pos_encoding`; any grid); see docs/checkpoints.md.

        Returns:
            A new `SigLIPVisionEncoder` with the same weights except the resized
            `position_embedding`.
        """
        config = self.get_config()
        config["image_size"] = _pair(image_size)
        tower = type(self).from_config(config)
        # On the host, as `load_big_vision(..., posemb_resize=...)` does: the same numbers.
        table = np.asarray(ops.convert_to_numpy(self.position_embedding.embeddings))
        resized = resize_position_embedding(table, self.grid_size, tower.grid_size, posemb_resize)
        for source, target in zip(self.weights, tower.weights):
            if source is self.position_embedding.embeddings:
                target.assign(ops.cast(resized, target.dtype))
            else:
                target.assign(source.value)
        return tower

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.width)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "width": self.width,
                "depth": self.depth,
                "mlp_dim": self.mlp_dim,
                "num_heads": self.num_heads,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
