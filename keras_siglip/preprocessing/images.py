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

import numpy as np

from keras_siglip.arguments import check_size
from keras_siglip.preprocessing import pixels
from keras_siglip.preprocessing import resize as resize_lib

RESIZE_MODES = ("bilinear", "bicubic", "big_vision")


def preprocess_images(images, image_size, *, resize="bilinear", input_range=None):
    """Resizes images to one fixed size and maps them to ``[-1, 1]``.

    Args:
        images: a list of ``(H, W, 3)`` images (sizes may differ), one
            ``(B, H, W, 3)`` array, or one ``(H, W, 3)`` image (a batch of
            one). uint8, or float holding 8-bit values in ``[0, 255]`` (rounded
            to uint8 first, as every mode resamples 8-bit pixels). Float images whose
            values all lie in ``[0, 1]`` are refused unless ``input_range`` says so.
        image_size: int ``S`` or ``(height, width)``.
        resize: ``"bilinear"`` (default; transformers SigLIP 2 fixed-res),
            ``"bicubic"`` (transformers SigLIP 1) or ``"big_vision"``; see the
            module docstring.
        input_range: None (uint8, or floats holding 8-bit values), ``(0, 1)`` (float images
            in ``[0, 1]``, multiplied by 255) or ``(0, 255)`` (accept float images of any
            darkness); see ``keras_siglip.preprocessing.pixels``.

    Returns:
        float32 ``(B, height, width, 3)`` in ``[-1, 1]``.

    Example:
        >>> x = preprocess_images([np.zeros((480, 640, 3), np.uint8)], 224, resize="bicubic")
        >>> x.shape, float(x.min())
        ((1, 224, 224, 3), -1.0)
    """
    if not isinstance(resize, str) or resize not in RESIZE_MODES:
        raise ValueError(f"Unknown resize {resize!r}; expected one of {RESIZE_MODES}.")
    size = check_size("image_size", image_size)
    results = []
    for image in pixels.as_image_list(images, input_range):
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
