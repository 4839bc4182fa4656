"""The canonical parameter tree: big_vision's flat `/`-joined names (docs/checkpoints.md).

Keras kernels use flax layouts, so every tensor copies without a transpose; the names are
in `keras_siglip.convert.names`. This module reads real checkpoint files (`params/` prefix,
scan-stacked blocks, bfloat16 stored as 2-byte void), infers the architecture from tensor
shapes and copies trees in and out of models.
"""

import os
import re
from pathlib import Path

import keras
import numpy as np

from keras_siglip.arguments import check_size
from keras_siglip.builders import build_model
from keras_siglip.convert.io import (
    as_float_array,
    atomic_output,
    check_destination,
    check_fit,
    check_model,
    read_npz,
    track,
)
from keras_siglip.convert.names import tree_entries
from keras_siglip.layers import FIXED_RESIZE_METHODS, resize_position_embedding
from keras_siglip.models import SigLIP, SigLIPNaFlexVisionEncoder

_PREFIXES = ("params/", "opt/target/")
_SCAN = re.compile(r"^(.*)/encoderblock/(.*)$")


def _strip(name):
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _is_parameter(name):
    name = _strip(name)
    return name.startswith(("img/", "txt/")) or name in ("t", "b")


def read_tree(path_or_tree):
    """Read a big_vision checkpoint into a flat `{name: float ndarray}` in per-block form.

    Accepts a `.npz` path or a dict. Strips a leading `params/` or
    `opt/target/`, converts bfloat16 (2-byte void) to float32 and splits
    scan-stacked `.../encoderblock/<leaf>` tensors `(depth, ...)` into
    `.../encoderblock_{i}/<leaf>`.
    """
    if isinstance(path_or_tree, (str, os.PathLike)):
        raw = read_npz(path_or_tree, keep=_is_parameter)  # the rest is never decompressed
    else:
        raw = dict(path_or_tree)
    tree = {}
    for name, value in raw.items():
        if not _is_parameter(name):
            continue  # optimizer state, step counters, fixtures' extra arrays
        name = _strip(name)
        value = as_float_array(name, value)
        if name in ("t", "b") and value.ndim == 0:
            value = value.reshape(1)  # some exports store the scalars without their (1,) axis
        match = _SCAN.match(name)
        if match:
            head, leaf = match.groups()
            for i, part in enumerate(value):
                tree[f"{head}/encoderblock_{i}/{leaf}"] = part
        else:
            tree[name] = value
    if not tree:
        raise ValueError(
            "The checkpoint holds no SigLIP parameters (no 'img/...', 'txt/...', 't' or "
            "'b' names, with or without a 'params/' prefix)."
        )
    return tree


def _depth(tree, prefix):
    pattern = re.compile(re.escape(prefix) + r"/encoderblock_(\d+)/")
    indices = {int(m.group(1)) for name in tree if (m := pattern.match(name))}
    return max(indices) + 1 if indices else 0


def _require(tree, name):
    if name not in tree:
        raise ValueError(
            f"Cannot infer the architecture: the checkpoint has no {name!r}. Present "
            f"names start with: {sorted({n.split('/')[0] for n in tree})}."
        )
    return tree[name]


