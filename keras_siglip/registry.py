"""Where `SigLIP.from_preset` finds its loaders.

The model classes cannot import the modules that read checkpoints (those build models), so the
readers register themselves here when `keras_siglip` is imported: each checkpoint format names
how to recognise a path and how to load it, and `keras_siglip.presets` registers how to build a
preset by name. A new format is one module that calls `register_format`.
"""

from pathlib import Path

_FORMATS = {}
_PRESET_BUILDER = []


def register_format(name, *, detect, load, description):
    """Register a checkpoint format.

    Args:
        name: str, e.g. `"big_vision"`.
        detect: `path -> bool`; True when `path` (a `pathlib.Path`, which may not exist yet
            when it names an output) is of this format.
        load: `(path, *, preset=None, **overrides) -> SigLIP`.
        description: how a user would name the format in an error message
            (e.g. "a big_vision .npz").
    """
    _FORMATS[name] = {"detect": detect, "load": load, "description": description}


def register_preset_builder(names, build):
    """Register the builder of preset names: `build(cls, name, load_weights, **overrides)`."""
    _PRESET_BUILDER[:] = [(names, build)]


def detect_format(path):
    """The name of the registered format of `path`, or raise a ValueError listing them."""
    path = Path(path).expanduser()
    for name, entry in _FORMATS.items():
        if entry["detect"](path):
            return name
    known = ", ".join(entry["description"] for entry in _FORMATS.values())
    raise ValueError(f"Cannot tell the format of {path}: expected {known}.")


def load_path(path, *, preset=None, **overrides):
    """Load the checkpoint at `path` with the loader of its format."""
    path = Path(path).expanduser()
    return _FORMATS[detect_format(path)]["load"](path, preset=preset, **overrides)


def looks_like_checkpoint(path):
    """True when `path` exists or names a file of a registered format."""
    path = Path(path).expanduser()
    if path.exists():
        return True
    return any(entry["detect"](path) for entry in _FORMATS.values())


def from_preset(cls, preset, load_weights=True, **overrides):
    """Implementation of `SigLIP.from_preset`: a preset name or a checkpoint path."""
    if not _PRESET_BUILDER:
        raise RuntimeError("No preset builder registered: import keras_siglip first.")
    names, build = _PRESET_BUILDER[0]
    if str(preset) not in names() and looks_like_checkpoint(str(preset)):
        return load_path(str(preset), **overrides)
    return build(cls, str(preset), load_weights, **overrides)
