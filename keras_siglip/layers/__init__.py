"""SigLIP layers in `keras.ops`; hot kernels come from `keras_siglip.backend`."""

from keras_siglip.layers.attention import MultiHeadAttention
from keras_siglip.layers.encoder import Encoder
from keras_siglip.layers.encoder_block import EncoderBlock
from keras_siglip.layers.linear import Linear
from keras_siglip.layers.map_head import MAPHead
from keras_siglip.layers.mlp import MLPBlock
from keras_siglip.layers.patch_embedding import PatchEmbedding
from keras_siglip.layers.position_embedding import PositionEmbedding
from keras_siglip.layers.position_resize import (
    FIXED_RESIZE_METHODS,
    NaFlexPositionEmbedding,
    antialiased_bilinear_weights,
    bicubic_matrix,
    resize_naflex_position_table,
    resize_position_embedding,
    zoom_linear_matrix,
)

__all__ = [
    "Encoder",
    "EncoderBlock",
    "FIXED_RESIZE_METHODS",
    "Linear",
    "MAPHead",
    "MLPBlock",
    "MultiHeadAttention",
    "NaFlexPositionEmbedding",
    "PatchEmbedding",
    "PositionEmbedding",
    "antialiased_bilinear_weights",
    "bicubic_matrix",
    "resize_naflex_position_table",
    "resize_position_embedding",
    "zoom_linear_matrix",
]