def infer_architecture(tree, image_size=None):
    """Vision and text tower kwargs from tensor shapes (`image_size` settles the grid)."""
    kernel = _require(tree, "img/embedding/kernel")
    naflex = kernel.ndim == 2
    width = kernel.shape[-1]
    block = "img/Transformer/encoderblock_0/"
    query = _require(tree, block + "MultiHeadDotProductAttention_0/query/kernel")
    vision = {
        "width": width,
        "depth": _depth(tree, "img/Transformer"),
        "mlp_dim": _require(tree, block + "MlpBlock_0/Dense_0/kernel").shape[1],
        "num_heads": query.shape[1],
    }
    pos = _require(tree, "img/pos_embedding")
    if naflex:
        vision["patch_size"] = int(round((kernel.shape[0] / 3) ** 0.5))
        vision["position_grid_size"] = pos.shape[0]
    else:
        patch = kernel.shape[0]
        vision["patch_size"] = patch
        n = pos.shape[1]
        if image_size is None:
            side = int(round(n**0.5))
            if side * side != n:
                raise ValueError(
                    f"img/pos_embedding has {n} positions, not a square grid: pass "
                    "image_size=(height, width) to load_big_vision."
                )
            image_size = (side * patch, side * patch)
        vision["image_size"] = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    tblock = "txt/Encoder_0/encoderblock_0/"
    embed = _require(tree, "txt/Embed_0/embedding")
    text = {
        "vocabulary_size": embed.shape[0],
        "sequence_length": _require(tree, "txt/pos_embedding").shape[1],
        "width": embed.shape[1],
        "depth": _depth(tree, "txt/Encoder_0"),
        "mlp_dim": _require(tree, tblock + "MlpBlock_0/Dense_0/kernel").shape[1],
        "num_heads": _require(tree, tblock + "MultiHeadDotProductAttention_0/query/kernel").shape[1],
        "use_head": "txt/head/kernel" in tree,
    }
    text["embed_dim"] = tree["txt/head/kernel"].shape[1] if text["use_head"] else None
    return naflex, vision, text


def assign_tree(model, tree, progress=None):
    """Copy a flat big_vision tree into `model`, checking every name and shape first.

    All missing, unexpected and misshapen tensors are reported in one error,
    and nothing is assigned unless everything fits. `model` is a `SigLIP` or
    a single tower (see `tree_entries`). `progress` is an optional tqdm-like
    callable `progress(iterable, total=, desc=)` shown over the tensors.
    """
    entries = tree_entries(model)
    check_fit(
        {name: var.shape for name, var in entries},
        {name: np.shape(value) for name, value in tree.items()},
        "The checkpoint does not fit the model architecture.",
    )
    for name, var in track(entries, progress, "assign"):
        var.assign(np.asarray(tree[name], dtype=np.float32))
    return model


def model_to_tree(model, progress=None):
    """The model's (or a tower's) weights as a flat `{big_vision name: float32 ndarray}`."""
    return {
        name: np.asarray(keras.ops.convert_to_numpy(var), dtype=np.float32)
        for name, var in track(tree_entries(model), progress, "export")
    }


def _check_posemb_resize(posemb_resize):
    if posemb_resize is not None and posemb_resize not in FIXED_RESIZE_METHODS:
        raise ValueError(
            f"Unknown posemb_resize={posemb_resize!r}; valid values: None, "
            f"{', '.join(repr(m) for m in FIXED_RESIZE_METHODS)}."
        )


