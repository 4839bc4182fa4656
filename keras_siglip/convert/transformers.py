"""Hugging Face transformers checkpoints <-> the canonical big_vision tree (docs/checkpoints.md).

The names are paired in `keras_siglip.convert.names`; each pair names one of the transforms
below, read in both directions:

    big_vision (= Keras)                transformers                       big_vision -> hf
    Dense kernel (in, out)              Linear weight (out, in)            .T
    attention q/k/v kernel (W, H, hd)   Linear weight (H*hd, W)            reshape(W, W).T
    attention out kernel (H, hd, W)     Linear weight (W, H*hd)            reshape(W, W).T
    attention q/k/v bias (H, hd)        (H*hd,)                            reshape(-1)
    conv kernel (p, p, 3, W)            Conv2d weight (W, 3, p, p)         transpose(3, 2, 0, 1)
    NaFlex patch kernel (p*p*3, W)      Linear weight (W, p*p*3)           .T
    pos_embedding (1, N, W), (G, G, W)  Embedding weight (N, W), (G*G, W)  reshape(-1, W)
    MAP head query, key, value          in_proj_weight (3W, W), _bias      rows [q; k; v]
    no txt/head (So400m/16-i18n)        text_model.head                    eye(Wt), zeros

The Keras model is built from `config.json` (transformers' defaults fill what the file leaves
out) and the checkpoint's tensors are checked against it before anything is assigned: every
missing, unexpected or misshapen tensor is reported, in transformers names, in one error.

No torch is needed to read or write folders: safetensors files are read and written with the
`safetensors` NumPy API.
"""

import json
import math
import os
from pathlib import Path

import numpy as np

from keras_siglip.builders import build_model, build_text_tower, build_vision_tower
from keras_siglip.convert import hf_config, names
from keras_siglip.convert.big_vision import assign_tree, model_to_tree
from keras_siglip.convert.hf_config import MODEL_TYPES, transformers_config
from keras_siglip.convert.io import (
    atomic_output,
    check_destination,
    check_fit,
    check_model,
    packed_rows,
    read_safetensors,
    to_float32,
    track,
)
from keras_siglip.models import SigLIP, Tower

# --------------------------------------------------------------------------------------
# Per-tensor transforms: big_vision layout -> transformers layout, and back to a shape.


class _Transform:
    def __init__(self, to_hf, from_hf, hf_shape):
        self.to_hf = to_hf  # big_vision array -> transformers array
        self.from_hf = from_hf  # (transformers array, big_vision shape) -> big_vision array
        self.hf_shape = hf_shape  # big_vision shape -> transformers shape


def _linear(in_axes):
    """A flax kernel with `in_axes` input axes <-> a torch `Linear.weight` `(out, in)`."""

    def size(shape):
        return math.prod(shape[:in_axes]), math.prod(shape[in_axes:])

    return _Transform(
        to_hf=lambda x: x.reshape(size(x.shape)).T,
        from_hf=lambda y, shape: y.T.reshape(shape),
        hf_shape=lambda shape: size(shape)[::-1],
    )


_TRANSFORMS = {
    "same": _Transform(lambda x: x, lambda y, shape: y.reshape(shape), tuple),
    "flat": _Transform(
        lambda x: x.reshape(-1), lambda y, shape: y.reshape(shape), lambda s: (math.prod(s),)
    ),
    "rows": _Transform(
        lambda x: x.reshape(-1, x.shape[-1]),
        lambda y, shape: y.reshape(shape),
        lambda s: (math.prod(s[:-1]), s[-1]),
    ),
    "dense": _linear(1),  # (in, out); also the NaFlex patch kernel and q/k/v (W, H, hd)
    "heads_out": _linear(2),  # (H, hd, W)
    "conv": _Transform(
        lambda x: x.transpose(3, 2, 0, 1),
        lambda y, shape: y.transpose(2, 3, 1, 0).reshape(shape),
        lambda s: (s[3], s[2], s[0], s[1]),
    ),
}


_PACKED = len(names.PACKED)


