"""Pixel conventions shared by the image pipelines: input checks and value ranges.

Images are channels-last RGB, ``(H, W, 3)``, given either as uint8 or as float
arrays holding 8-bit values in ``[0, 255]`` (not ``[0, 1]`` and not
``[-1, 1]``). Upstream pipelines start from decoded 8-bit images, so a float
image is rounded to the nearest integer wherever the upstream resamples 8-bit
pixels; only big_vision's NaFlex pipeline (``value_range`` before the resize)
uses float pixels as they are.
"""

import numpy as np


def as_image_list(images):
    """Validates images and returns them as a list of ``(H, W, 3)`` arrays.

    Args:
        images: a list of ``(H, W, 3)`` arrays (sizes may differ), one
            ``(B, H, W, 3)`` array, or one ``(H, W, 3)`` array (a batch of one).

    Returns:
        list of uint8 or float arrays, each ``(H, W, 3)``.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("Expected at least one image, got an empty list.")
        arrays = [np.asarray(im) for im in images]
        for i, im in enumerate(arrays):
            if im.ndim != 3:
                raise ValueError(
                    f"Image {i} has shape {im.shape}; each image must be (height, width, 3)."
                )
    else:
        array = np.asarray(images)
        if array.ndim == 4:
            arrays = list(array)
        elif array.ndim == 3:
            arrays = [array]
        else:
            raise ValueError(
                f"Expected a (batch, height, width, 3) array, one (height, width, 3) image "
                f"or a list of images; got an array of shape {array.shape}."
            )
    for i, im in enumerate(arrays):
        if im.shape[-1] != 3:
            raise ValueError(
                f"Image {i} has shape {im.shape}: expected 3 (RGB) channels last. "
                "Convert grayscale with np.repeat(image[..., None], 3, -1) and drop alpha."
            )
        if im.shape[0] < 1 or im.shape[1] < 1:
            raise ValueError(f"Image {i} is empty: shape {im.shape}.")
        if im.dtype == np.uint8:
            continue
        if not (np.issubdtype(im.dtype, np.floating) or np.issubdtype(im.dtype, np.integer)):
            raise ValueError(f"Image {i} has dtype {im.dtype}; expected uint8 or float.")
        if not np.all(np.isfinite(im)) or im.min() < 0 or im.max() > 255:
            raise ValueError(
                f"Image {i} has values in [{im.min()}, {im.max()}]; non-uint8 images must "
                "hold 8-bit pixel values in [0, 255]."
            )
    return arrays


def to_uint8(image):
    """Rounds an image of 8-bit values to uint8 (a no-op for uint8)."""
    if image.dtype == np.uint8:
        return image
    return np.rint(image).astype(np.uint8)


def transformers_normalize(image):
    """uint8 -> float32 in [-1, 1] as transformers computes it.

    ``rescale`` multiplies by 1/255 in float64 and casts to float32, then
    ``normalize`` applies ``(x - 0.5) / 0.5`` in float32. Written the same way
    so the result equals transformers bit for bit (``(x - 127.5) / 127.5``
    can differ in the last float32 bit).
    """
    x = (image.astype(np.float64) * (1 / 255)).astype(np.float32)
    return (x - np.float32(0.5)) / np.float32(0.5)


def big_vision_value_range(image):
    """Pixel values -> float32 in [-1, 1] as big_vision's ``value_range(-1, 1)``.

    ``x / 255`` then ``-1 + 2 x``, in float32.
    """
    x = image.astype(np.float32) / np.float32(255.0)
    return np.float32(-1.0) + x * np.float32(2.0)
