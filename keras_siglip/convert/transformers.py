"""Hugging Face transformers checkpoints <-> the canonical big_vision tree.

One table, `_TABLE`, pairs every big_vision name with its transformers name
and a named transform; it is read in both directions (SPEC §10.3):

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

The Keras model is built from `config.json` (transformers' defaults fill what
the file leaves out) and the checkpoint's tensors are checked against it
before anything is assigned: every missing, unexpected or misshapen tensor is
reported, in transformers names, in one error.

No torch is needed to read or write folders: safetensors files are read and
written with the `safetensors` NumPy API.
"""

import json
import math
import re
from pathlib import Path

import numpy as np

from keras_siglip.convert.big_vision import (
    _maybe_progress,
    assign_tree,
    build_model,
    build_text_tower,
    build_vision_tower,
    model_to_tree,
    tree_entries,
)

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


def _patch_transform(ndim):
    # Fixed resolution: a conv (p, p, 3, W); NaFlex: a Linear on flattened patches (p*p*3, W).
    return _TRANSFORMS["conv" if ndim == 4 else "dense"]


# --------------------------------------------------------------------------------------
# The one mapping table. `{i}` is a block index; a 4th entry is the slot of a tensor
# packed with others along axis 0 (the MAP head's q/k/v in nn.MultiheadAttention).

_ATTENTION = [
    ("MultiHeadDotProductAttention_0/{bv}/kernel", "{hf}.weight", "dense"),
    ("MultiHeadDotProductAttention_0/{bv}/bias", "{hf}.bias", "flat"),
]
_PROJECTIONS = {"query": "q_proj", "key": "k_proj", "value": "v_proj"}

_BLOCK = [
    ("LayerNorm_0/scale", "layer_norm1.weight", "same"),
    ("LayerNorm_0/bias", "layer_norm1.bias", "same"),
    ("LayerNorm_1/scale", "layer_norm2.weight", "same"),
    ("LayerNorm_1/bias", "layer_norm2.bias", "same"),
    *[
        (bv.format(bv=p), "self_attn." + hf.format(hf=q), t)
        for p, q in _PROJECTIONS.items()
        for bv, hf, t in _ATTENTION
    ],
    ("MultiHeadDotProductAttention_0/out/kernel", "self_attn.out_proj.weight", "heads_out"),
    ("MultiHeadDotProductAttention_0/out/bias", "self_attn.out_proj.bias", "same"),
    ("MlpBlock_0/Dense_0/kernel", "mlp.fc1.weight", "dense"),
    ("MlpBlock_0/Dense_0/bias", "mlp.fc1.bias", "same"),
    ("MlpBlock_0/Dense_1/kernel", "mlp.fc2.weight", "dense"),
    ("MlpBlock_0/Dense_1/bias", "mlp.fc2.bias", "same"),
]

