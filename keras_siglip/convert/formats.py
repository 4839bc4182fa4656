"""The checkpoint formats `SigLIP.from_preset` and the command line recognise by path.

Each format registers how to recognise an existing checkpoint (`detect`), how to load it, how
to write it, which output paths name it by themselves (`detect_output`) and what its writer
would refuse (`check_output`, run before a slow load). The order is the order of detection: a
KerasHub preset folder also has a `config.json`, so it is tried before the transformers folder;
an open_clip checkpoint is a `.safetensors` file whose tensors are an open_clip SigLIP's, or an
open_clip hub folder (`open_clip_config.json` beside `open_clip_model.safetensors`).

Loaders take `(path, *, preset=None, **options)`: big_vision takes its `image_size`,
`posemb_resize` and architecture overrides, open_clip its `config`; every loader takes
`progress`. Writers take `(model, path, *, overwrite, progress, sources, **options)`: KerasHub
takes `tokenizer`, open_clip `config`.
"""

from pathlib import Path

from keras_siglip import registry
from keras_siglip.convert.big_vision import load_big_vision, save_big_vision
from keras_siglip.convert.io import (
    atomic_output,
    check_destination,
    load_keras_file,
    path_format,
)
from keras_siglip.convert.keras_hub import (
    KERAS_HUB_FILES,
    is_keras_hub_preset,
    load_keras_hub,
    save_keras_hub,
    sentencepiece_file,
)
from keras_siglip.convert.open_clip import is_open_clip_file, load_open_clip, save_open_clip
from keras_siglip.convert.transformers import load_transformers, save_transformers


def _no_options(path, options, allowed=()):
    extra = sorted(set(options) - set(allowed))
    if extra:
        # A file that fixes its own architecture; ignoring the options silently would hand
        # back a model other than the one asked for.
        raise ValueError(
            f"Options {extra} do not apply to {path}, which defines its own architecture "
            "(they apply to presets and big_vision .npz files"
            + (f"; this format takes {sorted(allowed)}" if allowed else "") + ")."
        )


def _load_keras(path, preset=None, progress=None, **options):
    _no_options(path, options)
    return load_keras_file(path)


def _save_keras(model, path, *, overwrite=False, progress=None, sources=()):
    with atomic_output(path, overwrite=overwrite, folder=False, sources=sources) as tmp:
        model.save(tmp)
    return Path(path)


def _load_big_vision(path, preset=None, progress=None, **options):
    return load_big_vision(path, preset=preset, progress=progress, **options)


def _save_big_vision(model, path, *, overwrite=False, progress=None, sources=()):
    return save_big_vision(model, path, progress, overwrite=overwrite, sources=sources)


def _load_transformers(path, preset=None, progress=None, **options):
    _no_options(path, options)
    return load_transformers(path, progress=progress)


def _save_transformers(model, path, *, overwrite=False, progress=None, sources=(), processor=None):
    return save_transformers(model, path, overwrite=overwrite, progress=progress, sources=sources,
                             processor=processor)


def _load_keras_hub(path, preset=None, progress=None, **options):
    _no_options(path, options)
    return load_keras_hub(path, progress=progress)


def _source_tokenizer(sources):
    """The first source holding a SentencePiece model (a KerasHub or transformers folder)."""
    for source in sources:
        if source is not None and Path(source).is_dir() and sentencepiece_file(source):
            return source
    return None


def _save_keras_hub(model, path, *, overwrite=False, progress=None, sources=(), tokenizer=None):
    if tokenizer is None:  # carry a source's tokenizer across
        tokenizer = _source_tokenizer(sources)
    return save_keras_hub(model, path, overwrite=overwrite, progress=progress, sources=sources,
                          tokenizer=tokenizer)


def _load_open_clip(path, preset=None, progress=None, config=None, **options):
    _no_options(path, options, allowed=("config",))
    return load_open_clip(path, config=config, progress=progress)


def _save_open_clip(model, path, *, overwrite=False, progress=None, sources=(), config=None):
    return save_open_clip(model, path, config=config, overwrite=overwrite, progress=progress,
                          sources=sources)


def _is_transformers_folder(path):
    return (path_format(path) == "transformers" and (path / "config.json").exists()
            and not is_keras_hub_preset(path))


def _is_transformers_output(path):
    return path_format(path) == "transformers" and not is_keras_hub_preset(path) \
        and not is_open_clip_file(path)


def _file_check(path, overwrite, sources):
    check_destination(path, overwrite, folder=False, sources=sources)


def _folder_check(owned):
    def check(path, overwrite, sources):
        check_destination(path, overwrite, folder=True, owned=owned, sources=sources)

    return check


def _open_clip_check(path, overwrite, sources):
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"An open_clip output is one .safetensors file; got {path}: name it "
                         f"{path.with_suffix('.safetensors').name}.")
    _file_check(path, overwrite, sources)


def _transformers_check(path, overwrite, sources):
    check_destination(path, overwrite, folder=True, sources=sources)


def register_formats():
    registry.register_format(
        "keras", detect=lambda p: path_format(p) == "keras", load=_load_keras,
        save=_save_keras, check_output=_file_check, description="a .keras file",
    )
    registry.register_format(
        "big_vision", detect=lambda p: path_format(p) == "big_vision", load=_load_big_vision,
        save=_save_big_vision, check_output=_file_check, description="a big_vision .npz",
    )
    registry.register_format(
        "keras_hub", detect=is_keras_hub_preset, load=_load_keras_hub, save=_save_keras_hub,
        check_output=_folder_check(KERAS_HUB_FILES),
        description="a KerasHub SigLIPBackbone preset folder (config.json, model.weights.h5)",
    )
    registry.register_format(
        "open_clip", detect=is_open_clip_file, load=_load_open_clip, save=_save_open_clip,
        detect_output=lambda p: p.suffix.lower() == ".safetensors",
        check_output=_open_clip_check,
        description="an open_clip SigLIP .safetensors file (or an open_clip hub folder)",
    )
    registry.register_format(
        "transformers", detect=_is_transformers_folder, load=_load_transformers,
        save=_save_transformers, detect_output=_is_transformers_output,
        check_output=_transformers_check,
        description="a transformers folder with config.json",
    )
