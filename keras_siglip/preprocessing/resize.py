"""Image resizing with explicit, separable weight matrices (NumPy).

SigLIP's upstream pipelines resize with three different algorithms, and the
differences are visible in the pixels, so each is written out here:

* ``pil_resize``: Pillow's ``Image.resize`` on 8-bit images (BILINEAR or
  BICUBIC), which the transformers PIL image processors call. Pillow convolves
  with a filter that is widened by the scale factor when downsampling
  (antialiasing), one axis at a time into an 8-bit image, with 22-bit
  fixed-point weights and rounding after each pass. This module repeats that
  arithmetic, so its output equals Pillow 13's bit for bit, and needs no
  Pillow.
* ``antialias_resize``: ``tf.image.resize(..., "bilinear", antialias=True)`` on
  float images (big_vision's NaFlex pipeline; ``jax.image.scale_and_translate``
  with a triangle kernel is the same filter). Same weights as Pillow's
  BILINEAR, applied in floating point without rounding.
* ``tf_bilinear_resize``: ``tf.image.resize(..., "bilinear", antialias=False)``
  (big_vision's fixed-resolution ``resize`` op): two-tap interpolation with
  half-pixel centres, no widening, computed in float32 like TensorFlow.

All functions take channels-last images ``(H, W, C)``.
"""

import math

import numpy as np

# Pillow's fixed-point precision for 8-bit images (libImaging/Resample.c):
# 32 bits minus 8 for the pixel value minus 2 of headroom for negative lobes.
_PRECISION_BITS = 32 - 8 - 2


def _triangle(x):
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _keys_cubic(x, a=-0.5):
    # Pillow's bicubic uses a = -0.5 (torch uses -0.75); same expression order
    # as Pillow so the float64 weights are identical.
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


# name -> (kernel, support radius in input pixels at scale 1)
FILTERS = {"bilinear": (_triangle, 1.0), "bicubic": (_keys_cubic, 2.0)}


