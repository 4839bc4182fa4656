"""`SigLIPProcessor`: the tokenizer and image preprocessing that belong to one checkpoint.

A model alone does not say how its inputs are made: which SentencePiece file and text
convention (SigLIP 1 pads with EOS, SigLIP 2 with PAD), which sequence length, which resize
(bicubic for SigLIP 1, bilinear for SigLIP 2, big_vision's own), and for NaFlex the patch
budget. `SigLIPProcessor.from_preset(x)` reads them from the same source as
`SigLIP.from_preset(x)` (docs/preprocessing.md, "One processor per checkpoint"):

* a preset name: the preset's row, and its SentencePiece file from the weights cache;
* a transformers folder: `spiece.model` / `tokenizer.model`, `tokenizer_config.json`,
  `preprocessor_config.json` (or the `image_processor` entry of `processor_config.json`) and
  `config.json` (text length, patch size, image size);
* a big_vision `.npz` with `preset=`: the preset's row and tokenizer;
* a `.keras` file: the processor folder saved beside it (`x.keras` -> `x.processor/`).

Modules: `processor` (the class), `sources` (reading settings, writing transformers' files),
`images` (reading image files as transformers does).
"""

from keras_siglip.processor.images import ImageReadError, load_image
from keras_siglip.processor.processor import SigLIPProcessor
from keras_siglip.processor.sources import (
    PROCESSOR_FILE,
    PROCESSOR_FILES,
    TOKENIZER_FILES,
    keras_sidecar,
    tokenizer_candidates,
)

__all__ = [
    "PROCESSOR_FILE",
    "PROCESSOR_FILES",
    "TOKENIZER_FILES",
    "ImageReadError",
    "SigLIPProcessor",
    "keras_sidecar",
    "load_image",
    "tokenizer_candidates",
]
