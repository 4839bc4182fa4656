"""NaFlex (SigLIP 2 variable resolution) image preprocessing.

An image is resized, keeping its aspect ratio approximately, to the largest
patch grid that fits a budget of ``max_num_patches``, cut into row-major
patches and zero-padded to the budget. Two upstream pipelines are reproduced
(docs/naflex.md, "Pixel pipeline"). They differ only by the 8-bit rounding of the transformers
resize: at most one uint8 step (1/127.5), about a quarter step on average on
photos (docs/naflex.md, "Pitfalls"; measured in the tests).

* ``"transformers"``: resize the uint8 image with Pillow's BILINEAR filter
  (antialiased), then ``(x - 127.5) / 127.5`` with transformers' float32
  arithmetic; this is ``Siglip2ImageProcessorPil`` (transformers' PIL
  backend) bit for bit. The default torchvision backend resizes differently
  and differs from it by up to one uint8 step (docs/naflex.md, "Pixel pipeline").
* ``"big_vision"``: ``value_range(-1, 1)`` first, then an antialiased
  bilinear resize of the float image (``tf.image.resize(..., antialias=True)``
  in big_vision's SigLIP 2 demo), done here with explicit weights.
"""

import math
import numbers

import numpy as np

from keras_siglip.arguments import check_float, check_int
from keras_siglip.preprocessing import pixels
from keras_siglip.preprocessing import resize as resize_lib

PIPELINES = ("transformers", "big_vision")


def _check_positive_int(name, value):
    return check_int(name, value)


def _check_budget(max_num_patches):
    max_num_patches = check_int("max_num_patches", max_num_patches, minimum=None)
    if max_num_patches < 1:
        raise ValueError(
            f"max_num_patches={max_num_patches} cannot hold a single patch; it must be >= 1."
        )
    return max_num_patches


def naflex_size(height, width, patch_size, max_num_patches, eps=1e-5):
    """Target size of NaFlex's aspect-preserving resize.

    Binary search for the largest scale ``r`` such that, after rounding each
    side of ``(height * r, width * r)`` up to a multiple of ``patch_size`` (and
    to at least one patch), the grid has at most ``max_num_patches`` patches.
    There is no closed form, and the result may upsample (up to 100x) and may
    use fewer than ``max_num_patches`` patches. Plain Python floats, in the
    same order as big_vision and transformers, so the three agree exactly.

    Args:
        height, width: int, input image size in pixels.
        patch_size: int, side of a square patch in pixels.
        max_num_patches: int, patch budget (>= 1).
        eps: float, resolution of the search over the scale.

    Returns:
        ``(target_height, target_width)``, both multiples of ``patch_size``;
        the patch grid is ``(target_height // patch_size, target_width // patch_size)``.

    Example:
        >>> naflex_size(480, 640, 16, 256)
        (224, 288)
    """
    height = _check_positive_int("height", height)
    width = _check_positive_int("width", width)
    p = _check_positive_int("patch_size", patch_size)
    max_num_patches = _check_budget(max_num_patches)
    eps = check_float("eps", eps, positive=True)

    def size(side, scale):
        return max(p, p * math.ceil(side * scale / p))

    lo, hi = eps / 10, 100.0
    while hi - lo >= eps:
        mid = (lo + hi) / 2
        if (size(height, mid) / p) * (size(width, mid) / p) <= max_num_patches:
            lo = mid
        else:
            hi = mid
    return size(height, lo), size(width, lo)


def patchify(image, patch_size):
    """Cuts an image into flattened patches, row-major over the patch grid.

    Inside a patch the order is (row, col, channel), channels fastest: the
    order of a row-major reshape of a ``(p, p, C, D)`` conv kernel, so a NaFlex
    Linear patch embedding equals the fixed-resolution Conv2D. Bottom and right
    pixels that do not fill a patch are dropped (VALID).

    Args:
        image: ``(H, W, C)`` array.
        patch_size: int ``p`` or ``(ph, pw)``.

    Returns:
        ``(H // ph * (W // pw), ph * pw * C)`` array of the image's dtype.
    """
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, numbers.Integral) else patch_size
    h, w, c = image.shape
    gh, gw = h // ph, w // pw
    grid = image[: gh * ph, : gw * pw].reshape(gh, ph, gw, pw, c).transpose(0, 2, 1, 3, 4)
    return grid.reshape(gh * gw, ph * pw * c)