def transformers_name(bv_name, shape):
    """`(transformers name, transform, packed slot or None)` for a big_vision tensor."""
    row = names.lookup(bv_name, len(shape))
    return row.hf, _TRANSFORMS[row.transform], row.slot


def _layout(model):
    """`{transformers name: (shape, [(big_vision name, bv shape, transform, slot)])}`."""
    layout = {}
    for row, var in names.model_parameters(model):
        shape = tuple(var.shape)
        transform = _TRANSFORMS[row.transform]
        hf_shape = tuple(transform.hf_shape(shape))
        if row.slot is not None:
            hf_shape = (hf_shape[0] * _PACKED, *hf_shape[1:])
        layout.setdefault(row.hf, (hf_shape, []))[1].append((row.name, shape, transform, row.slot))
    return layout


# --------------------------------------------------------------------------------------
# Keras -> transformers.


def tree_to_state_dict(tree, text_width=None):
    """A big_vision tree as a transformers state dict of float32 arrays.

    The MAP head's q, k, v are packed into `in_proj_weight` / `in_proj_bias` in
    that order. A tree without `txt/head` gets the identity head transformers
    needs (`eye(text_width)`, zeros) when `text_width` is given.
    """
    state, packed = {}, {}
    for bv_name, value in tree.items():
        value = np.asarray(value, np.float32)
        hf, transform, slot = transformers_name(bv_name, value.shape)
        array = np.ascontiguousarray(transform.to_hf(value), dtype=np.float32)
        if slot is None:
            state[hf] = array
        else:
            packed.setdefault(hf, {})[slot] = array
    for hf, parts in packed.items():
        state[hf] = np.concatenate([parts[slot] for slot in range(_PACKED)], axis=0)
    if "txt/head/kernel" not in tree and text_width is not None:
        # big_vision's So400m/16-i18n has no txt/head; transformers always has one.
        state["text_model.head.weight"] = np.eye(text_width, dtype=np.float32)
        state["text_model.head.bias"] = np.zeros((text_width,), np.float32)
    return state


def model_to_state_dict(model, progress=None):
    """The weights of a `SigLIP` (or a tower) as a transformers state dict of float32 arrays.

    Names carry the `vision_model.` / `text_model.` prefix of `SiglipModel`;
    `save_transformers` strips it for tower checkpoints. A model without a
    text head gets the identity head that transformers needs (`eye`, zeros).
    """
    _, text = names.towers(model)
    text_width = text.width if text is not None and text.head is None else None
    return tree_to_state_dict(model_to_tree(model, progress), text_width)


def checkpoint_state_dict(model, progress=None):
    """The state dict of the transformers model `transformers_config(model)` describes.

    `model_to_state_dict`, except that a lone tower's names lose their
    `vision_model.` / `text_model.` prefix (transformers v5 tower checkpoints).
    """
    state = model_to_state_dict(model, progress)
    vision, text = names.towers(model)
    if vision is not None and text is not None:
        return state
    prefix = "text_model." if vision is None else "vision_model."
    return {name[len(prefix):]: value for name, value in state.items()}


def save_transformers(model, folder, *, overwrite=False, progress=None, sources=(),
                      processor=None):
    """Write a model as a transformers checkpoint folder (`config.json` + `model.safetensors`).

    `transformers.SiglipModel.from_pretrained(folder)` (or `Siglip2Model` for a
    NaFlex model) loads it and gives the same outputs. A lone tower is written
    as a `SiglipVisionModel` / `Siglip2VisionModel` / `SiglipTextModel` with the
    un-prefixed keys of transformers v5.

    Args:
        model: a `SigLIP`, `SigLIPVisionEncoder`, `SigLIPNaFlexVisionEncoder`
            or `SigLIPTextEncoder`. Fixed-resolution images must give a
            square patch grid (transformers' `SiglipVisionConfig` is square).
        folder: destination folder. It is written under a temporary name in
            the same parent and renamed when complete: a failure leaves
            nothing there.
        overwrite: bool. Replace an existing checkpoint folder (as a whole). Only a
            folder holding nothing but the files a transformers checkpoint has
            (`config.json`, safetensors files and their index, tokenizer and
            preprocessor files) is replaced; a folder with any other file is
            refused, with or without `overwrite`, naming the files in the way.
        progress: optional tqdm-like callable shown over the tensors.
        sources: paths the model was read from; a destination that is or
            contains one is refused.
        processor: optional `keras_siglip.processor.SigLIPProcessor` of the model:
            its tokenizer and image-processor files are written too, so that
            transformers' `AutoProcessor.from_pretrained(folder)` loads it.

    Returns:
        The folder as a `Path`.
    """
    from safetensors.numpy import save_file

    check_model("save_transformers", model, (SigLIP, Tower), "a SigLIP or one of its towers")
    folder = Path(folder)
    check_destination(folder, overwrite, folder=True, sources=sources)
    config = transformers_config(model)
    # The processor's files first: a processor transformers cannot express fails before work.
    extra = processor.transformers_files() if processor is not None else {}
    state = checkpoint_state_dict(model, progress)
    with atomic_output(folder, overwrite=overwrite, folder=True, sources=sources) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for name, data in extra.items():
            (tmp / name).write_bytes(data)
    return folder


