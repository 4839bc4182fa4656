"""Towers and two-tower models from their keyword arguments.

The one place that turns a configuration (a preset row, the shapes of a checkpoint, a kit's
config) into Keras objects; presets, every checkpoint format, the test helpers and the
conformance kits build through it. Every configuration is checked first against the tower's
schema (`keras_siglip.arguments.check_tower_config`), so a bad value (a zero patch size, a
string image size, a bool depth, heads that do not divide the width) is refused with the same
message on every path and every backend.
"""

from keras_siglip.architectures import decode_variant
from keras_siglip.arguments import check_bool, check_tower_config
from keras_siglip.models import (
    SigLIP,
    SigLIPNaFlexVisionEncoder,
    SigLIPTextEncoder,
    SigLIPVisionEncoder,
)


def build_vision_tower(naflex, vision_kwargs, name="vision_encoder", where=None):
    """A `SigLIPVisionEncoder`, or a `SigLIPNaFlexVisionEncoder` when `naflex`.

    `where` (e.g. a preset name or a file) starts the message of a configuration error.
    """
    naflex = check_bool("naflex", naflex, where=where)
    kwargs = check_tower_config("naflex" if naflex else "vision", vision_kwargs, where)
    cls = SigLIPNaFlexVisionEncoder if naflex else SigLIPVisionEncoder
    return cls(**kwargs, name=name)


def build_text_tower(text_kwargs, name="text_encoder", where=None):
    """A `SigLIPTextEncoder`."""
    return SigLIPTextEncoder(**check_tower_config("text", text_kwargs, where), name=name)


def build_model(naflex, vision_kwargs, text_kwargs, name="siglip", cls=SigLIP, where=None):
    """An untrained two-tower model from tower kwargs (as `infer_architecture` returns them)."""
    return cls(
        build_vision_tower(naflex, vision_kwargs, where=where),
        build_text_tower(text_kwargs, where=where),
        name=name,
    )


def tower_kwargs(info):
    """`(vision_kwargs, text_kwargs)` of a preset row (`keras_siglip.architectures.PRESETS`)."""
    vision = {"patch_size": info["patch_size"], **decode_variant(info["image_variant"])}
    if info["naflex"]:
        vision["position_grid_size"] = info["position_grid_size"]
    else:
        vision["image_size"] = info["image_size"]
    text = {
        "vocabulary_size": info["vocabulary_size"],
        "sequence_length": info["sequence_length"],
        "embed_dim": info["embed_dim"] if info["text_head"] else None,
        "use_head": info["text_head"],
        **decode_variant(info["text_variant"]),
    }
    return vision, text
