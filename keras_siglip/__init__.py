"""keras-siglip: SigLIP and SigLIP 2 in Keras 3, on JAX, TensorFlow and PyTorch."""

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
