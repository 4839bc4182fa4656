"""Checkpoint conversion (docs/checkpoints.md).

The canonical tree is big_vision's; other formats convert at the edge. `names` holds the one
table of parameter names, `io` the file handling every format shares.
"""

from keras_siglip.convert.big_vision import (
    assign_tree,
    infer_architecture,
    load_big_vision,
    model_to_tree,
    read_tree,
    save_big_vision,
)
from keras_siglip.convert.formats import register_formats
from keras_siglip.convert.keras_hub import load_keras_hub, save_keras_hub
from keras_siglip.convert.names import tree_entries
from keras_siglip.convert.open_clip import load_open_clip, save_open_clip
from keras_siglip.convert.transformers import load_transformers, save_transformers

register_formats()

__all__ = [
    "assign_tree",
    "infer_architecture",
    "load_big_vision",
    "load_keras_hub",
    "load_open_clip",
    "load_transformers",
    "model_to_tree",
    "read_tree",
    "save_big_vision",
    "save_keras_hub",
    "save_open_clip",
    "save_transformers",
    "tree_entries",
]