def naflex_patchify(images, patch_size, max_num_patches, *, pipeline="transformers",
                    input_range=None):
    """Images of any sizes to the NaFlex input dict.

    Args:
        images: a list of ``(H, W, 3)`` images (sizes may differ), one
            ``(B, H, W, 3)`` array, or one ``(H, W, 3)`` image (a batch of
            one). uint8, or float holding 8-bit values in ``[0, 255]``; see
            ``pixels`` for how floats are handled (floats all in ``[0, 1]`` are refused
            unless ``input_range`` says so).
        patch_size: int, ``p``.
        max_num_patches: int, ``N_max``, the padded sequence length.
        pipeline: ``"transformers"`` (default) or ``"big_vision"``; see the
            module docstring.
        input_range: None, ``(0, 1)`` or ``(0, 255)``, as for ``preprocess_images``.

    Returns:
        dict with
        ``"patches"``: float32 ``(B, N_max, p*p*3)`` in ``[-1, 1]``, padded rows 0;
        ``"patch_mask"``: int32 ``(B, N_max)``, 1 for the first ``h*w`` rows;
        ``"spatial_shapes"``: int32 ``(B, 2)``, the grid ``(h, w)`` in patches.

    Example:
        >>> out = naflex_patchify([np.zeros((100, 224, 3), np.uint8)], 16, 256)
        >>> out["spatial_shapes"].tolist(), int(out["patch_mask"].sum())
        ([[11, 23]], 253)
    """
    if not isinstance(pipeline, str) or pipeline not in PIPELINES:
        raise ValueError(f"Unknown pipeline {pipeline!r}; expected one of {PIPELINES}.")
    p = _check_positive_int("patch_size", patch_size)
    max_num_patches = _check_budget(max_num_patches)
    images = pixels.as_image_list(images, input_range)
    batch = len(images)
    patches = np.zeros((batch, max_num_patches, p * p * 3), np.float32)
    mask = np.zeros((batch, max_num_patches), np.int32)
    shapes = np.zeros((batch, 2), np.int32)
    for i, image in enumerate(images):
        h_t, w_t = naflex_size(image.shape[0], image.shape[1], p, max_num_patches)
        if pipeline == "transformers":
            resized = resize_lib.pil_resize(pixels.to_uint8(image), (h_t, w_t), "bilinear")
            values = pixels.transformers_normalize(resized)
        else:
            values = resize_lib.antialias_resize(pixels.big_vision_value_range(image), (h_t, w_t))
        rows = patchify(values, p)
        patches[i, : len(rows)] = rows
        mask[i, : len(rows)] = 1
        shapes[i] = (h_t // p, w_t // p)
    return {"patches": patches, "patch_mask": mask, "spatial_shapes": shapes}


def naflex_to_big_vision(inputs):
    """The NaFlex dict to big_vision's ``(patches, ptype, yidx, xidx)`` tuple.

    Args:
        inputs: dict with ``"patches"`` ``(B, N, D)``, ``"patch_mask"``
            ``(B, N)`` and ``"spatial_shapes"`` ``(B, 2)``.

    Returns:
        ``patches`` (unchanged), ``ptype`` int32 ``(B, N)`` (the mask), and
        ``yidx``, ``xidx`` int32 ``(B, N)``: row ``k < h*w`` is grid cell
        ``(k // w, k % w)``; padding rows have 0 in both.
    """
    patches = np.asarray(inputs["patches"])
    ptype = np.asarray(inputs["patch_mask"]).astype(np.int32)
    shapes = np.asarray(inputs["spatial_shapes"]).astype(np.int64)
    batch, n = ptype.shape
    yidx = np.zeros((batch, n), np.int32)
    xidx = np.zeros((batch, n), np.int32)
    for i, (h, w) in enumerate(shapes):
        if h * w > n:
            raise ValueError(f"Example {i}: spatial shape ({h}, {w}) has more than {n} patches.")
        if ptype[i].sum() != h * w or not ptype[i, : h * w].all():
            raise ValueError(
                f"Example {i}: patch_mask must mark exactly the first h*w = {h * w} rows."
            )
        k = np.arange(h * w)
        yidx[i, : h * w] = k // w
        xidx[i, : h * w] = k % w
    return patches, ptype, yidx, xidx


def naflex_from_big_vision(patches, ptype, yidx, xidx):
    """big_vision's ``(patches, ptype, yidx, xidx)`` to the NaFlex dict.

    The grid of each example is ``(max yidx + 1, max xidx + 1)`` over its
    valid rows, which must come first, in row-major order (as big_vision's
    preprocessing makes them).

    Returns:
        dict with ``"patches"`` (unchanged), ``"patch_mask"`` int32 ``(B, N)``
        and ``"spatial_shapes"`` int32 ``(B, 2)``.
    """
    ptype = np.asarray(ptype).astype(np.int32)
    yidx = np.asarray(yidx)
    xidx = np.asarray(xidx)
    shapes = np.zeros((ptype.shape[0], 2), np.int32)
    for i in range(ptype.shape[0]):
        valid = ptype[i] != 0
        count = int(valid.sum())
        if count == 0:
            raise ValueError(f"Example {i} has no valid patches.")
        h, w = int(yidx[i][valid].max()) + 1, int(xidx[i][valid].max()) + 1
        k = np.arange(h * w)
        if (
            count != h * w
            or not valid[:count].all()
            or not np.array_equal(yidx[i, :count], k // w)
            or not np.array_equal(xidx[i, :count], k % w)
        ):
            raise ValueError(
                f"Example {i}: valid patches must come first, in row-major order of a "
                f"({h}, {w}) grid."
            )
        shapes[i] = (h, w)
    return {"patches": np.asarray(patches), "patch_mask": ptype, "spatial_shapes": shapes}
