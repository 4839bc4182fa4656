"""The checkpoint formats `SigLIP.from_preset` and the command line recognise by path."""

import keras

from keras_siglip import registry
from keras_siglip.convert.big_vision import load_big_vision
from keras_siglip.convert.io import path_format
from keras_siglip.convert.transformers import load_transformers


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


def _load_big_vision(path, preset=None, **overrides):
    return load_big_vision(path, preset=preset, **overrides)


def _load_transformers(path, preset=None, **overrides):
    _no_overrides(path, overrides)
    return load_transformers(path)


def _is_transformers_folder(path):
    return path_format(path) == "transformers" and (path / "config.json").exists()


def register_formats():
    registry.register_format(
        "keras", detect=lambda p: path_format(p) == "keras", load=_load_keras,
        description="a .keras file",
    )
    registry.register_format(
        "big_vision", detect=lambda p: path_format(p) == "big_vision", load=_load_big_vision,
        description="a big_vision .npz",
    )
    registry.register_format(
        "transformers", detect=_is_transformers_folder, load=_load_transformers,
        description="a transformers folder with config.json",
    )
