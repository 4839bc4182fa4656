"""SigLIP 2 NaFlex: target-size search, patchification and the NaFlex image tower (docs/naflex.md).

The tower differs from the fixed-resolution one in three places only: a Linear patch embedding of
pre-cut patches, a 16x16 position table resized per example to its own (h, w) grid, and masking
of the padded patch rows in the attention and the MAP head.
"""

import math

import numpy as np

from ._params import Params, f64
from .layers import MASKING_MODES, encoder, map_head, stack_examples
from .resize import resize_posemb_naflex


def naflex_size(h, w, patch_size, max_num_patches, eps=1e-5):
    """Target image size `(H_t, W_t)` for NaFlex preprocessing (docs/naflex.md, "Target size").

    Finds the largest scale (searched in [eps/10, 100], so it may upsample) at which the image,
    with each side rounded UP to a multiple of `patch_size` (at least one patch), fits in
    `max_num_patches` patches. Plain Python floats, as in big_vision and transformers.
    """
    def scaled(size, scale):
        return int(max(patch_size, math.ceil(size * scale / patch_size) * patch_size))

    lo, hi = eps / 10, 100.0
    while hi - lo >= eps:
        mid = (lo + hi) / 2
        if (scaled(h, mid) / patch_size) * (scaled(w, mid) / patch_size) <= max_num_patches:
            lo = mid
        else:
            hi = mid
    return scaled(h, lo), scaled(w, lo)


def naflex_patchify_array(image, patch_size, max_num_patches):
    """Cut an already resized image into zero-padded NaFlex patches.

    Args:
        image: `(H, W, C)`; leftover bottom/right pixels are dropped.
        patch_size: int, or `(ph, pw)`.
        max_num_patches: rows of the padded output.

    Returns:
        `(patches (N_max, ph*pw*C) float64, mask (N_max,) int32, spatial_shape (2,) int64)`: patches
        row-major over the grid, (row, col, channel) inside a patch; padded rows are 0.
    """
    image = f64(image)
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    gh, gw = image.shape[0] // ph, image.shape[1] // pw
    if gh * gw > max_num_patches:
        raise ValueError(f"{gh}x{gw} patches do not fit in max_num_patches={max_num_patches}")
    patches = np.zeros((max_num_patches, ph * pw * image.shape[2]))
    mask = np.zeros(max_num_patches, dtype=np.int32)
    for r in range(gh):
        for c in range(gw):
            k = r * gw + c
            patches[k] = image[r * ph:(r + 1) * ph, c * pw:(c + 1) * pw, :].reshape(-1)
            mask[k] = 1
    return patches, mask, np.array([gh, gw], dtype=np.int64)


def naflex_image_tower(params, patches, patch_mask, spatial_shapes, *, masking="transformers"):
    """SigLIP 2 NaFlex image tower.

    Args:
        params: flat big_vision dict with `img/embedding/kernel (p*p*3, W)` (a conv kernel
            `(p,p,3,W)` is reshaped row-major) and `img/pos_embedding (G, G, W)`.
        patches: `(B, N, p*p*3)`; patch_mask: `(B, N)`, 1 for the first h*w rows;
        spatial_shapes: `(B, 2)` grid `(h, w)` per example.
        masking: "transformers" (keys only) or "big_vision" ((query, key) pairs). Only padded rows
            differ between the two; never compare them.

    Returns:
        dict with `stem (B,N,W)` (patch Linear), `posemb (B,N,W)` (resized table; padded rows hold
        its (0, 0) entry), `with_posemb`, block intermediates, `encoded (B,N,W)`, `pooled (B,W)`.
    """
    if masking not in MASKING_MODES:
        raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
    p = Params(params)
    kernel, bias = p.get("img/embedding/kernel"), p.get("img/embedding/bias")
    kernel = kernel.reshape(-1, kernel.shape[-1])
    table = p.get("img/pos_embedding")
    if table.ndim != 3 or table.shape[0] != table.shape[1]:
        raise ValueError(f"NaFlex img/pos_embedding must be (G, G, W), got {table.shape}")
    patches, patch_mask = f64(patches), np.asarray(patch_mask).astype(bool)
    spatial_shapes = np.asarray(spatial_shapes)
    num_rows = patches.shape[1]
    results = []
    for n in range(patches.shape[0]):
        h, w = int(spatial_shapes[n, 0]), int(spatial_shapes[n, 1])
        if h <= 0 or w <= 0 or h * w > num_rows:
            raise ValueError(f"spatial shape {(h, w)} does not fit {num_rows} patch rows")
        out = {}
        x = out["stem"] = patches[n] @ kernel + bias
        resized = resize_posemb_naflex(table, h, w).reshape(h * w, -1)
        posemb = np.empty((num_rows, resized.shape[-1]))
        posemb[: h * w] = resized
        posemb[h * w:] = resized[0]  # padded rows: the resized (0, 0) entry, as both references do
        out["posemb"] = posemb
        x = out["with_posemb"] = x + posemb
        valid = patch_mask[n]
        x, blocks = encoder(x, p, "img/Transformer", valid=valid, masking=masking)
        out.update(blocks)
        out["encoded"] = x
        out["pooled"] = map_head(x, p.sub("img/MAPHead_0"), valid=valid)
        results.append(out)
    return stack_examples(results)
