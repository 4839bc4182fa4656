"""Checkpoint conversion. The canonical tree is big_vision's; other formats convert at the edge."""

from keras_siglip.convert.big_vision import (
    assign_tree,
    infer_architecture,
    load_big_vision,
    model_to_tree,
    read_tree,
    save_big_vision,
    tree_entries,
)
from keras_siglip.convert.transformers import load_transformers, save_transformers

__all__ = [
    "assign_tree",
    "infer_architecture",
    "load_big_vision",
    "load_transformers",
    "model_to_tree",
    "read_tree",
    "save_big_vision",
    "save_transformers",
    "tree_entries",
]
