"""Position-embedding resizing as explicit separable weights (docs/naflex.md, docs/checkpoints.md).

Two jobs, both written as `out = Wh · grid · Wwᵀ` with one weight matrix per grid axis:

* **NaFlex** (`NaFlexPositionEmbedding`): every example resizes the learned `(G, G, W)` table
  to its own `(h, w)` patch grid with antialiased bilinear weights (half-pixel centres, the
  triangle widened to `G / S` when downsampling, rows normalised). This is what big_vision's
  `scale_and_translate`, torch's `interpolate(bilinear, antialias=True)` and transformers 5.24's
  closed form compute. The weights are built in float32 with `keras.ops` from the per-example
  `spatial_shapes`, batched over examples with different grids; the only static size is the
  padded sequence length, so it compiles. `keras.ops.image.resize` is not used: its kernels
  differ between backends.
* **Fixed resolution** (`resize_position_embedding`): adapting a `(1, N, W)` checkpoint table to
  a new image size, either as big_vision does at load time (`scipy.ndimage.zoom(order=1)`:
  corner-aligned linear, square grids) or as transformers' `interpolate_pos_encoding` does
  (torch bicubic, Keys a = -0.75, half-pixel, clamped taps).
"""


import keras
import numpy as np
from keras import ops

FIXED_RESIZE_METHODS = ("big_vision", "transformers")


# --------------------------------------------------------------------------------------
# NaFlex: per-example antialiased bilinear resize.


def antialiased_bilinear_weights(source_size, target_size, index):
    """Antialiased bilinear weights of output `index` when resizing `source_size -> target_size`.

    Args:
        source_size: int `G`, the length of the source axis.
        target_size: tensor of target lengths `S` (any shape), int or float.
        index: tensor of output indices, broadcastable with `target_size`.

    Returns:
        float32 `(*broadcast_shape, G)`: row `r` of the `(S, G)` resize matrix, normalised to sum 1.
    """
    # With scale = G/S and centre (r + 0.5)·scale − 0.5, the distance from tap j in units of the
    # support max(scale, 1) is |(2j+1)·S − (2r+1)·G| / (2·max(G, S)): an exact integer over an
    # exact integer, so float32 rounds it once (the textbook form loses ~5e-7 at G = 16).
    size = ops.cast(target_size, "float32")
    index = ops.cast(index, "float32")
    taps = ops.arange(source_size, dtype="float32")
    numerator = (2.0 * taps + 1.0) * size[..., None] - (2.0 * index[..., None] + 1.0) * source_size
    denominator = 2.0 * ops.maximum(size, float(source_size))[..., None]
    weights = ops.relu(1.0 - ops.abs(numerator) / denominator)
    return weights / ops.sum(weights, axis=-1, keepdims=True)


def naflex_token_grid(spatial_shapes, num_patches):
    """Grid row and column of every token: `(row, col, valid)`, each `(B, N)`.

    Token `k < h*w` sits at `(k // w, k % w)`; padded tokens get `(0, 0)` and `valid = False`.
    """
    shapes = ops.cast(spatial_shapes, "int32")
    h, w = shapes[:, 0:1], shapes[:, 1:2]
    k = ops.arange(num_patches, dtype="int32")[None, :]
    safe_w = ops.maximum(w, 1)  # invalid shapes are rejected eagerly; never divide by 0 in a trace
    row = ops.floor_divide(k, safe_w)
    col = k - row * safe_w
    valid = k < h * w
    zero = ops.zeros_like(row)
    return ops.where(valid, row, zero), ops.where(valid, col, zero), valid


