"""Preprocessing: images to model inputs (fixed resolution and NaFlex), text to token ids.

Plain NumPy (plus SentencePiece for text); nothing here depends on the Keras
backend.
"""

from keras_siglip.preprocessing.images import preprocess_images
from keras_siglip.preprocessing.naflex import (
    naflex_from_big_vision,
    naflex_patchify,
    naflex_size,
    naflex_to_big_vision,
    patchify,
)
from keras_siglip.preprocessing.tokenizer import Tokenizer, canonicalize_text

__all__ = [
    "Tokenizer",
    "canonicalize_text",
    "naflex_from_big_vision",
    "naflex_patchify",
    "naflex_size",
    "naflex_to_big_vision",
    "patchify",
    "preprocess_images",
]
