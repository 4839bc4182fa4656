"""keras-siglip: SigLIP and SigLIP 2 in Keras 3, on JAX, TensorFlow and PyTorch."""

# Before Keras is imported: an install without Keras' default backend gets an installed one.
from keras_siglip.extras import choose_backend as _choose_backend  # isort: skip

_choose_backend()

from keras_siglip.losses import SigmoidLoss, sigmoid_loss
from keras_siglip.models import (
    SigLIP,
    SigLIPNaFlexVisionEncoder,
    SigLIPTextEncoder,
    SigLIPVisionEncoder,
)
from keras_siglip.presets import list_presets, preset_info

# Registers the checkpoint formats `SigLIP.from_preset` reads (`keras_siglip.registry`).
import keras_siglip.convert  # noqa: E402,F401  isort: skip

__version__ = "0.1.0"

__all__ = [
    "SigLIP",
    "SigLIPNaFlexVisionEncoder",
    "SigLIPTextEncoder",
    "SigLIPVisionEncoder",
    "SigmoidLoss",
    "list_presets",
    "preset_info",
    "sigmoid_loss",
]
