"""Backend-agnostic SigLIP layers (only `keras.ops` inside `call`)."""

from keras_siglip.layers.attention import MultiHeadAttention
from keras_siglip.layers.encoder_block import EncoderBlock
from keras_siglip.layers.map_head import MAPHead
from keras_siglip.layers.mlp import MLPBlock
from keras_siglip.layers.patch_embedding import PatchEmbedding
from keras_siglip.layers.position_embedding import PositionEmbedding

__all__ = [
    "EncoderBlock",
    "MAPHead",
    "MLPBlock",
    "MultiHeadAttention",
    "PatchEmbedding",
    "PositionEmbedding",
]