# --------------------------------------------------------------------------------------
# transformers -> Keras.

def _read_config(path):
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable config.json ({error}).") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a transformers config (not a JSON object).")
    return config


def _shard_name(index, file):
    """A shard file named by an index: a plain file name inside the checkpoint folder."""
    if not isinstance(file, str) or not file or Path(file).is_absolute() or "/" in file \
            or "\\" in file or file in (".", ".."):
        raise ValueError(
            f"{index} lists the shard {file!r}, which is not a file name inside "
            f"{index.parent}: shards must sit beside the index (absolute paths and '..' are "
            "refused, so that a checkpoint cannot read files elsewhere). Fix the index's "
            "weight_map, or re-save the checkpoint with save_pretrained."
        )
    return file


def _read_folder(folder):
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"No transformers checkpoint at {folder}: config.json is missing.")
    config = _read_config(folder / "config.json")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{index} is not a readable safetensors index ({error}).") from error
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index} is not a readable safetensors index (weight_map is not "
                             "an object).")
        shards = {}
        for name, file in weight_map.items():
            shards.setdefault(_shard_name(index, file), []).append(name)
    elif (folder / "model.safetensors").is_file():
        shards = {"model.safetensors": None}
    else:
        other = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".h5", ".msgpack")]
        raise FileNotFoundError(
            f"No model.safetensors (or model.safetensors.index.json) in {folder}"
            + (f"; found {other}: re-save it with safetensors (save_pretrained does)." if other
               else ".")
        )
    state = {}
    for file, members in shards.items():
        if not (folder / file).is_file():
            raise FileNotFoundError(f"The shard {file} listed in {index} is missing.")
        state.update(read_safetensors(folder / file, members))
    return config, state, str(folder)


def _read_model_object(model):
    config = model.config.to_dict()
    state = {
        name: to_float32(name, tensor.detach().to("cpu").float().numpy())
        for name, tensor in model.state_dict().items()
        if not name.endswith("position_ids")
    }
    return config, state, type(model).__name__


def _describe(model):
    parts = []
    vision, text = names.towers(model)
    if vision is not None:
        parts.append(
            f"vision {vision.depth} blocks, width {vision.width}, mlp {vision.mlp_dim}, "
            f"{vision.num_heads} heads, patch {vision.patch_size}"
        )
    if text is not None:
        parts.append(
            f"text {text.depth} blocks, width {text.width}, mlp {text.mlp_dim}, "
            f"{text.num_heads} heads, vocab {text.vocabulary_size}, length "
            f"{text.sequence_length}, embed {text.embed_dim}"
        )
    return "; ".join(parts)


def _check_state(model, state, source, layout):
    """Compare a state dict with the model; report every problem in one error."""

    def note(name):
        return f"  [big_vision {', '.join(bv for bv, *_ in layout[name][1])}]"

    check_fit(
        {name: shape for name, (shape, _) in layout.items()},
        {name: value.shape for name, value in state.items()},
        f"The transformers checkpoint {source} does not fit the architecture its config "
        f"describes ({_describe(model)}).",
        expects="config.json implies",
        note=note,
    )


