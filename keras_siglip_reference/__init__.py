"""A slow, plain NumPy (float64) oracle for SigLIP and SigLIP 2.

It reads big_vision's flat parameter dict, loops over examples and heads, and shares no code with
`keras_siglip`. Every number the library produces is checked against it.
"""

from .layers import MASKING_MODES
from .loss import l2_normalize, l2_normalize_backward, sigmoid_loss, sigmoid_loss_grads
from .naflex import naflex_image_tower, naflex_patchify_array, naflex_size
from .resize import (
    FIXED_RESIZE_METHODS,
    bicubic_weights,
    naflex_posemb_weights,
    resize_posemb_fixed,
    resize_posemb_naflex,
    zoom_linear_weights,
)
from .towers import image_tower, numeric_param_grad, text_tower, two_tower, two_tower_loss

__all__ = [
    "FIXED_RESIZE_METHODS",
    "MASKING_MODES",
    "bicubic_weights",
    "image_tower",
    "l2_normalize",
    "l2_normalize_backward",
    "naflex_image_tower",
    "naflex_patchify_array",
    "naflex_posemb_weights",
    "naflex_size",
    "numeric_param_grad",
    "resize_posemb_fixed",
    "resize_posemb_naflex",
    "sigmoid_loss",
    "sigmoid_loss_grads",
    "text_tower",
    "two_tower",
    "two_tower_loss",
    "zoom_linear_weights",
]