def resample_weights(in_size, out_size, filter="bilinear"):
    """Weight matrix of a 1-D antialiased resize, as Pillow computes it.

    Output sample ``i`` sits at input coordinate ``center = (i + 0.5) * scale``
    (half-pixel centres, ``scale = in_size / out_size``). When downsampling
    (``scale > 1``) the kernel is stretched by ``scale`` so it low-pass filters;
    when upsampling it keeps its natural width. Taps outside the image are
    dropped and each row is renormalised to sum to 1.

    Args:
        in_size: int, input length.
        out_size: int, output length.
        filter: ``"bilinear"`` (triangle) or ``"bicubic"`` (Keys, a = -0.5).

    Returns:
        float64 array ``(out_size, in_size)``; ``output = W @ input``.
    """
    if filter not in FILTERS:
        raise ValueError(f"Unknown filter {filter!r}; expected one of {sorted(FILTERS)}.")
    kernel, radius = FILTERS[filter]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = radius * filterscale
    ksize = int(math.ceil(support)) * 2 + 1

    center = (np.arange(out_size) + 0.5) * scale
    # Pillow rounds the window bounds with a C (int) cast, i.e. truncation.
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    in_window = taps[None, :] < xmax[:, None]
    w = kernel((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(in_window, w, 0.0)
    # Accumulate the row sums tap by tap, in Pillow's order, so rounding matches.
    total = np.zeros(out_size)
    for k in range(ksize):
        total = total + w[:, k]
    w = w / np.where(total != 0.0, total, 1.0)[:, None]

    matrix = np.zeros((out_size, in_size))
    rows = np.broadcast_to(np.arange(out_size)[:, None], w.shape)
    cols = xmin[:, None] + taps[None, :]
    matrix[rows[in_window], cols[in_window]] = w[in_window]
    return matrix


def _fixed_point(weights):
    # Pillow rounds half away from zero with a C (int) cast after adding +-0.5.
    scaled = weights * (1 << _PRECISION_BITS)
    return np.trunc(np.where(weights < 0, scaled - 0.5, scaled + 0.5))


def _apply_weights(image, weights, axis):
    """Applies ``weights (out, in)`` along ``axis`` (0 rows, 1 columns) of ``(H, W, C)``."""
    x = image.astype(np.float64)
    if axis == 0:
        h, w, c = x.shape
        return (weights @ x.reshape(h, w * c)).reshape(-1, w, c)
    # One 2-D matrix product over all rows: (H*C, W) @ (W, out).
    x = np.ascontiguousarray(x.transpose(0, 2, 1))
    h, c, w = x.shape
    out = x.reshape(h * c, w) @ weights.T
    return out.reshape(h, c, -1).transpose(0, 2, 1)


def _pil_pass(image, weights, axis):
    """One 8-bit convolution pass of Pillow along ``axis``."""
    # Every product and partial sum is an integer below 2**53, so float64
    # matrix products are exact whatever their summation order.
    acc = _apply_weights(image, _fixed_point(weights), axis)
    acc = acc + float(1 << (_PRECISION_BITS - 1))
    return np.clip(np.floor(acc / (1 << _PRECISION_BITS)), 0, 255).astype(np.uint8)


def pil_resize(image, size, filter="bilinear"):
    """Bit-exact Pillow ``Image.resize(..., BILINEAR | BICUBIC)`` of a uint8 image.

    Args:
        image: uint8 ``(H, W, C)``.
        size: ``(out_height, out_width)``.
        filter: ``"bilinear"`` or ``"bicubic"``.

    Returns:
        uint8 ``(out_height, out_width, C)``.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"pil_resize needs a uint8 image, got {image.dtype}.")
    out_h, out_w = size
    in_h, in_w = image.shape[:2]
    # The 8-bit intermediate makes the pass order matter (by one step on a few
    # pixels). Pillow 13 starts with the height when the height shrinks and
    # 2 * (out_w - in_w) > out_h - in_h, otherwise with the width; this rule
    # was found by comparing with Pillow 13.0 on thousands of random sizes
    # (the older libImaging/Resample.c always starts with the width). An axis
    # whose size does not change is skipped.
    passes = [(1, out_w), (0, out_h)]
    if out_h < in_h and 2 * (out_w - in_w) > out_h - in_h:
        passes.reverse()
    for axis, out_size in passes:
        if out_size != image.shape[axis]:
            weights = resample_weights(image.shape[axis], out_size, filter)
            image = _pil_pass(image, weights, axis)
    return image


def antialias_resize(image, size):
    """``tf.image.resize(image, size, "bilinear", antialias=True)`` on a float image.

    Separable triangle filter with half-pixel centres, widened by the scale
    factor when downsampling (the same weights as ``pil_resize``'s BILINEAR),
    applied in float64 and returned as float32. TensorFlow computes the same
    weights in float32, so the two agree to float32 rounding (about 1e-6).

    Args:
        image: float ``(H, W, C)``.
        size: ``(out_height, out_width)``.

    Returns:
        float32 ``(out_height, out_width, C)``.
    """
    image = np.asarray(image)
    out = _apply_weights(image, resample_weights(image.shape[0], size[0], "bilinear"), axis=0)
    out = _apply_weights(out, resample_weights(image.shape[1], size[1], "bilinear"), axis=1)
    return out.astype(np.float32)


def _tf_bilinear_taps(in_size, out_size):
    # TensorFlow's HalfPixelScaler and compute_interpolation_weights, in float32.
    scale = np.float32(in_size) / np.float32(out_size)
    src = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(src)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    return lower, upper, (src - floor).astype(np.float32)


def tf_bilinear_resize(image, size):
    """``tf.image.resize(image, size, "bilinear", antialias=False)``.

    Two-tap interpolation at half-pixel centres with no widening, so
    downsampling aliases. Computed in float32 in TensorFlow's order
    (``top + (bottom - top) * dy`` of two horizontal lerps).

    Args:
        image: ``(H, W, C)``, any real dtype (converted to float32).
        size: ``(out_height, out_width)``.

    Returns:
        float32 ``(out_height, out_width, C)``.
    """
    image = np.asarray(image).astype(np.float32)
    y0, y1, dy = _tf_bilinear_taps(image.shape[0], size[0])
    x0, x1, dx = _tf_bilinear_taps(image.shape[1], size[1])
    dx = dx[None, :, None]
    dy = dy[:, None, None]
    top_left, top_right = image[y0][:, x0], image[y0][:, x1]
    bottom_left, bottom_right = image[y1][:, x0], image[y1][:, x1]
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy
