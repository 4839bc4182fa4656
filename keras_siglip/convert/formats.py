"""The checkpoint formats `SigLIP.from_preset` and the command line recognise by path.

Each format registers how to recognise an existing checkpoint (`detect`), how to load it and
how to write it, and which output paths name it by themselves (`detect_output`). The order is
the order of detection: a KerasHub preset folder also has a `config.json`, so it is tried
before the transformers folder; an open_clip file is a `.safetensors` whose tensors are an
open_clip SigLIP's.
"""

from pathlib import Path

import keras

from keras_siglip import registry
from keras_siglip.convert.big_vision import load_big_vision, save_big_vision
from keras_siglip.convert.io import atomic_output, path_format
from keras_siglip.convert.keras_hub import (
    is_keras_hub_preset,
    load_keras_hub,
    save_keras_hub,
)
from keras_siglip.convert.open_clip import (
    is_open_clip_file,
    load_open_clip,
    save_open_clip,
)
from keras_siglip.convert.transformers import load_transformers, save_transformers


def _no_overrides(path, overrides):
    if overrides:
        # A .keras file or a transformers folder fixes its architecture; ignoring the
        # overrides silently would hand back a model other than the one asked for.
        raise ValueError(
            f"Overrides {sorted(overrides)} apply to presets and big_vision .npz files only; "
            f"{path} defines its own architecture."
        )


def _load_keras(path, preset=None, **overrides):
    _no_overrides(path, overrides)
    return keras.saving.load_model(path)


def _save_keras(model, path, *, overwrite=False, progress=None, sources=()):
    with atomic_output(path, overwrite=overwrite, folder=False, sources=sources) as tmp:
        model.save(tmp)
    return Path(path)


def _load_big_vision(path, preset=None, **overrides):
    return load_big_vision(path, preset=preset, **overrides)


def _save_big_vision(model, path, *, overwrite=False, progress=None, sources=()):
    return save_big_vision(model, path, progress, overwrite=overwrite, sources=sources)


def _load_transformers(path, preset=None, **overrides):
    _no_overrides(path, overrides)
    return load_transformers(path)


def _save_transformers(model, path, *, overwrite=False, progress=None, sources=()):
    return save_transformers(model, path, overwrite=overwrite, progress=progress, sources=sources)


def _load_keras_hub(path, preset=None, **overrides):
    _no_overrides(path, overrides)
    return load_keras_hub(path)


def _save_keras_hub(model, path, *, overwrite=False, progress=None, sources=(), tokenizer=None):
    if tokenizer is None:  # carry a KerasHub source's tokenizer across
        tokenizer = next((s for s in sources if s is not None and is_keras_hub_preset(s)
                          and (Path(s) / "assets/tokenizer").is_dir()), None)
    return save_keras_hub(model, path, overwrite=overwrite, progress=progress, sources=sources,
                          tokenizer=tokenizer)


def _load_open_clip(path, preset=None, config=None, **overrides):
    _no_overrides(path, overrides)
    return load_open_clip(path, config=config)


def _is_transformers_folder(path):
    return (path_format(path) == "transformers" and (path / "config.json").exists()
            and not is_keras_hub_preset(path))


def _is_transformers_output(path):
    return path_format(path) == "transformers" and not is_keras_hub_preset(path)


def register_formats():
    registry.register_format(
        "keras", detect=lambda p: path_format(p) == "keras", load=_load_keras,
        save=_save_keras, description="a .keras file",
    )
    registry.register_format(
        "big_vision", detect=lambda p: path_format(p) == "big_vision", load=_load_big_vision,
        save=_save_big_vision, description="a big_vision .npz",
    )
    registry.register_format(
        "keras_hub", detect=is_keras_hub_preset, load=_load_keras_hub, save=_save_keras_hub,
        description="a KerasHub SigLIPBackbone preset folder (config.json, model.weights.h5)",
    )
    registry.register_format(
        "open_clip", detect=is_open_clip_file, load=_load_open_clip, save=_save_open_clip,
        detect_output=lambda p: p.suffix.lower() == ".safetensors",
        description="an open_clip SigLIP .safetensors file",
    )
    registry.register_format(
        "transformers", detect=_is_transformers_folder, load=_load_transformers,
        save=_save_transformers, detect_output=_is_transformers_output,
        description="a transformers folder with config.json",
    )


def _save_open_clip(model, path, *, overwrite=False, progress=None, sources=()):
    return save_open_clip(model, path, overwrite=overwrite, progress=progress, sources=sources)