def fit_position_embedding(tree, image_size, patch_size, posemb_resize=None):
    """Resize a fixed-resolution `img/pos_embedding` to the grid of `image_size` if needed.

    Args:
        tree: flat big_vision tree.
        image_size: `(H, W)` input size; the grid is `(H // patch_size, W // patch_size)`.
        patch_size: int.
        posemb_resize: None, `"big_vision"` or `"transformers"` (see `load_big_vision`).

    Returns `tree` itself when the table already fits, else a copy with the resized table. A
    mismatch without `posemb_resize` raises an error naming both grids and the option.
    """
    _check_posemb_resize(posemb_resize)
    posemb = np.asarray(_require(tree, "img/pos_embedding"))
    height, width = image_size
    target = (height // patch_size, width // patch_size)
    if posemb.ndim == 3 and posemb.shape[1] == target[0] * target[1]:
        return tree
    n = posemb.shape[-2] if posemb.ndim >= 2 else 0
    side = int(round(n**0.5))
    source = f"a {side}x{side} grid" if side * side == n else "a non-square grid"
    need = (
        f"image_size {height}x{width} with patch {patch_size} needs a {target[0]}x{target[1]} "
        f"grid ({target[0] * target[1]} positions)"
    )
    if side * side != n or posemb.ndim != 3:
        raise ValueError(
            f"img/pos_embedding {tuple(posemb.shape)} ({source}) does not fit: {need}; only "
            "square checkpoint grids can be resized."
        )
    if posemb_resize is None:
        raise ValueError(
            f"The checkpoint's position embedding is {source} ({n} positions), but {need}. "
            "Pass posemb_resize='big_vision' (big_vision's load-time linear zoom, square "
            "grids) or posemb_resize='transformers' (transformers' bicubic "
            "interpolate_pos_encoding) to resize it, or use "
            f"image_size={side * patch_size}."
        )
    tree = dict(tree)
    tree["img/pos_embedding"] = resize_position_embedding(posemb, side, target, posemb_resize)
    return tree


def load_big_vision(
    path_or_tree, *, image_size=None, preset=None, posemb_resize=None, progress=None, **overrides
):
    """A big_vision checkpoint to a `SigLIP` model.

    Args:
        path_or_tree: a `.npz` path or a flat dict of `/`-joined names; with
            or without the `params/` prefix; per-block or scan-stacked
            blocks; bfloat16 stored as 2-byte void.
        image_size: int or `(H, W)`: the input size, which the position
            table alone cannot tell for non-square grids.
        preset: a preset name whose architecture to build (checked against
            the tensor shapes).
        posemb_resize: None, `"big_vision"` or `"transformers"`. When the
            checkpoint's (square) position grid differs from the grid of
            `image_size` (or of the preset), resize the table with
            big_vision's load-time linear zoom (square targets) or
            transformers' bicubic `interpolate_pos_encoding`
            (docs/checkpoints.md).
            None raises an error on a mismatch.
        progress: optional tqdm-like callable shown over the tensors.
        **overrides: with `preset`, architecture arguments that replace the
            preset's.

    Returns:
        A `SigLIP` model with the checkpoint's weights.

    Raises:
        ValueError: the file is unreadable, or its tensors do not fit the
            architecture (every missing, unexpected and misshapen tensor is
            listed in the one error).
    """
    if image_size is not None:
        image_size = check_size("image_size", image_size, where="load_big_vision")
    tree = read_tree(path_or_tree)
    if preset is not None:
        if image_size is not None:
            raise ValueError("Pass either preset (with overrides) or image_size, not both.")
        _check_posemb_resize(posemb_resize)
        model = SigLIP.from_preset(preset, load_weights=False, **overrides)
        vision = model.vision_encoder
        if not isinstance(vision, SigLIPNaFlexVisionEncoder):  # NaFlex resizes per image
            tree = fit_position_embedding(tree, vision.image_size, vision.patch_size, posemb_resize)
        return assign_tree(model, tree, progress)
    if overrides:
        raise ValueError(
            f"load_big_vision: unknown argument(s) {sorted(overrides)}. Architecture overrides "
            "go with preset=NAME (otherwise the architecture is inferred from the tensor shapes, "
            "and only image_size and posemb_resize apply)."
        )
    naflex, vision_kwargs, text_kwargs = infer_architecture(tree, image_size)
    _check_posemb_resize(posemb_resize)
    if not naflex:  # NaFlex resizes its table per image
        tree = fit_position_embedding(
            tree, vision_kwargs["image_size"], vision_kwargs["patch_size"], posemb_resize
        )
    return assign_tree(build_model(naflex, vision_kwargs, text_kwargs), tree, progress)


def save_big_vision(model, path, progress=None, *, overwrite=False, sources=()):
    """Write the model as a big_vision `.npz` (bare names, per-block, float32).

    The file appears only when complete: it is written to a temporary file in
    the same folder and renamed. An existing file is refused unless
    `overwrite=True`, and even then only a `.npz` (zip) file is replaced, never
    a folder or one of `sources` (the paths the model was read from).
    """
    check_model("save_big_vision", model, SigLIP, "a SigLIP (both towers)")
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise ValueError(
            f"big_vision checkpoints are .npz files; received {path}. Name the output "
            f"{path.with_suffix('.npz').name}."
        )
    check_destination(path, overwrite, folder=False, sources=sources)
    tree = model_to_tree(model, progress)
    with atomic_output(path, overwrite=overwrite, sources=sources) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **tree)
    return path
