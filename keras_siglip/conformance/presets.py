"""Preset kits: a released checkpoint, found in the weights cache, instead of random parameters.

The manifest's `checkpoint` entry points at the weights (preset, hf_id, big_vision_file, the
local file, the sha256 of its file(s)); the kit itself does not hold them. Reading a preset kit
locates the checkpoint again and checks its sha256 (docs/conformance_kit.md).
"""

import math
from pathlib import Path

import numpy as np

from keras_siglip import presets, registry
from keras_siglip.conformance.kit import (
    KIT_FORMAT,
    PARAMETER_NAMES,
    check_kit_destination,
    file_sha256,
    make_kit,
    oracle_stages,
    random_inputs,
    write_kit,
)
from keras_siglip.convert import (
    infer_architecture,
    load_transformers,
    model_to_tree,
    read_tree,
)
from keras_siglip.convert.big_vision import fit_position_embedding

PRESET_BATCH = 2  # full-size per-block intermediates are large; the loss still has pairs i != j


class KitWeightsError(ValueError):
    """A preset kit's checkpoint is not the one the kit was computed from (sha256 mismatch)."""


def _download_hint(info, places):
    where = "\n  ".join(str(p) for p in places)
    return (
        f"Download the big_vision checkpoint {info.get('big_vision_file')} (or the transformers "
        f"checkpoint https://huggingface.co/{info.get('hf_id')}) and put it at one of:\n  "
        f"{where}\n(the cache folder is {presets.cache_dir()}; set KERAS_SIGLIP_CACHE to change "
        "it)."
    )


def _checkpoint_format(path):
    """The registered format of an existing checkpoint path, or None when it has none."""
    try:
        return registry.detect_format(path)
    except ValueError:
        return None


def find_preset_weights(preset):
    """`(path, format)` of the preset's checkpoint in the cache (`weights_candidates`).

    A big_vision `.npz` or a transformers folder is used; a `.keras` file alone is refused (a
    kit must point at a published checkpoint, whose bytes anyone can hash). Missing weights
    raise `FileNotFoundError` naming the file to download and where to put it.
    """
    info = presets.preset_info(preset)
    candidates = presets.weights_candidates(preset)
    keras_files = []
    for path in candidates:
        if not path.exists():
            continue
        kind = _checkpoint_format(path)
        if kind == "keras":
            keras_files.append(path)
        elif kind is not None:
            return path, kind
    usable = [p for p in candidates if p.suffix != ".keras"]
    if keras_files:
        raise ValueError(
            f"Only a .keras file was found for preset {preset!r} ({keras_files[0]}): preset kits "
            "point at the published checkpoint (a big_vision .npz or a transformers folder) and "
            "record its sha256, which a .keras re-save cannot stand for. "
            + _download_hint(info, usable)
        )
    raise FileNotFoundError(
        f"No weights for preset {preset!r} in the cache, so no kit can be computed. "
        + _download_hint(info, usable)
    )


