"""Presets for every released SigLIP and SigLIP 2 checkpoint, and where their weights live.

Weights cannot be downloaded by this library. Put the published file in the
cache folder (`$KERAS_SIGLIP_CACHE`, default `~/.cache/keras_siglip`) under
one of the names that `weights_candidates(name)` lists; `from_preset(name)`
finds it there.
"""

import os
from pathlib import Path

from keras_siglip import registry
from keras_siglip.architectures import PRESETS
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


def architecture_kwargs(name, **overrides):
    """Keyword arguments of the vision and text towers for a preset."""
    info = preset_info(name)
    unknown = set(overrides) - set(info)
    if unknown:
        raise ValueError(
            f"Unknown override(s) {sorted(unknown)} for preset {name!r}; valid keys: "
            f"{sorted(info)}."
        )
    info.update(overrides)
    vision, text = tower_kwargs(info)
    return info, vision, text


def build_from_preset(cls, preset, load_weights=True, **overrides):
    """Build preset `preset` (see `SigLIP.from_preset`), with its cached weights if asked."""
    info, vision_kwargs, text_kwargs = architecture_kwargs(preset, **overrides)
    if load_weights:
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
    vision = build_vision_tower(info["naflex"], vision_kwargs)
    return cls(vision, build_text_tower(text_kwargs), name=preset)


registry.register_preset_builder(list_presets, build_from_preset)
