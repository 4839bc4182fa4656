"""Where `SigLIP.from_preset` finds its loaders.

The model classes cannot import the modules that read checkpoints (those build models), so the
readers register themselves here when `keras_siglip` is imported: each checkpoint format names
how to recognise a path, how to load it and (optionally) how to write it, and
`keras_siglip.presets` registers how to build a preset by name. A new format is one module that
calls `register_format`.
"""

from pathlib import Path

_FORMATS = {}
_PRESET_BUILDER = []


def register_format(name, *, detect, load, description, save=None, detect_output=None,
                    check_output=None):
    """Register a checkpoint format.

    Args:
        name: str, e.g. `"big_vision"`.
        detect: `path -> bool`; True when `path` (a `pathlib.Path`) is an existing checkpoint
            of this format (also used for outputs when `detect_output` is not given).
        load: `(path, *, preset=None, **overrides) -> SigLIP`.
        description: how a user would name the format in an error message
            (e.g. "a big_vision .npz").
        save: optional `(model, path, *, overwrite=False, progress=None, sources=()) -> Path`,
            the writer of this format.
        detect_output: optional `path -> bool`; True when `path` (which need not exist) names
            an output of this format by itself (a suffix, an existing checkpoint). A format
            that a path cannot name (a folder that only `--to` can tell) returns False.
        check_output: optional `(path, overwrite, sources) -> None`, raising when the writer
            would refuse `path`; run before a slow load (`check_output` below).
    """
    _FORMATS[name] = {"detect": detect, "load": load, "description": description,
                      "save": save, "detect_output": detect_output or detect,
                      "check_output": check_output}


def format_names(*, writable=False):
    """The registered format names, in detection order (only those with a writer if asked)."""
    return [name for name, entry in _FORMATS.items() if not writable or entry["save"]]


def _entry(format):
    if format not in _FORMATS:
        raise ValueError(
            f"Unknown checkpoint format {format!r}; known: {', '.join(format_names())}."
        )
    return _FORMATS[format]


def output_format(path):
    """The name of the format that the output path `path` names, or raise a ValueError."""
    path = Path(path).expanduser()
    for name, entry in _FORMATS.items():
        if entry["save"] is not None and entry["detect_output"](path):
            return name
    raise ValueError(
        f"Cannot tell which format to write to {path}; name it with --to "
        f"({', '.join(format_names(writable=True))})."
    )


def save_path(model, path, format=None, *, overwrite=False, progress=None, **kwargs):
    """Write `model` to `path` in `format` (default: `output_format(path)`); return the path.

    `kwargs` (e.g. `sources=`, the paths read, never to be replaced) go to the writer.
    """
    path = Path(path).expanduser()
    format = output_format(path) if format is None else format
    save = _entry(format)["save"]
    if save is None:
        raise ValueError(
            f"The format {format!r} cannot be written; writable: "
            f"{', '.join(format_names(writable=True))}."
        )
    return save(model, path, overwrite=overwrite, progress=progress, **kwargs)


def check_output(path, format, *, overwrite=False, sources=()):
    """Raise now if the writer of `format` would refuse `path` (exists, holds a source, ...)."""
    check = _entry(format)["check_output"]
    if check is not None:
        check(Path(path).expanduser(), overwrite, sources)


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


def load_path(path, *, preset=None, format=None, **overrides):
    """Load the checkpoint at `path` with the loader of its format (detected unless given)."""
    path = Path(path).expanduser()
    format = detect_format(path) if format is None else format
    return _entry(format)["load"](path, preset=preset, **overrides)


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
