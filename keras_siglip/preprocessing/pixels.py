"""Pixel conventions shared by the image pipelines: input checks and value ranges.

Images are channels-last RGB, ``(H, W, 3)``, given either as uint8 or as float
arrays holding 8-bit values in ``[0, 255]`` (not ``[0, 1]`` and not
``[-1, 1]``). Upstream pipelines start from decoded 8-bit images, so a float
image is rounded to the nearest integer wherever the upstream resamples 8-bit
pixels; only big_vision's NaFlex pipeline (``value_range`` before the resize)
uses float pixels as they are.

The range of float pixels is never guessed. A float image whose values all lie in ``[0, 1]`` is
refused by default (it would come out nearly black: 1.0 is almost the darkest 8-bit value):
pass ``input_range=(0, 1)`` for images in ``[0, 1]`` (they are multiplied by 255), or
``input_range=(0, 255)`` to accept a float image that is truly that dark. ``input_range``
(default None: uint8 or 8-bit values in ``[0, 255]``) is one of ``INPUT_RANGES``.
"""

import numpy as np

INPUT_RANGES = ((0, 255), (0, 1))


def check_input_range(input_range):
    """``input_range`` as None or one of ``INPUT_RANGES``, else a ValueError listing them."""
    if input_range is None:
        return None
    try:
        value = tuple(float(v) for v in input_range)
    except (TypeError, ValueError):
        value = None
    for allowed in INPUT_RANGES:
        if value == allowed and not isinstance(input_range, str):
            return allowed
    raise ValueError(
        f"input_range must be None (uint8, or floats holding 8-bit values in [0, 255]), "
        f"(0, 255) or (0, 1); received {input_range!r}."
    )


def _check_values(i, im, input_range):
    """Checks image ``i``'s values against ``input_range``; returns it in the 0-255 scale."""
    top = 1.0 if input_range == (0, 1) else 255.0
    if not np.all(np.isfinite(im)):
        count = int(np.sum(~np.isfinite(im)))
        raise ValueError(
            f"Image {i} holds {count} NaN or inf value(s); pixels must be finite values in "
            f"[0, {top:g}] (fix or drop the image)."
        )
    low, high = float(im.min()), float(im.max())
    if low < 0 or high > top:
        hint = (
            " It looks already preprocessed to [-1, 1]: pass the raw pixels (uint8 0-255)."
            if low < 0 and low >= -1 and high <= 1 else ""
        )
        where = "input_range=(0, 1)" if input_range == (0, 1) else "8-bit pixel values"
        raise ValueError(
            f"Image {i} has values in [{low:g}, {high:g}]; {where} must lie in [0, {top:g}].{hint}"
        )
    if input_range == (0, 1):
        return im.astype(np.float64) * 255.0
    # All zeros is black either way; any value in (0, 1] is where the two readings differ.
    if input_range is None and np.issubdtype(im.dtype, np.floating) and 0 < high <= 1.0:
        raise ValueError(
            f"Image {i} is {im.dtype} with all values in [{low:g}, {high:g}], inside [0, 1]: "
            "float pixels are read as 8-bit values in [0, 255], so it would come out nearly "
            "black. Pass input_range=(0, 1) for images in [0, 1], convert to uint8 "
            "(np.round(x * 255).astype(np.uint8)), or pass input_range=(0, 255) if the values "
            "really are 8-bit levels."
        )
    return im


def as_image_list(images, input_range=None):
    """Validates images and returns them as a list of ``(H, W, 3)`` arrays.

    Args:
        images: a list of ``(H, W, 3)`` arrays (sizes may differ), one
            ``(B, H, W, 3)`` array, or one ``(H, W, 3)`` array (a batch of one).
        input_range: None, ``(0, 255)`` or ``(0, 1)``; see the module docstring.

    Returns:
        list of uint8 or float arrays, each ``(H, W, 3)``, with values in ``[0, 255]``.
    """
    input_range = check_input_range(input_range)
    if images is None or isinstance(images, (str, bytes, dict)):
        raise TypeError(
            f"images must be a (batch, height, width, 3) array or a list of (height, width, 3) "
            f"arrays; received {type(images).__name__}."
        )
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
    if not arrays:
        raise ValueError(f"Expected at least one image, got a batch of 0 (shape {array.shape}).")
    for i, im in enumerate(arrays):
        if im.shape[-1] != 3:
            raise ValueError(
                f"Image {i} has shape {im.shape}: expected 3 (RGB) channels last. "
                "Convert grayscale with np.repeat(image[..., None], 3, -1) and drop alpha."
            )
        if im.shape[0] < 1 or im.shape[1] < 1:
            raise ValueError(f"Image {i} is empty: shape {im.shape}.")
        if im.dtype == np.uint8:
            if input_range == (0, 1):
                raise ValueError(
                    f"Image {i} is uint8, which holds 0-255; input_range=(0, 1) is for float "
                    "images. Drop input_range."
                )
            continue
        if im.dtype == np.bool_ or not (
            np.issubdtype(im.dtype, np.floating) or np.issubdtype(im.dtype, np.integer)
        ):
            raise TypeError(
                f"Image {i} has dtype {im.dtype}; expected uint8 (0-255) or float pixels."
            )
        arrays[i] = _check_values(i, im, input_range)
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
