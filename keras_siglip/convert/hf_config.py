"""transformers' `config.json` <-> the towers' keyword arguments, both ways.

The keys that name a tower dimension are paired once (`_VISION_KEYS`, `_TEXT_KEYS`); writing
a config reads them one way, building a model from one reads them the other.
"""

import logging
import math

from keras_siglip.architectures import VARIANTS
from keras_siglip.convert.names import towers
from keras_siglip.models import SigLIPNaFlexVisionEncoder

# config.json keys <-> tower keyword arguments, read both ways.
_VISION_KEYS = {"hidden_size": "width", "intermediate_size": "mlp_dim",
                "num_hidden_layers": "depth", "num_attention_heads": "num_heads"}
_TEXT_KEYS = {"vocab_size": "vocabulary_size", "hidden_size": "width",
              "intermediate_size": "mlp_dim", "num_hidden_layers": "depth",
              "num_attention_heads": "num_heads", "max_position_embeddings": "sequence_length"}
_COMMON = {"hidden_act": "gelu_pytorch_tanh", "attention_dropout": 0.0}


def _vision_config(naflex, kwargs):
    config = {
        "model_type": "siglip2_vision_model" if naflex else "siglip_vision_model",
        **{key: int(kwargs[arg]) for key, arg in _VISION_KEYS.items()},
        "patch_size": int(kwargs["patch_size"]),
        "num_channels": 3,
        "layer_norm_eps": kwargs.get("layer_norm_epsilon", 1e-6),
        "vision_use_head": True,
        **_COMMON,
    }
    if naflex:
        config["num_patches"] = int(kwargs["position_grid_size"]) ** 2
    else:
        (h, w), p = kwargs["image_size"], kwargs["patch_size"]
        if h // p != w // p:
            raise ValueError(
                f"transformers' SiglipVisionModel takes square images only; this model is "
                f"built for {h}x{w} ({h // p}x{w // p} patches of {p}). Save it with "
                "save_big_vision instead, or rebuild it for a square size."
            )
        config["image_size"] = int(h)
    return config


def _text_config(kwargs, family="siglip"):
    # Token ids are metadata only (the model never reads them): the Gemma vocabulary
    # (SigLIP 2) pads with 0 and ends with 1; the T5 vocabularies (SigLIP 1) use 1 for both.
    gemma = kwargs["vocabulary_size"] == 256_000
    return {
        "model_type": f"{family}_text_model",
        **{key: int(kwargs[arg]) for key, arg in _TEXT_KEYS.items()},
        "projection_size": int(kwargs.get("embed_dim") or kwargs["width"]),
        "layer_norm_eps": kwargs.get("layer_norm_epsilon", 1e-6),
        "pad_token_id": 0 if gemma else 1,
        "bos_token_id": 2 if gemma else None,
        "eos_token_id": 1,
        **_COMMON,
    }


def config_from_kwargs(naflex, vision=None, text=None):
    """The `config.json` dict of a model (both towers) or of one tower, from tower kwargs.

    `vision` and `text` are keyword arguments as `infer_architecture` returns them. model_type
    is "siglip" (fixed resolution: SigLIP 1 and SigLIP 2) or, with a NaFlex image tower,
    "siglip2".
    """
    family, architecture = ("siglip2", "Siglip2") if naflex else ("siglip", "Siglip")
    if vision is not None and text is not None:
        return {
            "architectures": [f"{architecture}Model"],
            "model_type": family,
            "dtype": "float32",
            "initializer_factor": 1.0,
            "text_config": _text_config(text, family),
            "vision_config": _vision_config(naflex, vision),
        }
    if vision is not None:
        return {"architectures": [f"{architecture}VisionModel"], "dtype": "float32",
                **_vision_config(naflex, vision)}
    return {"architectures": ["SiglipTextModel"], "dtype": "float32", **_text_config(text)}


_TOWER_ATTRIBUTES = ("width", "depth", "mlp_dim", "num_heads", "layer_norm_epsilon")


def _tower_kwargs(tower, extra):
    return {key: getattr(tower, key) for key in _TOWER_ATTRIBUTES + extra}


