"""Towers and two-tower models from their keyword arguments.

The one place that turns a configuration (a preset row, the shapes of a checkpoint, a kit's
config) into Keras objects; presets, every checkpoint format, the test helpers and the
conformance kits build through it.
"""

from keras_siglip.architectures import decode_variant
from keras_siglip.models import (
    SigLIP,
    SigLIPNaFlexVisionEncoder,
    SigLIPTextEncoder,
    SigLIPVisionEncoder,
)


def build_vision_tower(naflex, vision_kwargs, name="vision_encoder"):
    """A `SigLIPVisionEncoder`, or a `SigLIPNaFlexVisionEncoder` when `naflex`."""
    cls = SigLIPNaFlexVisionEncoder if naflex else SigLIPVisionEncoder
    return cls(**vision_kwargs, name=name)


def build_text_tower(text_kwargs, name="text_encoder"):
    """A `SigLIPTextEncoder`."""
    return SigLIPTextEncoder(**text_kwargs, name=name)


def build_model(naflex, vision_kwargs, text_kwargs, name="siglip", cls=SigLIP):
    """An untrained two-tower model from tower kwargs (as `infer_architecture` returns them)."""
    return cls(
        build_vision_tower(naflex, vision_kwargs),
        build_text_tower(text_kwargs),
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
