"""SigLIP towers and the two-tower model."""

from keras_siglip.models.naflex_vision_encoder import SigLIPNaFlexVisionEncoder
from keras_siglip.models.siglip import SigLIP, l2_normalize
from keras_siglip.models.text_encoder import SigLIPTextEncoder
from keras_siglip.models.tower import Tower
from keras_siglip.models.vision_encoder import SigLIPVisionEncoder

__all__ = [
    "SigLIP",
    "SigLIPNaFlexVisionEncoder",
    "SigLIPTextEncoder",
    "SigLIPVisionEncoder",
    "Tower",
    "l2_normalize",
]