def transformers_config(model):
    """The `config.json` dict of a `SigLIP` or a tower (see `config_from_kwargs`)."""
    vision, text = towers(model)
    naflex = isinstance(vision, SigLIPNaFlexVisionEncoder)
    if vision is not None:
        grid = ("position_grid_size",) if naflex else ("image_size",)
        vision = _tower_kwargs(vision, ("patch_size", *grid))
    if text is not None:
        text = _tower_kwargs(text, ("vocabulary_size", "sequence_length", "embed_dim"))
    return config_from_kwargs(naflex, vision, text)


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
MODEL_TYPES = {
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


def vision_kwargs(config, naflex):
    """The image tower's keyword arguments from a (vision) `config.json` dict."""
    config = {**_VISION_DEFAULTS, **config}
    _check_supported("vision_config", config)
    if not config["vision_use_head"]:
        raise ValueError(
            "vision_config.vision_use_head=False is not supported: the SigLIP image "
            "embedding is the MAP head output."
        )
    if int(config["num_channels"]) != 3:
        raise ValueError(f"vision_config.num_channels={config['num_channels']}; expected 3 (RGB).")
    kwargs = {arg: int(config[key]) for key, arg in _VISION_KEYS.items()}
    kwargs["patch_size"] = _single("vision_config.patch_size", config["patch_size"])
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


def text_kwargs(config):
    """The text tower's keyword arguments from a (text) `config.json` dict."""
    config = {**_TEXT_DEFAULTS, **config}
    _check_supported("text_config", config)
    kwargs = {arg: int(config[key]) for key, arg in _TEXT_KEYS.items()}
    projection = config["projection_size"]
    kwargs["embed_dim"] = kwargs["width"] if projection is None else int(projection)
    return kwargs


# Hyper-parameters that come from config.json alone: the tensor shapes cannot confirm them
# (a q/k/v weight is (W, W) for any number of heads; the position table fixes only the grid).
_UNCHECKED = {"vision": ("num_attention_heads", "image_size"), "text": ("num_attention_heads",)}
logger = logging.getLogger("keras_siglip.convert")


def _variant_heads(sub, defaults):
    """`(name, num_heads)` of the variant (`architectures.VARIANTS`) of this size, or None."""
    size = tuple(int(sub.get(key, defaults[key]))
                 for key in ("hidden_size", "num_hidden_layers", "intermediate_size"))
    for name, (width, depth, mlp_dim, num_heads) in VARIANTS.items():
        if (width, depth, mlp_dim) == size:
            return name, num_heads
    return None


def assumed_from_config(config, kind):
    """`(note, doubtful)`: the hyper-parameters taken on trust from a config, in words.

    `doubtful` lists head counts that differ from the variant of the same width, depth and MLP
    size, and values the file does not set (transformers' default was used) unless that
    variant confirms them.
    """
    parts, doubtful = [], []
    towers = ("vision", "text") if kind == "model" else (kind,)
    for tower in towers:
        sub = (config.get(f"{tower}_config") or {}) if kind == "model" else config
        defaults = _VISION_DEFAULTS if tower == "vision" else _TEXT_DEFAULTS
        items = []
        for key in _UNCHECKED[tower]:
            if key == "image_size" and "num_patches" in sub:
                continue  # NaFlex: any size
            value = sub.get(key, defaults[key])
            text = f"{key}={value}"
            confirmed = False
            if key == "num_attention_heads":
                width = sub.get("hidden_size", defaults["hidden_size"])
                text += f" (head dim {int(width) // max(int(value), 1)})"
                variant = _variant_heads(sub, defaults)
                confirmed = variant is not None and variant[1] == int(value)
                if variant is not None and not confirmed:
                    text += (f" [but the {variant[0]} variant of this width, depth and MLP "
                             f"size has {variant[1]} heads]")
                    doubtful.append(f"{tower} {key}")
            if key not in sub:
                text += " [not in config.json: transformers' default]"
                if not confirmed and f"{tower} {key}" not in doubtful:
                    doubtful.append(f"{tower} {key}")
            items.append(text)
        parts.append(f"{tower} " + ", ".join(items))
    return "; ".join(parts), doubtful


def report_assumed(config, kind, source):
    """Log what `assumed_from_config` finds: info, or a warning when a value is doubtful."""
    note, doubtful = assumed_from_config(config, kind)
    message = (
        f"{source}: taken from config.json, not checkable against the tensor shapes: {note}. "
        "If the outputs look wrong, compare these with the checkpoint's training config."
    )
    logger.log(logging.WARNING if doubtful else logging.INFO, message)
    return message