def checkpoint_hashes(path, kind):
    """`{file name: sha256}`: the `.npz` itself, or each safetensors file of a folder, sorted."""
    path = Path(path)
    if kind == "transformers":
        files = sorted(p for p in path.iterdir() if p.name.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError(f"No safetensors file in the transformers folder {path}.")
        return {p.name: file_sha256(p) for p in files}
    return {path.name: file_sha256(path)}


def read_checkpoint_tree(path, kind):
    """The checkpoint as a flat big_vision tree (float32, per-block)."""
    if kind == "transformers":
        # Through a model, so that the folder passes the converter's checks.
        tree = model_to_tree(load_transformers(path))
    else:
        tree = read_tree(path)
    return {name: np.asarray(value, np.float32) for name, value in sorted(tree.items())}


def _preset_config(preset, tree):
    """The kit config of a checkpoint tree, checked against the preset's architecture."""
    info, vision_want, text_want = presets.architecture_kwargs(preset)
    image_size = None if info["naflex"] else info["image_size"]
    naflex, vision, text = infer_architecture(tree, image_size)
    problems = []
    if naflex != info["naflex"]:
        problems.append(f"naflex: checkpoint {naflex}, preset {info['naflex']}")
    for tower, got, want in (("vision", vision, vision_want), ("text", text, text_want)):
        for key in ("patch_size", "width", "depth", "mlp_dim", "num_heads", "vocabulary_size",
                    "sequence_length", "position_grid_size"):
            if key in want and key in got and int(got[key]) != int(want[key]):
                problems.append(f"{tower} {key}: checkpoint {got[key]}, preset {want[key]}")
    if problems:
        raise ValueError(
            f"The checkpoint does not have the architecture of preset {preset!r}: "
            + "; ".join(problems) + "."
        )
    if not naflex:
        fit_position_embedding(tree, vision["image_size"], vision["patch_size"])  # raises
        vision["image_size"] = [int(s) for s in vision["image_size"]]
    config = {
        "naflex": bool(naflex),
        "vision": {k: (v if isinstance(v, list) else int(v)) for k, v in vision.items()},
        "text": {k: (v if v is None or isinstance(v, bool) else int(v)) for k, v in text.items()},
    }
    if naflex:
        config["max_num_patches"] = int(info["max_num_patches"])
    return config


def naflex_preset_grids(max_num_patches):
    """Two grids for a NaFlex preset kit: one off-square and padded, one square and full-ish."""
    side = math.isqrt(max_num_patches)
    return ((side - side // 4, side + side // 4), (side, side))


def _preset_inputs(config, seed, batch=PRESET_BATCH):
    rng = np.random.default_rng([seed, 7])
    if not config["naflex"]:
        return random_inputs(config, rng, batch)
    budget = config["max_num_patches"]
    return random_inputs(config, rng, batch, naflex_preset_grids(budget)[:batch], budget)


def build_preset_kit(preset, seed=0):
    """An in-memory kit for a preset, from its checkpoint in the cache (see `find_preset_weights`).

    The manifest's `checkpoint` entry points at the weights (preset, hf_id, big_vision_file, the
    local file name, the sha256 of the file(s)); `params` holds the tree in memory but
    `write_kit` does not write it. Inputs: `PRESET_BATCH` images at the preset's resolution (or
    NaFlex patches within its patch budget) and token ids of its length, from `seed`.
    """
    info = presets.preset_info(preset)
    path, kind = find_preset_weights(preset)
    hashes = checkpoint_hashes(path, kind)
    params = read_checkpoint_tree(path, kind)
    config = _preset_config(preset, params)
    inputs = _preset_inputs(config, seed)
    expected = oracle_stages(params, inputs)
    try:
        local = str(Path(path).relative_to(presets.cache_dir()))
    except ValueError:
        local = Path(path).name
    manifest = {
        "format": KIT_FORMAT,
        "config_name": preset,
        "seed": int(seed),
        "config": config,
        "checkpoint": {
            "preset": preset,
            "hf_id": info.get("hf_id"),
            "big_vision_file": info.get("big_vision_file"),
            "file": local,
            "format": kind,
            "sha256": hashes,
        },
        "parameters": {
            "source": f"the {preset} checkpoint (see checkpoint; not stored in the kit)",
            "names": PARAMETER_NAMES,
        },
    }
    return make_kit(manifest, params, inputs, expected)


def write_preset_kit(preset, out_dir, seed=0, *, overwrite=False):
    """Build a preset kit and write it; nothing is written when the weights are missing.

    The destination is checked before the (long) computation: an existing kit is replaced only
    with `overwrite=True` (see `write_kit`).
    """
    check_kit_destination(out_dir, overwrite)
    kit = build_preset_kit(preset, seed)
    return write_kit(kit, out_dir, overwrite=overwrite)


def locate_checkpoint(manifest, weights=None):
    """`(path, format)` of a preset kit's checkpoint: `weights`, else the cache.

    The cache lookup tries the manifest's `file` in `cache_dir()`, then the preset's other
    candidate places of the same format. Missing weights raise `FileNotFoundError` naming what
    to download and where to put it.
    """
    pointer = manifest["checkpoint"]
    kind = pointer["format"]
    if weights is not None:
        return Path(weights), kind
    places = [presets.cache_dir() / pointer["file"]]
    if pointer["preset"] in presets.PRESETS:
        places += [p for p in presets.weights_candidates(pointer["preset"])
                   if p not in places and p.suffix != ".keras"]
    for path in places:
        if path.exists() and _checkpoint_format(path) == kind:
            return path, kind
    raise FileNotFoundError(
        f"The kit points at the {kind} checkpoint of preset {pointer['preset']!r} "
        f"({pointer['file']}), which is not in the cache. "
        + _download_hint(pointer, places[:1])
    )


def checkpoint_params(manifest, weights=None):
    """The parameters of a preset kit: locate the checkpoint, check its sha256, read it."""
    path, kind = locate_checkpoint(manifest, weights)
    want = manifest["checkpoint"]["sha256"]
    got = checkpoint_hashes(path, kind)
    if got != want:
        bad = sorted(set(want) | set(got))
        lines = [f"  {n}: kit {want.get(n, '(absent)')}, found {got.get(n, '(absent)')}"
                 for n in bad if want.get(n) != got.get(n)]
        raise KitWeightsError(
            f"sha256 mismatch: {path} is not the checkpoint this kit was computed from (preset "
            f"{manifest['checkpoint']['preset']!r}, {manifest['checkpoint']['hf_id']}):\n"
            + "\n".join(lines)
            + "\nRe-download the checkpoint or regenerate the kit against this one."
        )
    return read_checkpoint_tree(path, kind)
