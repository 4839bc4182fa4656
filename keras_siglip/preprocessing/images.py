"""Fixed-resolution image preprocessing (docs/preprocessing.md, "Fixed-resolution images").

Every released fixed-resolution checkpoint squashes the image to ``(S, S)``
(no aspect preservation, no crop) and maps pixels to ``[-1, 1]``, but the
resize differs by upstream:

==============  ===============================================================
``resize``      reproduces
==============  ===============================================================
"bilinear"      transformers ``SiglipImageProcessor`` as saved with SigLIP 2
                fixed-resolution checkpoints (``resample=2``): Pillow BILINEAR
                on uint8, antialiased when downsampling.
"bicubic"       transformers ``SiglipImageProcessor`` default (SigLIP 1
                checkpoints): Pillow BICUBIC (Keys a = -0.5) on uint8,
                antialiased when downsampling.
"big_vision"    big_vision demos, ``resize(S)|value_range(-1, 1)``:
                ``tf.image.resize`` bilinear **without** antialias on uint8,
                clipped and cast back to uint8 by truncation.
==============  ===============================================================

The two transformers modes match the PIL backend (``SiglipImageProcessorPil``)
bit for bit; the default torchvision backend differs by about one uint8 step.
"""

import numbers

import numpy as np

from keras_siglip.preprocessing import pixels
from keras_siglip.preprocessing import resize as resize_lib

RESIZE_MODES = ("bilinear", "bicubic", "big_vision")


def _image_size(image_size):
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = (int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}.")
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}.")
    return height, width


def preprocess_images(images, image_size, *, resize="bilinear"):
    """Resizes images to one fixed size and maps them to ``[-1, 1]``.

    Args:
        images: a list of ``(H, W, 3)`` images (sizes may differ), one
            ``(B, H, W, 3)`` array, or one ``(H, W, 3)`` image (a batch of
            one). uint8, or float holding 8-bit values in ``[0, 255]`` (rounded
            to uint8 first, as every mode resamples 8-bit pixels).
        image_size: int ``S`` or ``(height, width)``.
        resize: ``"bilinear"`` (default; transformers SigLIP 2 fixed-res),
            ``"bicubic"`` (transformers SigLIP 1) or ``"big_vision"``; see the
            module docstring.

    Returns:
        float32 ``(B, height, width, 3)`` in ``[-1, 1]``.

    Example:
        >>> x = preprocess_images([np.zeros((480, 640, 3), np.uint8)], 224, resize="bicubic")
        >>> x.shape, float(x.min())
        ((1, 224, 224, 3), -1.0)
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"Unknown resize {resize!r}; expected one of {RESIZE_MODES}.")
    size = _image_size(image_size)
    results = []
    for image in pixels.as_image_list(images):
        image = pixels.to_uint8(image)
        if resize == "big_vision":
            resized = resize_lib.tf_bilinear_resize(image, size)
            # big_vision's resize op casts back to the input dtype; float ->
            # uint8 truncates toward zero.
            resized = np.clip(resized, 0, 255).astype(np.uint8)
            results.append(pixels.big_vision_value_range(resized))
        else:
            resized = resize_lib.pil_resize(image, size, resize)
            results.append(pixels.transformers_normalize(resized))
    return np.stack(results)
