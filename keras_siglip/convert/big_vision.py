"""The canonical parameter tree: big_vision's flat `/`-joined names.

Keras kernels use flax layouts, so every tensor copies without a transpose.
This module holds the one table between Keras variables and big_vision names
(`tree_entries`), the readers for real checkpoint files (`params/` prefix,
scan-stacked blocks, bfloat16 stored as 2-byte void) and the architecture
inference from tensor shapes.
"""

import os
import re
import tempfile
from pathlib import Path

import numpy as np

_BLOCK_LEAVES = {
    "LayerNorm_0/scale": ("layer_norm_1", "gamma"),
    "LayerNorm_0/bias": ("layer_norm_1", "beta"),
    "LayerNorm_1/scale": ("layer_norm_2", "gamma"),
    "LayerNorm_1/bias": ("layer_norm_2", "beta"),
    "MlpBlock_0/Dense_0/kernel": ("mlp.fc1", "kernel"),
    "MlpBlock_0/Dense_0/bias": ("mlp.fc1", "bias"),
    "MlpBlock_0/Dense_1/kernel": ("mlp.fc2", "kernel"),
    "MlpBlock_0/Dense_1/bias": ("mlp.fc2", "bias"),
}
for _proj in ("query", "key", "value", "out"):
    for _leaf in ("kernel", "bias"):
        _BLOCK_LEAVES[f"MultiHeadDotProductAttention_0/{_proj}/{_leaf}"] = (
            f"attention.{_proj}",
            _leaf,
        )

_MAP_LEAVES = {
    "LayerNorm_0/scale": ("layer_norm", "gamma"),
    "LayerNorm_0/bias": ("layer_norm", "beta"),
    **{k: v for k, v in _BLOCK_LEAVES.items() if not k.startswith("LayerNorm")},
}


def _get(obj, dotted):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _layer_entries(prefix, layer, leaves):
    for leaf, (path, attr) in leaves.items():
        yield f"{prefix}/{leaf}", getattr(_get(layer, path), attr)


def tree_entries(model):
    """`(big_vision name, Keras variable)` for every parameter of a `SigLIP` model.

    This is the only place where Keras attribute names meet big_vision names.
    """
    vision, text = model.vision_encoder, model.text_encoder
    entries = []
    if getattr(vision, "is_naflex", False):
        entries += [
            ("img/embedding/kernel", vision.patch_embedding.kernel),
            ("img/embedding/bias", vision.patch_embedding.bias),
            ("img/pos_embedding", vision.position_embedding.embeddings),
        ]
    else:
        entries += [
            ("img/embedding/kernel", vision.patch_embedding.conv.kernel),
            ("img/embedding/bias", vision.patch_embedding.conv.bias),
            ("img/pos_embedding", vision.position_embedding.embeddings),
        ]
    for i, block in enumerate(vision.blocks):
        entries += _layer_entries(f"img/Transformer/encoderblock_{i}", block, _BLOCK_LEAVES)
    entries += [
        ("img/Transformer/encoder_norm/scale", vision.encoder_norm.gamma),
        ("img/Transformer/encoder_norm/bias", vision.encoder_norm.beta),
        ("img/MAPHead_0/probe", vision.head.probe),
    ]
    entries += _layer_entries("img/MAPHead_0", vision.head, _MAP_LEAVES)
    entries += [
        ("txt/Embed_0/embedding", text.token_embedding.embeddings),
        ("txt/pos_embedding", text.position_embedding.embeddings),
    ]
    for i, block in enumerate(text.blocks):
        entries += _layer_entries(f"txt/Encoder_0/encoderblock_{i}", block, _BLOCK_LEAVES)
    entries += [
        ("txt/Encoder_0/encoder_norm/scale", text.encoder_norm.gamma),
        ("txt/Encoder_0/encoder_norm/bias", text.encoder_norm.beta),
    ]
    if text.head is not None:
        entries += [("txt/head/kernel", text.head.kernel), ("txt/head/bias", text.head.bias)]
    entries += [("t", model.logit_scale), ("b", model.logit_bias)]
    return entries


# --------------------------------------------------------------------------------------
# Reading checkpoint files.


def _bfloat16_to_float32(array):
    # bfloat16 is the top half of a float32: widen the bits, no library needed.
    bits = np.ascontiguousarray(array).view(np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32)


def _as_float_array(name, array):
    array = np.asarray(array)
    if array.dtype.kind == "V" and array.dtype.itemsize == 2:
        return _bfloat16_to_float32(array)
    if array.dtype.name == "bfloat16":
        return array.astype(np.float32)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"Tensor {name!r} has unsupported dtype {array.dtype}.")
    return array