def resize_naflex_position_table(table, spatial_shapes, num_patches):
    """Resize a `(G, G, W)` table to each example's grid, one row per token.

    Args:
        table: `(G, G, W)` learned position table (height, width, features).
        spatial_shapes: int `(B, 2)`, the patch grid `(h, w)` of each example.
        num_patches: int `N`, the padded sequence length (static under `jit`).

    Returns:
        float32 `(B, N, W)`. Row `k < h*w` is the resized table at `(k // w, k % w)`; padded
        rows hold the resized `(0, 0)` entry (as transformers; big_vision gathers the same).
    """
    table = ops.cast(table, "float32")
    g_h, g_w, width = table.shape
    shapes = ops.cast(spatial_shapes, "int32")
    row, col, _ = naflex_token_grid(shapes, num_patches)
    weights_h = antialiased_bilinear_weights(g_h, shapes[:, 0:1], row)  # (B, N, G_h)
    weights_w = antialiased_bilinear_weights(g_w, shapes[:, 1:2], col)  # (B, N, G_w)
    # out[b, k] = Σ_ij Wh[b, k, i] Ww[b, k, j] table[i, j]: one (B, N, G·G) @ (G·G, W) matmul
    # rather than a (B, N, G, W) intermediate.
    outer = weights_h[..., :, None] * weights_w[..., None, :]
    outer = ops.reshape(outer, (-1, num_patches, g_h * g_w))
    return ops.matmul(outer, ops.reshape(table, (g_h * g_w, width)))


@keras.saving.register_keras_serializable(package="keras_siglip")
class NaFlexPositionEmbedding(keras.layers.Layer):
    """NaFlex's learned `(G, G, W)` position table, resized per example to its patch grid.

    The weight `embeddings` is big_vision's `img/pos_embedding` `(G, G, W)` (transformers'
    `(G·G, W)` reshaped row-major). The resize runs in float32 whatever the compute dtype.

    Args:
        grid_size: int `G`, the side of the table (16 for the released models).
        initializer: initializer for the table; defaults to N(0, 1/sqrt(W)).

    Call arguments:
        spatial_shapes: int `(B, 2)`, the grid `(h, w)` of each example.
        num_patches: int `N`, the padded sequence length.

    Returns `(B, N, W)` position embeddings (see `resize_naflex_position_table`).

    Example:
    >>> pos = NaFlexPositionEmbedding(grid_size=4)
    >>> pos.build((None, None, 32))
    >>> pos(np.array([[2, 12], [4, 4]]), num_patches=24).shape
    (2, 24, 32)
    """

    def __init__(self, grid_size=16, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = int(grid_size)
        self.initializer = keras.initializers.get(initializer) if initializer else None

    def build(self, input_shape):
        width = input_shape[-1]
        initializer = self.initializer or keras.initializers.RandomNormal(stddev=1.0 / width**0.5)
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.grid_size, self.grid_size, width),
            initializer=initializer,
        )

    def call(self, spatial_shapes, num_patches):
        posemb = resize_naflex_position_table(self.embeddings, spatial_shapes, num_patches)
        return ops.cast(posemb, self.compute_dtype)

    def compute_output_shape(self, spatial_shapes_shape, num_patches=None):
        return (spatial_shapes_shape[0], num_patches, self.embeddings.shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_size": self.grid_size,
                "initializer": keras.initializers.serialize(self.initializer)
                if self.initializer
                else None,
            }
        )
        return config


# --------------------------------------------------------------------------------------
# Fixed resolution: adapt a checkpoint's (1, N, W) table to another image size.


def zoom_linear_matrix(old, new):
    """`(new, old)` float32 weights of `scipy.ndimage.zoom(order=1)` along one axis.

    scipy (`grid_mode=False`) samples source coordinate `i·(old−1)/(new−1)`: the first and last
    samples sit on the first and last inputs (corner aligned), and nothing is antialiased.
    """
    step = (old - 1) / (new - 1) if new > 1 else 0.0  # one output sample: the first input
    src = np.minimum(np.arange(new) * step, old - 1.0)
    lo = np.minimum(np.floor(src).astype(int), max(old - 2, 0))
    frac = src - lo
    weights = np.zeros((new, old))
    rows = np.arange(new)
    np.add.at(weights, (rows, lo), 1.0 - frac)
    np.add.at(weights, (rows, np.minimum(lo + 1, old - 1)), frac)
    return weights.astype(np.float32)