_MAP_HEAD = "img/MAPHead_0/MultiHeadDotProductAttention_0"
_TABLE = [
    ("img/embedding/kernel", "vision_model.embeddings.patch_embedding.weight", "patch"),
    ("img/embedding/bias", "vision_model.embeddings.patch_embedding.bias", "same"),
    ("img/pos_embedding", "vision_model.embeddings.position_embedding.weight", "rows"),
    *[
        (f"img/Transformer/encoderblock_{{i}}/{bv}", f"vision_model.encoder.layers.{{i}}.{hf}", t)
        for bv, hf, t in _BLOCK
    ],
    ("img/Transformer/encoder_norm/scale", "vision_model.post_layernorm.weight", "same"),
    ("img/Transformer/encoder_norm/bias", "vision_model.post_layernorm.bias", "same"),
    ("img/MAPHead_0/probe", "vision_model.head.probe", "same"),
    *[
        (f"{_MAP_HEAD}/{p}/{leaf}", f"vision_model.head.attention.in_proj_{hf}", t, slot)
        for slot, p in enumerate(_PROJECTIONS)
        for leaf, hf, t in (("kernel", "weight", "dense"), ("bias", "bias", "flat"))
    ],
    (f"{_MAP_HEAD}/out/kernel", "vision_model.head.attention.out_proj.weight", "heads_out"),
    (f"{_MAP_HEAD}/out/bias", "vision_model.head.attention.out_proj.bias", "same"),
    ("img/MAPHead_0/LayerNorm_0/scale", "vision_model.head.layernorm.weight", "same"),
    ("img/MAPHead_0/LayerNorm_0/bias", "vision_model.head.layernorm.bias", "same"),
    ("img/MAPHead_0/MlpBlock_0/Dense_0/kernel", "vision_model.head.mlp.fc1.weight", "dense"),
    ("img/MAPHead_0/MlpBlock_0/Dense_0/bias", "vision_model.head.mlp.fc1.bias", "same"),
    ("img/MAPHead_0/MlpBlock_0/Dense_1/kernel", "vision_model.head.mlp.fc2.weight", "dense"),
    ("img/MAPHead_0/MlpBlock_0/Dense_1/bias", "vision_model.head.mlp.fc2.bias", "same"),
    ("txt/Embed_0/embedding", "text_model.embeddings.token_embedding.weight", "same"),
    ("txt/pos_embedding", "text_model.embeddings.position_embedding.weight", "rows"),
    *[
        (f"txt/Encoder_0/encoderblock_{{i}}/{bv}", f"text_model.encoder.layers.{{i}}.{hf}", t)
        for bv, hf, t in _BLOCK
    ],
    ("txt/Encoder_0/encoder_norm/scale", "text_model.final_layer_norm.weight", "same"),
    ("txt/Encoder_0/encoder_norm/bias", "text_model.final_layer_norm.bias", "same"),
    ("txt/head/kernel", "text_model.head.weight", "dense"),
    ("txt/head/bias", "text_model.head.bias", "same"),
    ("t", "logit_scale", "same"),
    ("b", "logit_bias", "same"),
]

_PACKED = 3  # q, k, v


def _compile(table):
    rows = []
    for bv, hf, transform, *slot in table:
        pattern = re.compile(re.escape(bv).replace(re.escape("{i}"), r"(\d+)") + "$")
        rows.append((pattern, hf, transform, slot[0] if slot else None))
    return rows


_ROWS = _compile(_TABLE)


def transformers_name(bv_name, shape):
    """`(transformers name, transform, packed slot or None)` for a big_vision tensor."""
    for pattern, hf, transform, slot in _ROWS:
        match = pattern.match(bv_name)
        if match:
            hf = hf.replace("{i}", match.group(1)) if match.groups() else hf
            t = _patch_transform(len(shape)) if transform == "patch" else _TRANSFORMS[transform]
            return hf, t, slot
    raise KeyError(f"No transformers name for the big_vision tensor {bv_name!r}.")


def _layout(model):
    """`{transformers name: (shape, [(big_vision name, bv shape, transform, slot)])}`."""
    layout = {}
    for bv_name, var in tree_entries(model):
        shape = tuple(var.shape)
        hf, transform, slot = transformers_name(bv_name, shape)
        hf_shape = transform.hf_shape(shape)
        if slot is not None:
            hf_shape = (hf_shape[0] * _PACKED, *hf_shape[1:])
        layout.setdefault(hf, (hf_shape, []))[1].append((bv_name, shape, transform, slot))
    return layout


# --------------------------------------------------------------------------------------
# Keras -> transformers.