_PREFIXES = ("params/", "opt/target/")
_SCAN = re.compile(r"^(.*)/encoderblock/(.*)$")


def read_tree(path_or_tree):
    """Read a big_vision checkpoint into a flat `{name: float ndarray}` in per-block form.

    Accepts a `.npz` path or a dict. Strips a leading `params/` or
    `opt/target/`, converts bfloat16 (2-byte void) to float32 and splits
    scan-stacked `.../encoderblock/<leaf>` tensors `(depth, ...)` into
    `.../encoderblock_{i}/<leaf>`.
    """
    if isinstance(path_or_tree, (str, os.PathLike)):
        path = Path(path_or_tree)
        if not path.exists():
            raise FileNotFoundError(f"No big_vision checkpoint at {path}.")
        try:
            with np.load(path, allow_pickle=False) as data:
                raw = {name: data[name] for name in data.files}
        except Exception as error:  # zipfile, pickle and format errors alike
            raise ValueError(
                f"{path} is not a readable big_vision .npz checkpoint ({error})."
            ) from error
    else:
        raw = dict(path_or_tree)
    tree = {}
    for name, value in raw.items():
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        if not (name.startswith(("img/", "txt/")) or name in ("t", "b")):
            continue  # optimizer state, step counters, fixtures' extra arrays
        value = _as_float_array(name, value)
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


def assign_tree(model, tree):
    """Copy a flat big_vision tree into `model`, checking every name and shape first.

    All missing, unexpected and misshapen tensors are reported in one error,
    and nothing is assigned unless everything fits.
    """
    entries = tree_entries(model)
    expected = {name: tuple(var.shape) for name, var in entries}
    missing = [f"{n} {expected[n]}" for n in expected if n not in tree]
    unexpected = [f"{n} {tuple(np.shape(tree[n]))}" for n in tree if n not in expected]
    misshapen = [
        f"{n}: checkpoint {tuple(np.shape(tree[n]))}, model expects {expected[n]}"
        for n in expected
        if n in tree and tuple(np.shape(tree[n])) != expected[n]
    ]
    if missing or unexpected or misshapen:
        lines = ["The checkpoint does not fit the model architecture."]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("misshapen", misshapen),
        ):
            if items:
                lines.append(f"{len(items)} {title} tensor(s):")
                lines += [f"  {item}" for item in items]
        raise ValueError("\n".join(lines))
    for name, var in entries:
        var.assign(np.asarray(tree[name], dtype=np.float32))
    return model


def model_to_tree(model):
    """The model's weights as a flat `{big_vision name: float32 ndarray}`."""
    import keras

    return {
        name: np.asarray(keras.ops.convert_to_numpy(var), dtype=np.float32)
        for name, var in tree_entries(model)
    }


def load_big_vision(path_or_tree, *, image_size=None, preset=None, **overrides):
    """A big_vision checkpoint to a `SigLIP` model.

    Args:
        path_or_tree: a `.npz` path or a flat dict of `/`-joined names; with
            or without the `params/` prefix; per-block or scan-stacked
            blocks; bfloat16 stored as 2-byte void.
        image_size: int or `(H, W)`: the input size, which the position
            table alone cannot tell for non-square grids.
        preset: a preset name whose architecture to build (checked against
            the tensor shapes).

    Returns:
        A `SigLIP` model with the checkpoint's weights.
    """
    from keras_siglip.models import SigLIP, SigLIPTextEncoder, SigLIPVisionEncoder

    tree = read_tree(path_or_tree)
    if preset is not None:
        model = SigLIP.from_preset(preset, load_weights=False, **overrides)
        if image_size is not None:
            raise ValueError("Pass either preset (with overrides) or image_size, not both.")
        return assign_tree(model, tree)
    if overrides:
        raise ValueError(f"Unknown arguments {sorted(overrides)} without a preset.")
    naflex, vision_kwargs, text_kwargs = infer_architecture(tree, image_size)
    if naflex:
        from keras_siglip.models import SigLIPNaFlexVisionEncoder

        vision = SigLIPNaFlexVisionEncoder(**vision_kwargs, name="vision_encoder")
    else:
        vision = SigLIPVisionEncoder(**vision_kwargs, name="vision_encoder")
    text = SigLIPTextEncoder(**text_kwargs, name="text_encoder")
    model = SigLIP(vision, text, name="siglip")
    return assign_tree(model, tree)


def save_big_vision(model, path):
    """Write the model as a big_vision `.npz` (bare names, per-block, float32).

    The file appears only when complete: it is written to a temporary file in
    the same folder and renamed.
    """
    tree = model_to_tree(model)
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"big_vision checkpoints are .npz files; received {path}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **tree)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