def _state_to_tree(layout, state, progress):
    tree = {}
    for hf, (_, sources) in track(layout.items(), progress, "convert"):
        value = state[hf]
        for bv_name, shape, transform, slot in sources:
            part = value if slot is None else packed_rows(value, slot, _PACKED)
            tree[bv_name] = np.ascontiguousarray(transform.from_hf(part, shape))
    return tree


def _is_identity_head(state):
    weight = state.get("text_model.head.weight")
    bias = state.get("text_model.head.bias")
    if weight is None or bias is None or weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
        return False
    return bool(np.array_equal(weight, np.eye(weight.shape[0])) and not np.any(bias))


def load_transformers(path_or_model, *, progress=None):
    """A transformers SigLIP checkpoint to the equivalent Keras model.

    Reads a folder (`config.json` + `model.safetensors`, or shards listed in
    `model.safetensors.index.json`; no torch needed) or takes an in-memory
    transformers model. The architecture comes from the config and is checked
    against every tensor's shape.

    | checkpoint (`model_type`)                     | returns                          |
    |-----------------------------------------------|----------------------------------|
    | `SiglipModel` ("siglip": SigLIP 1 and 2)      | `SigLIP`                         |
    | `Siglip2Model` ("siglip2": NaFlex)            | `SigLIP` with a NaFlex tower     |
    | `SiglipVisionModel`                           | `SigLIPVisionEncoder`            |
    | `Siglip2VisionModel`                          | `SigLIPNaFlexVisionEncoder`      |
    | `SiglipTextModel` / `Siglip2TextModel`        | `SigLIPTextEncoder`              |

    Tower keys may carry the `vision_model.` / `text_model.` prefix (v4) or
    not (v5). A text head that is exactly the identity (transformers' port of
    big_vision checkpoints without `txt/head`) becomes a tower without a
    head, as in big_vision.

    Args:
        path_or_model: a checkpoint folder, or a transformers model object.
        progress: optional tqdm-like callable shown over the tensors.

    Raises:
        ValueError: an unsupported configuration (`hidden_act` other than
            `gelu_pytorch_tanh`, `layer_norm_eps` other than 1e-6, no vision
            head), unreadable files, or tensors that do not fit the config
            (all listed in one error, in transformers names).
        FileNotFoundError: no `config.json` or safetensors file.
    """
    if hasattr(path_or_model, "state_dict") and hasattr(path_or_model, "config"):
        config, state, source = _read_model_object(path_or_model)
    elif isinstance(path_or_model, (str, os.PathLike)):
        config, state, source = _read_folder(path_or_model)
    else:
        raise TypeError(
            "load_transformers takes a checkpoint folder (str or path) or a transformers model; "
            f"received {type(path_or_model).__name__}."
        )
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"Unsupported transformers model_type {model_type!r} in {source}; supported: "
            f"{', '.join(MODEL_TYPES)}."
        )
    kind, naflex = MODEL_TYPES[model_type]
    if kind != "model":
        # Tower checkpoints: v5 has no prefix, v4 nests the tower under it.
        prefix = f"{kind}_model."
        state = {name if name.startswith(prefix) else prefix + name: v for name, v in state.items()}

    if kind in ("model", "text"):
        text_kwargs = hf_config.text_kwargs(
            config.get("text_config") or {} if kind == "model" else config
        )
        if text_kwargs["embed_dim"] == text_kwargs["width"] and _is_identity_head(state):
            text_kwargs.update(embed_dim=None, use_head=False)
            del state["text_model.head.weight"], state["text_model.head.bias"]
    if kind in ("model", "vision"):
        vision_kwargs = hf_config.vision_kwargs(
            config.get("vision_config") or {} if kind == "model" else config, naflex
        )

    if kind == "model":
        model = build_model(naflex, vision_kwargs, text_kwargs)
    elif kind == "vision":
        model = build_vision_tower(naflex, vision_kwargs)
    else:
        model = build_text_tower(text_kwargs)
    layout = _layout(model)
    _check_state(model, state, source, layout)
    hf_config.report_assumed(config, kind, source)
    return assign_tree(model, _state_to_tree(layout, state, progress))