def tree_to_state_dict(tree, text_width=None):
    """A big_vision tree as a transformers state dict of float32 arrays (one table, `transformers_name`).

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
    text = _text_tower(model)
    text_width = text.width if text is not None and text.head is None else None
    return tree_to_state_dict(model_to_tree(model, progress), text_width)


def _text_tower(model):
    if hasattr(model, "text_encoder"):
        return model.text_encoder
    return model if hasattr(model, "token_embedding") else None


def _vision_tower(model):
    if hasattr(model, "vision_encoder"):
        return model.vision_encoder
    return None if hasattr(model, "token_embedding") else model


def _is_naflex(vision):
    return bool(getattr(vision, "is_naflex", False))


def _vision_config(vision):
    naflex = _is_naflex(vision)
    config = {
        "model_type": "siglip2_vision_model" if naflex else "siglip_vision_model",
        "hidden_size": vision.width,
        "intermediate_size": vision.mlp_dim,
        "num_hidden_layers": vision.depth,
        "num_attention_heads": vision.num_heads,
        "num_channels": 3,
        "patch_size": vision.patch_size,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": vision.layer_norm_epsilon,
        "attention_dropout": 0.0,
        "vision_use_head": True,
    }
    if naflex:
        grid = tuple(vision.position_embedding.embeddings.shape[:2])
        if grid[0] != grid[1]:
            raise ValueError(
                f"transformers' Siglip2 position table is square; this model's is {grid}."
            )
        config["num_patches"] = grid[0] * grid[1]
    else:
        (h, w), p = vision.image_size, vision.patch_size
        if h // p != w // p:
            raise ValueError(
                f"transformers' SiglipVisionModel takes square images only; this model is "
                f"built for {h}x{w} ({h // p}x{w // p} patches of {p}). Save it with "
                "save_big_vision instead, or rebuild it for a square size."
            )
        config["image_size"] = h
    return config


def _text_config(text):
    # Token ids are metadata only (the model never reads them): the Gemma vocabulary
    # (SigLIP 2) pads with 0 and ends with 1; the T5 vocabularies (SigLIP 1) use 1 for both.
    gemma = text.vocabulary_size == 256_000
    return {
        "model_type": "siglip_text_model",
        "vocab_size": text.vocabulary_size,
        "hidden_size": text.width,
        "intermediate_size": text.mlp_dim,
        "num_hidden_layers": text.depth,
        "num_attention_heads": text.num_heads,
        "max_position_embeddings": text.sequence_length,
        "projection_size": text.embed_dim,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": text.layer_norm_epsilon,
        "attention_dropout": 0.0,
        "pad_token_id": 0 if gemma else 1,
        "bos_token_id": 2 if gemma else None,
        "eos_token_id": 1,
    }


def transformers_config(model):
    """The `config.json` dict of a `SigLIP` or a tower.

    model_type is "siglip" (fixed resolution: SigLIP 1 and SigLIP 2) or, with a
    NaFlex image tower, "siglip2".
    """
    vision, text = _vision_tower(model), _text_tower(model)
    naflex = vision is not None and _is_naflex(vision)
    family = "siglip2" if naflex else "siglip"
    architecture = "Siglip2" if naflex else "Siglip"
    if vision is not None and text is not None:
        text_config = _text_config(text)
        text_config["model_type"] = f"{family}_text_model"
        return {
            "architectures": [f"{architecture}Model"],
            "model_type": family,
            "dtype": "float32",
            "initializer_factor": 1.0,
            "text_config": text_config,
            "vision_config": _vision_config(vision),
        }
    if vision is not None:
        return {"architectures": [f"{architecture}VisionModel"], "dtype": "float32",
                **_vision_config(vision)}
    return {"architectures": ["SiglipTextModel"], "dtype": "float32", **_text_config(text)}


def checkpoint_state_dict(model, progress=None):
    """The state dict of the transformers model `transformers_config(model)` describes.

    `model_to_state_dict`, except that a lone tower's names lose their
    `vision_model.` / `text_model.` prefix (transformers v5 tower checkpoints).
    """
    state = model_to_state_dict(model, progress)
    if _vision_tower(model) is not None and _text_tower(model) is not None:
        return state
    prefix = "text_model." if _vision_tower(model) is None else "vision_model."
    return {name[len(prefix):]: value for name, value in state.items()}


def save_transformers(model, folder, *, overwrite=False, progress=None):
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
        overwrite: bool. Replace an existing non-empty folder (as a whole).
        progress: optional tqdm-like callable shown over the tensors.

    Returns:
        The folder as a `Path`.
    """
    from safetensors.numpy import save_file

    from keras_siglip.convert._files import atomic_output, check_destination

    folder = Path(folder)
    check_destination(folder, overwrite)
    config = transformers_config(model)
    state = checkpoint_state_dict(model, progress)
    with atomic_output(folder, overwrite=overwrite, folder=True) as tmp:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    return folder


