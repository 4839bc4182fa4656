"""Position-embedding resizing as separable weight matrices (docs/naflex.md, docs/checkpoints.md).

Each resize is `Wh @ grid @ Ww.T` over the two grid axes, with one `(new, old)` matrix per axis
built element by element from the formula it implements:

* NaFlex: bilinear, half-pixel centres, antialiased (the triangle widens when downsampling);
  big_vision `scale_and_translate`, torch `interpolate(bilinear, antialias=True)`.
* big_vision fixed resolution: `scipy.ndimage.zoom(order=1)`, corner aligned, no antialias.
* transformers fixed resolution: torch bicubic, Keys a = -0.75, half-pixel, clamped taps.
"""

import math

import numpy as np

from ._params import f64

FIXED_RESIZE_METHODS = ("big_vision", "transformers")


def naflex_posemb_weights(G, S):
    """`(S, G)` antialiased bilinear weights resizing a length-`G` axis to length `S`."""
    scale = G / S
    support = max(scale, 1.0)  # the triangle widens only when downsampling
    w = np.zeros((S, G))
    for i in range(S):
        center = (i + 0.5) * scale - 0.5
        for j in range(G):
            w[i, j] = max(0.0, 1.0 - abs(j - center) / support)
        w[i] /= w[i].sum()
    return w


def _apply_separable(grid, wh, ww):
    """`out[i, j] = sum_a sum_b wh[i, a] * ww[j, b] * grid[a, b]` for a `(Ha, Wb, C)` grid."""
    grid = f64(grid)
    out = np.zeros((wh.shape[0], ww.shape[0], grid.shape[-1]))
    for i in range(wh.shape[0]):
        for j in range(ww.shape[0]):
            for a in range(wh.shape[1]):
                if wh[i, a] == 0.0:
                    continue
                out[i, j] += wh[i, a] * (ww[j] @ grid[a])
    return out


def resize_posemb_naflex(table, h, w):
    """Resize a NaFlex position table `(G, G, W)` to `(h, w, W)` (antialiased bilinear)."""
    table = f64(table)
    return _apply_separable(table, naflex_posemb_weights(table.shape[0], h), naflex_posemb_weights(table.shape[1], w))


def zoom_linear_weights(old, new):
    """`(new, old)` weights of `scipy.ndimage.zoom(order=1)` along one axis.

    scipy (grid_mode=False) samples source coordinate `i * (old-1)/(new-1)`, so the first and last
    samples sit exactly on the first and last input points (like align_corners=True).
    """
    zoom = (old - 1) / (new - 1) if new > 1 else 1.0  # scipy uses 1 when the output has one sample
    w = np.zeros((new, old))
    for i in range(new):
        src = min(max(i * zoom, 0.0), old - 1.0)
        lo = min(int(math.floor(src)), max(old - 2, 0))
        frac = src - lo
        w[i, lo] += 1.0 - frac
        if frac != 0.0:
            w[i, lo + 1] += frac
    return w


def _cubic(x, a):
    """Keys cubic convolution kernel with parameter `a` (torch uses a = -0.75)."""
    x = abs(x)
    if x <= 1.0:
        return (a + 2.0) * x**3 - (a + 3.0) * x**2 + 1.0
    if x < 2.0:
        return a * x**3 - 5.0 * a * x**2 + 8.0 * a * x - 4.0 * a
    return 0.0


def bicubic_weights(old, new, a=-0.75):
    """`(new, old)` weights of torch `interpolate(mode="bicubic", align_corners=False)` along one axis.

    Source coordinate `(i + 0.5) * old/new - 0.5` is not clamped; the four taps
    `floor(src)-1 .. floor(src)+2` are clamped to the valid index range, so edge weights pile up.
    """
    scale = old / new
    w = np.zeros((new, old))
    for i in range(new):
        src = (i + 0.5) * scale - 0.5
        base = math.floor(src)
        t = src - base
        for k in range(-1, 3):
            idx = min(max(base + k, 0), old - 1)
            w[i, idx] += _cubic(k - t, a)
    return w


def resize_posemb_fixed(posemb, new_hw, method="big_vision"):
    """Resize a fixed-resolution position embedding `(1, N, W)` to `(1, h*w, W)`.

    Args:
        posemb: `(1, N, W)` with a square source grid `N = gs*gs`.
        new_hw: target grid `(h, w)` in patches, or an int for a square target.
        method: "big_vision" (scipy order-1 zoom, square targets only) or "transformers"
            (torch bicubic a=-0.75, non-square targets allowed).
    """
    if method not in FIXED_RESIZE_METHODS:
        raise ValueError(f"method must be one of {FIXED_RESIZE_METHODS}, got {method!r}")
    posemb = f64(posemb)
    _, n, width = posemb.shape
    gs = int(round(math.sqrt(n)))
    if gs * gs != n:
        raise ValueError(f"source grid must be square, got N={n}")
    h, w = (new_hw, new_hw) if isinstance(new_hw, int) else (int(new_hw[0]), int(new_hw[1]))
    grid = posemb[0].reshape(gs, gs, width)
    if method == "big_vision":
        if h != w:
            raise ValueError(f"big_vision resample_posemb supports square targets only, got {(h, w)}")
        wh = ww = zoom_linear_weights(gs, h)
    else:
        wh, ww = bicubic_weights(gs, h), bicubic_weights(gs, w)
    return _apply_separable(grid, wh, ww).reshape(1, h * w, width)
