"""Presets for every released SigLIP and SigLIP 2 checkpoint, and where their weights live.

Weights cannot be downloaded by this library. Put the published file in the
cache folder (`$KERAS_SIGLIP_CACHE`, default `~/.cache/keras_siglip`) under
one of the names that `weights_candidates(name)` lists; `from_preset(name)`
finds it there.
"""

import os
from pathlib import Path

from keras_siglip import arguments, registry
from keras_siglip.architectures import PRESETS, VARIANTS
from keras_siglip.builders import build_text_tower, build_vision_tower, tower_kwargs


def list_presets():
    """Names of every released checkpoint, in a stable order."""
    return list(PRESETS)


def preset_info(name):
    """The preset's description: architecture, resolution, tokenizer, upstream ids."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; valid presets: {', '.join(PRESETS)}.")
    return dict(PRESETS[name])


def cache_dir():
    """Folder where `from_preset(name)` looks for weights."""
    return Path(os.environ.get("KERAS_SIGLIP_CACHE", Path.home() / ".cache" / "keras_siglip"))


def weights_candidates(name):
    """Paths, in order, where the weights of preset `name` may be put."""
    info = preset_info(name)
    folder = cache_dir()
    return [
        folder / f"{name}.keras",
        folder / f"{name}.npz",
        folder / Path(info["big_vision_file"]).name,
        folder / name,  # a transformers folder (config.json + safetensors)
    ]


# What `from_preset(name, **overrides)` may change: the architecture of the row. The other keys
# describe the released checkpoint (its files, ids, tokenizer) and do not change the model.
OVERRIDABLE = (
    "image_variant", "text_variant", "patch_size", "image_size", "naflex", "position_grid_size",
    "max_num_patches", "sequence_length", "vocabulary_size", "embed_dim", "text_head",
)


def check_overrides(name, overrides):
    """The preset row of `name` with `overrides` applied, after checking them.

    Raises a `ValueError` for an unknown key, a key that only describes the preset, or a
    combination that does not make a model (`naflex=True` without `position_grid_size`,
    `image_size` on a NaFlex tower, ...); a `TypeError` for a value of the wrong type. The
    tower arguments themselves are checked again when the towers are built
    (`keras_siglip.arguments.check_tower_config`).
    """
    info = preset_info(name)
    where = f"preset {name!r}"
    unknown = sorted(set(overrides) - set(info), key=str)
    if unknown:
        raise ValueError(
            f"Unknown override(s) {unknown} for preset {name!r}; valid overrides: "
            f"{', '.join(OVERRIDABLE)}."
        )
    fixed = sorted(set(overrides) - set(OVERRIDABLE))
    if fixed:
        raise ValueError(
            f"{where}: {fixed} describe(s) the released checkpoint and cannot be overridden "
            f"(the model would not change); valid overrides: {', '.join(OVERRIDABLE)}."
        )
    for key in ("naflex", "text_head"):
        if key in overrides:
            arguments.check_bool(key, overrides[key], where=where)
    for key in ("image_variant", "text_variant"):
        if key in overrides and not isinstance(overrides[key], str):
            raise TypeError(
                f"{where}: {key} must be a variant name (str), one of {sorted(VARIANTS)}; "
                f"received {overrides[key]!r}."
            )
    naflex = bool(overrides.get("naflex", info["naflex"]))
    kind = "NaFlex" if info["naflex"] else "fixed-resolution"
    if naflex:
        if "image_size" in overrides:
            raise ValueError(
                f"{where}: image_size does not apply to a NaFlex tower (images keep their size; "
                "set max_num_patches for the budget and position_grid_size for the table), or "
                "pass naflex=False."
            )
        if overrides.get("position_grid_size", info["position_grid_size"]) is None:
            raise ValueError(
                f"{where} is a {kind} preset: naflex=True needs position_grid_size (the side of "
                "the learned position table; 16 in the released NaFlex checkpoints), e.g. "
                "naflex=True, position_grid_size=16."
            )
        budget = overrides.get("max_num_patches", info["max_num_patches"])
        arguments.check_int("max_num_patches", 256 if budget is None else budget, where=where)
    else:
        for key in ("position_grid_size", "max_num_patches"):
            if overrides.get(key) is not None:
                raise ValueError(
                    f"{where}: {key} applies to NaFlex towers only; this model has a "
                    f"fixed-resolution image tower (pass naflex=True for a NaFlex one)."
                )
        size = overrides.get("image_size", info["image_size"])
        if size is None or (isinstance(size, str) and size == "naflex"):
            raise ValueError(
                f"{where} is a {kind} preset: naflex=False needs image_size (an int or "
                "(height, width)), e.g. naflex=False, image_size=256."
            )
    info.update(overrides)
    info["naflex"] = naflex
    if not naflex:
        info["position_grid_size"] = info["max_num_patches"] = None
    elif info["max_num_patches"] is None:
        info["max_num_patches"] = 256
    return info


def architecture_kwargs(name, **overrides):
    """`(info, vision_kwargs, text_kwargs)` of a preset: its row with `overrides`, checked."""
    info = check_overrides(name, overrides)
    vision, text = tower_kwargs(info)
    where = f"preset {name!r}"
    vision = arguments.check_tower_config("naflex" if info["naflex"] else "vision", vision, where)
    text = arguments.check_tower_config("text", text, where)
    return info, vision, text


def build_from_preset(cls, preset, load_weights=True, **overrides):
    """Build preset `preset` (see `SigLIP.from_preset`), with its cached weights if asked."""
    info, vision_kwargs, text_kwargs = architecture_kwargs(preset, **overrides)
    if arguments.check_bool("load_weights", load_weights, where=f"preset {preset!r}"):
        for candidate in weights_candidates(preset):
            if candidate.exists():
                return registry.load_path(candidate, preset=preset, **overrides)
        places = "\n  ".join(str(p) for p in weights_candidates(preset))
        raise FileNotFoundError(
            f"No weights for preset {preset!r} in the cache folder {cache_dir()} (set "
            f"KERAS_SIGLIP_CACHE to change it). Download the big_vision checkpoint "
            f"{info['big_vision_file']} (or the transformers checkpoint "
            f"https://huggingface.co/{info['hf_id']}) and put it at one of:\n  {places}\n"
            "or pass load_weights=False for random weights."
        )
    where = f"preset {preset!r}"
    vision = build_vision_tower(info["naflex"], vision_kwargs, where=where)
    return cls(vision, build_text_tower(text_kwargs, where=where), name=preset)


registry.register_preset_builder(list_presets, build_from_preset)
