"""Checkpoint conversion. The canonical tree is big_vision's; other formats convert at the edge."""

from keras_siglip.convert.big_vision import (
    infer_architecture,
    load_big_vision,
    model_to_tree,
    read_tree,
    save_big_vision,
    tree_entries,
)

__all__ = [
    "infer_architecture",
    "load_big_vision",
    "model_to_tree",
    "read_tree",
    "save_big_vision",
    "tree_entries",
]
