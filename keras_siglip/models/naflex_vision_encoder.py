"""The SigLIP 2 NaFlex image tower: native aspect ratio, variable sequence length.

See docs/naflex.md for the preprocessing and the model side.
"""

import keras
from keras import ops

from keras_siglip import backend
from keras_siglip.layers import Linear, MAPHead, NaFlexPositionEmbedding
from keras_siglip.models import safety, validation
from keras_siglip.models.tower import Tower


@keras.saving.register_keras_serializable(package="keras_siglip")
class SigLIPNaFlexVisionEncoder(Tower):
    """SigLIP 2 NaFlex image tower for pre-cut patches of images of any aspect ratio.

    It differs from `SigLIPVisionEncoder` in three places only:

    * the patch embedding is a Linear layer on flattened `p·p·3` patches (row, col, channel);
      it equals the fixed tower's convolution with its kernel reshaped row-major;
    * the learned `(G, G, W)` position table is resized, per example, to that example's patch
      grid `(h, w)` (antialiased bilinear; see `NaFlexPositionEmbedding`);
    * padded patches are masked as keys in every attention and in the MAP head, so the valid
      rows and the pooled embedding do not depend on them. Padded patches are also zeroed
      before the embedding, so they may hold anything (even inf or NaN).

    Args:
        patch_size: int. Patch side `p`; patches have `p·p·3` values.
        width: int. Token width `W`.
        depth: int. Number of encoder blocks.
        mlp_dim: int. MLP hidden width.
        num_heads: int. Attention heads.
        position_grid_size: int. Side `G` of the learned position table (16 when released).
        layer_norm_epsilon: float. Defaults to 1e-6.

    Call arguments:
        inputs: dict with `"patches"` float `(B, N, p·p·3)` in `[-1, 1]`, `"patch_mask"`
            `(B, N)` (1 for the first `h·w` rows), `"spatial_shapes"` int `(B, 2)` (the grid
            `(h, w)` in patches), as `keras_siglip.preprocessing.naflex_patchify` makes them.
        return_tokens: bool. Also return the un-pooled tokens: the result is then a dict
            `{"tokens": (B, N, W), "pooled": (B, W)}`; only the first `h·w` token rows of an
            example are meaningful.
        return_intermediates: bool. Return a dict of every stage: `stem` (patch Linear),
            `posemb` (resized table), `with_posemb`, `blockNN/{sa,+sa,mlp,+mlp}`, `encoded`,
            `pooled`.
        training: bool or None. Unless True (or an input requires a gradient), a torch call
            records no autograd graph, so `np.asarray(output)` works as on JAX and TF.

    Example:
    >>> tower = SigLIPNaFlexVisionEncoder(patch_size=2, width=32, depth=2, mlp_dim=37,
    ...                                   num_heads=4, position_grid_size=4)
    >>> inputs = {"patches": np.zeros((1, 24, 12)), "patch_mask": np.ones((1, 24)),
    ...           "spatial_shapes": np.array([[2, 12]])}
    >>> tower(inputs).shape
    (1, 32)
    """

    # A public flag for users; the library itself tells towers apart with isinstance.
    is_naflex = True

    def __init__(
        self,
        patch_size,
        width,
        depth,
        mlp_dim,
        num_heads,
        position_grid_size=16,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.patch_size = int(patch_size)
        self.width = int(width)
        self.depth = int(depth)
        self.mlp_dim = int(mlp_dim)
        self.num_heads = int(num_heads)
        self.position_grid_size = int(position_grid_size)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.patch_dim = self.patch_size * self.patch_size * 3

        self.patch_embedding = Linear(
            self.width,
            kernel_initializer=keras.initializers.LecunNormal(),
            dtype=self.dtype_policy,
            name="patch_embedding",
        )
        self.position_embedding = NaFlexPositionEmbedding(
            self.position_grid_size, dtype=self.dtype_policy, name="position_embedding"
        )
        self._make_encoder()
        self.head = MAPHead(
            self.num_heads,
            self.mlp_dim,
            self.layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="head",
        )
        self.build(None)

    def build(self, input_shape=None):
        if self.built:
            return
        self.patch_embedding.build((None, None, self.patch_dim))
        token_shape = (None, None, self.width)
        self.position_embedding.build(token_shape)
        self.encoder.build(token_shape)
        self.head.build(token_shape)
        self.built = True

    def validate(self, inputs, values=True):
        """Raise a ValueError naming the problem unless `inputs` are a valid NaFlex batch.

        Shapes always; with `values` and host-resident inputs also each example's grid against
        its mask rows and the budget, and the pixels of the valid rows.
        """
        validation.check_naflex_inputs(self, inputs, values)

    def call(self, inputs, return_tokens=False, return_intermediates=False, training=None):
        # Outside training torch records no autograd graph (`backend.inference_context`).
        with backend.inference_context(safety.records_gradients(self, training), inputs):
            patches = inputs["patches"]
            key_mask = ops.cast(inputs["patch_mask"], "bool")
            spatial_shapes = inputs["spatial_shapes"]
            num_patches = ops.shape(patches)[1]
            # Zero the padded patches, so whatever they hold (even inf) cannot reach the valid
            # rows through masked attention weights (0 * inf is NaN).
            patches = ops.where(key_mask[..., None], ops.cast(patches, self.compute_dtype), 0.0)
            stages = {}
            x = stages["stem"] = self.patch_embedding(patches)
            posemb = stages["posemb"] = self.position_embedding(spatial_shapes, num_patches=num_patches)
            x = stages["with_posemb"] = x + posemb
            x = self._run_encoder(
                x, stages, key_mask=key_mask, return_intermediates=return_intermediates
            )
            pooled = stages["pooled"] = self.head(x, key_mask=key_mask)
            if return_intermediates:
                return stages
            if return_tokens:
                return {"tokens": x, "pooled": pooled}
            return pooled

    def compute_output_shape(self, input_shape):
        batch = None
        if isinstance(input_shape, dict) and "patches" in input_shape:
            batch = input_shape["patches"][0]
        return (batch, self.width)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "width": self.width,
                "depth": self.depth,
                "mlp_dim": self.mlp_dim,
                "num_heads": self.num_heads,
                "position_grid_size": self.position_grid_size,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