def _keys_cubic(x, a):
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x <= 1.0, near, np.where(x < 2.0, far, 0.0))


def bicubic_matrix(old, new, a=-0.75):
    """`(new, old)` float32 weights of torch `interpolate(mode="bicubic", align_corners=False)`.

    Source coordinate `(i + 0.5)·old/new − 0.5` (not clamped); the four taps
    `floor(src) − 1 … floor(src) + 2` are clamped to `[0, old − 1]`, so weight piles up at the
    edges. Keys kernel with `a = −0.75` (jax and TF use −0.5).
    """
    src = (np.arange(new) + 0.5) * (old / new) - 0.5
    base = np.floor(src)
    frac = src - base
    weights = np.zeros((new, old))
    rows = np.arange(new)
    for k in range(-1, 3):
        taps = np.clip(base + k, 0, old - 1).astype(int)
        np.add.at(weights, (rows, taps), _keys_cubic(k - frac, a))
    return weights.astype(np.float32)


def _grid(size):
    if isinstance(size, (int, np.integer)):
        return (int(size), int(size))
    h, w = size
    return (int(h), int(w))


def resize_position_embedding(posemb, source_grid, target_grid, method="big_vision"):
    """Resize a fixed-resolution position embedding to another patch grid.

    Args:
        posemb: `(1, N, W)` (or `(N, W)`) table, NumPy or a backend tensor, `N = h·w` of
            `source_grid`, row-major.
        source_grid: int or `(h, w)`, the checkpoint's patch grid.
        target_grid: int or `(h, w)`, the new patch grid.
        method: `"big_vision"`: `vit.resample_posemb` at load time, scipy's order-1 zoom,
            corner aligned, square grids only. `"transformers"`: `interpolate_pos_encoding`,
            torch bicubic (a = −0.75, half-pixel, clamped taps); non-square grids allowed.

    Returns:
        `(1, h·w, W)` float32 of the target grid (NumPy for NumPy input, else a tensor).
        The same grid returns the table unchanged (both methods are then the identity).
    """
    if method not in FIXED_RESIZE_METHODS:
        raise ValueError(
            f"Unknown position-embedding resize method {method!r}; valid methods: "
            f"{', '.join(repr(m) for m in FIXED_RESIZE_METHODS)}."
        )
    src_h, src_w = _grid(source_grid)
    dst_h, dst_w = _grid(target_grid)
    shape = tuple(posemb.shape)
    width = shape[-1]
    if shape[-2] != src_h * src_w or len(shape) not in (2, 3):
        raise ValueError(
            f"A position embedding of shape {shape} does not hold the {src_h}x{src_w} source "
            f"grid ({src_h * src_w} positions)."
        )
    if method == "big_vision" and (src_h != src_w or dst_h != dst_w):
        raise ValueError(
            f"method='big_vision' (vit.resample_posemb) resizes square grids only; received "
            f"{src_h}x{src_w} -> {dst_h}x{dst_w}. Use method='transformers' for non-square grids."
        )
    if method == "big_vision":
        weights_h, weights_w = zoom_linear_matrix(src_h, dst_h), zoom_linear_matrix(src_w, dst_w)
    else:
        weights_h, weights_w = bicubic_matrix(src_h, dst_h), bicubic_matrix(src_w, dst_w)
    if isinstance(posemb, np.ndarray):  # NumPy in, NumPy out: checkpoint loading needs no device
        grid = np.asarray(posemb, np.float32).reshape(src_h, src_w, width)
        if (src_h, src_w) != (dst_h, dst_w):
            grid = np.einsum("ai,bj,ijc->abc", weights_h, weights_w, grid)
        return grid.reshape(1, dst_h * dst_w, width)
    grid = ops.reshape(ops.cast(posemb, "float32"), (src_h, src_w, width))
    if (src_h, src_w) != (dst_h, dst_w):
        grid = ops.einsum("ai,bj,ijc->abc", weights_h, weights_w, grid)
    return ops.reshape(grid, (1, dst_h * dst_w, width))