# --------------------------------------------------------------------------------------
# transformers -> Keras.

# transformers' config defaults (SiglipVisionConfig, SiglipTextConfig, Siglip2VisionConfig):
# hub config.json files often list only the values that differ from these.
_VISION_DEFAULTS = {
    "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 16,
    "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "vision_use_head": True,
    "num_patches": 256,
}
_TEXT_DEFAULTS = {
    "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 64, "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6, "projection_size": None,
}
# model_type -> (what the checkpoint holds, NaFlex vision tower)
_MODEL_TYPES = {
    "siglip": ("model", False),
    "siglip2": ("model", True),
    "siglip_vision_model": ("vision", False),
    "siglip2_vision_model": ("vision", True),
    "siglip_text_model": ("text", False),
    "siglip2_text_model": ("text", False),
}


def _single(name, value):
    """An int from an int or a square `[n, n]` (transformers allows both for sizes)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise ValueError(f"Unsupported {name}={value}: only square sizes are supported.")
        value = value[0]
    return int(value)


def _check_supported(where, config):
    act, eps = config["hidden_act"], float(config["layer_norm_eps"])
    if act != "gelu_pytorch_tanh":
        raise ValueError(
            f"{where}.hidden_act={act!r} is not supported: SigLIP uses the tanh GELU "
            "('gelu_pytorch_tanh') and keras-siglip implements only that."
        )
    if abs(eps - 1e-6) > 1e-12:
        raise ValueError(
            f"{where}.layer_norm_eps={eps:g} is not supported: SigLIP uses 1e-6 in every "
            "LayerNorm and keras-siglip implements only that."
        )


def _vision_kwargs(config, naflex):
    config = {**_VISION_DEFAULTS, **config}
    _check_supported("vision_config", config)
    if not config["vision_use_head"]:
        raise ValueError(
            "vision_config.vision_use_head=False is not supported: the SigLIP image "
            "embedding is the MAP head output."
        )
    if int(config["num_channels"]) != 3:
        raise ValueError(f"vision_config.num_channels={config['num_channels']}; expected 3 (RGB).")
    kwargs = {
        "patch_size": _single("vision_config.patch_size", config["patch_size"]),
        "width": int(config["hidden_size"]),
        "depth": int(config["num_hidden_layers"]),
        "mlp_dim": int(config["intermediate_size"]),
        "num_heads": int(config["num_attention_heads"]),
    }
    if naflex:
        n = int(config["num_patches"])
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"vision_config.num_patches={n} is not a square position table.")
        kwargs["position_grid_size"] = side
    else:
        size = _single("vision_config.image_size", config["image_size"])
        kwargs["image_size"] = (size, size)
    return kwargs


def _text_kwargs(config):
    config = {**_TEXT_DEFAULTS, **config}
    _check_supported("text_config", config)
    width = int(config["hidden_size"])
    projection = config["projection_size"]
    return {
        "vocabulary_size": int(config["vocab_size"]),
        "sequence_length": int(config["max_position_embeddings"]),
        "width": width,
        "depth": int(config["num_hidden_layers"]),
        "mlp_dim": int(config["intermediate_size"]),
        "num_heads": int(config["num_attention_heads"]),
        "embed_dim": width if projection is None else int(projection),
    }


def _read_config(path):
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a readable config.json ({error}).") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a transformers config (not a JSON object).")
    return config


def _to_float32(name, array):
    if array.dtype.kind != "f":
        raise ValueError(f"Tensor {name!r} has dtype {array.dtype}; expected floating point.")
    return np.asarray(array, dtype=np.float32)


def _read_safetensors(file, names=None):
    try:
        import ml_dtypes  # noqa: F401  (registers numpy's bfloat16 for BF16 tensors)
    except ImportError:
        pass
    from safetensors import safe_open

    state = {}
    try:
        with safe_open(str(file), framework="np") as f:
            for name in f.keys() if names is None else names:
                if name.endswith("position_ids"):
                    continue  # a buffer, not a parameter (persistent in some v4 files)
                state[name] = _to_float32(name, f.get_tensor(name))
    except (OSError, TypeError) as error:
        hint = " (install ml_dtypes to read bfloat16 tensors)" if "bfloat16" in str(error) else ""
        raise ValueError(f"Cannot read {file}: {error}{hint}.") from error
    except Exception as error:  # safetensors' own error type: truncated or corrupt file
        if type(error).__name__ != "SafetensorError":
            raise
        raise ValueError(
            f"{file} is not a readable safetensors file ({error}); it may be truncated or corrupt."
        ) from error
    return state


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
        shards = {}
        for name, file in weight_map.items():
            shards.setdefault(file, []).append(name)
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
    for file, names in shards.items():
        if not (folder / file).is_file():
            raise FileNotFoundError(f"The shard {file} listed in {index} is missing.")
        state.update(_read_safetensors(folder / file, names))
    return config, state, str(folder)


def _read_model_object(model):
    config = model.config.to_dict()
    state = {
        name: _to_float32(name, tensor.detach().to("cpu").float().numpy())
        for name, tensor in model.state_dict().items()
        if not name.endswith("position_ids")
    }
    return config, state, type(model).__name__


def _describe(model):
    parts = []
    vision, text = _vision_tower(model), _text_tower(model)
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


def _check_state(model, state, source):
    """Compare a state dict with the model; report every problem in one error."""
    layout = _layout(model)
    expected = {name: shape for name, (shape, _) in layout.items()}

    def label(name):
        sources = [bv for bv, *_ in layout[name][1]] if name in layout else []
        return f"  [big_vision {', '.join(sources)}]" if sources else ""

    missing = [f"{n} {expected[n]}{label(n)}" for n in expected if n not in state]
    unexpected = [f"{n} {tuple(state[n].shape)}" for n in state if n not in expected]
    misshapen = [
        f"{n}: checkpoint {tuple(state[n].shape)}, config.json implies {expected[n]}{label(n)}"
        for n in expected
        if n in state and tuple(state[n].shape) != tuple(expected[n])
    ]
    if missing or unexpected or misshapen:
        lines = [
            f"The transformers checkpoint {source} does not fit the architecture its config "
            f"describes ({_describe(model)})."
        ]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("misshapen", misshapen)):
            if items:
                lines.append(f"{len(items)} {title} tensor(s):")
                lines += [f"  {item}" for item in items]
        raise ValueError("\n".join(lines))


def _state_to_tree(model, state, progress):
    tree = {}
    for hf, (_, sources) in _maybe_progress(_layout(model).items(), progress, "convert"):
        value = state[hf]
        for bv_name, shape, transform, slot in sources:
            part = value
            if slot is not None:
                rows = value.shape[0] // _PACKED
                part = value[slot * rows:(slot + 1) * rows]
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
    else:
        config, state, source = _read_folder(path_or_model)
    model_type = config.get("model_type")
    if model_type not in _MODEL_TYPES:
        raise ValueError(
            f"Unsupported transformers model_type {model_type!r} in {source}; supported: "
            f"{', '.join(_MODEL_TYPES)}."
        )
    kind, naflex = _MODEL_TYPES[model_type]
    if kind != "model":
        # Tower checkpoints: v5 has no prefix, v4 nests the tower under it.
        prefix = f"{kind}_model."
        state = {name if name.startswith(prefix) else prefix + name: v for name, v in state.items()}

    if kind in ("model", "text"):
        text_kwargs = _text_kwargs(config.get("text_config") or {} if kind == "model" else config)
        if text_kwargs["embed_dim"] == text_kwargs["width"] and _is_identity_head(state):
            text_kwargs.update(embed_dim=None, use_head=False)
            del state["text_model.head.weight"], state["text_model.head.bias"]
    if kind in ("model", "vision"):
        vision_kwargs = _vision_kwargs(
            config.get("vision_config") or {} if kind == "model" else config, naflex
        )

    if kind == "model":
        model = build_model(naflex, vision_kwargs, text_kwargs)
    elif kind == "vision":
        model = build_vision_tower(naflex, vision_kwargs)
    else:
        model = build_text_tower(text_kwargs)
    _check_state(model, state, source)
    return assign_tree(model, _state_to_tree(model, state, progress))
