"""Tiny kits: configs, random parameters, inputs, the oracle's stages, and writing kits.

A kit is a folder with three files, readable with NumPy alone (docs/conformance_kit.md):

    manifest.json     config, stage order, shapes, dtypes, float32 tolerances, file hashes
    kit.npz           params/<big_vision name> (float32), inputs/<name>, expected/<stage> (float64)
    kit_float32.npz   the same with every floating array cast to float32
"""

import hashlib
import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np

import keras_siglip_reference as reference
from keras_siglip import testing
from keras_siglip.convert.io import atomic_output, check_destination
from keras_siglip.convert.names import tree_shapes

KIT_FORMAT = "keras-siglip-conformance-kit/1"

# Per-stage float32 tolerance: a stage passes when max|actual - expected| <= atol, with
# atol = RTOL * max(max|expected|, 1). float32 pipelines land at ~1e-6 of that scale; the
# mistakes the kit is meant to catch (erf GELU, LayerNorm eps 1e-5, a changed MAP head) move the
# first stage they touch by 1e-4 or more, because the kit's embeddings are scaled down so that
# LayerNorm inputs have a small variance (where eps matters).
RTOL = {"forward": 2e-5, "loss": 2e-5}

# Kit inputs and parameters are scaled so that the LayerNorm of block 0 sees a variance ~1e-2:
# eps 1e-5 instead of 1e-6 then changes its output by ~5e-4 relative, far above float32 noise.
EMBEDDING_SCALE = 0.1
_SMALL_EMBEDDINGS = (
    "img/embedding/kernel",
    "img/embedding/bias",
    "img/pos_embedding",
    "txt/Embed_0/embedding",
    "txt/pos_embedding",
)

# NaFlex grids of the NaFlex kit: against the 4x4 table of TINY_NAFLEX_CONFIG these downsample
# one axis and upsample the other, keep it, and pad (10 + 16 + 6 of 16 rows).
NAFLEX_GRIDS = ((2, 5), (4, 4), (3, 2))
NAFLEX_MAX_PATCHES = 16
BATCH = 3

# Non-square fixed resolution with text length 16; non-square with leftover pixels and odd
# widths; NaFlex with mixed grids.
DEFAULT_KITS = ("fixture_like", "odd_nonsquare", "naflex")

# Where the parameter names of every kit are described.
PARAMETER_NAMES = "big_vision (docs/checkpoints.md), per-block, float32"

# The files of a kit folder: the only ones `write_kit(..., overwrite=True)` replaces.
KIT_FILES = ("manifest.json", "kit.npz", "kit_float32.npz")


class KitDataError(ValueError):
    """A kit folder that is not what `vectors` wrote: edited data, manifest or tolerances."""


_TOLERANCE_RULE = "max|actual - expected| <= atol (valid_rows: only rows where that input is 1)"


def _write_npz(target, arrays):
    """Write an uncompressed `.npz` (a path or a binary file) one member at a time.

    `np.savez` stamps the current time into the zip; fixed member dates make the bytes depend
    on the arrays alone.
    """
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())


def random_params(config, seed=0):
    """Random float32 parameters for a kit config, keyed by big_vision name (sorted).

    The same recipe as `keras_siglip.testing.random_tree` (LayerNorm scales `1 + N(0, 0.1)`,
    biases `N(0, 0.1)`, fan-in-scaled kernels, `t = log 10`, `b = -2`, perturbed), with the
    patch, token and position embeddings scaled by `EMBEDDING_SCALE`.
    """
    params = testing.random_values(sorted(tree_shapes(config).items()), seed)
    for name in _SMALL_EMBEDDINGS:
        if name in params:
            params[name] = (params[name] * EMBEDDING_SCALE).astype(np.float32)
    return params


def kit_config(name):
    """The architecture of a named tiny kit: a `TINY_CONFIGS` key or `"naflex"` (JSON-ready)."""
    if name == "naflex":
        source, naflex = testing.TINY_NAFLEX_CONFIG, True
    elif name in testing.TINY_CONFIGS:
        source, naflex = testing.TINY_CONFIGS[name], False
    else:
        raise ValueError(
            f"Unknown tiny config {name!r}; valid: {sorted(testing.TINY_CONFIGS) + ['naflex']}."
        )
    config = {"naflex": naflex, "vision": dict(source["vision"]), "text": dict(source["text"])}
    if not naflex:
        config["vision"]["image_size"] = [int(s) for s in config["vision"]["image_size"]]
    return config


def random_inputs(config, rng, batch, grids=None, max_num_patches=None):
    """Images (or NaFlex patches on `grids`, padded to `max_num_patches`) and token ids."""
    vision, text = config["vision"], config["text"]
    inputs = {}
    if config["naflex"]:
        dim = vision["patch_size"] ** 2 * 3
        patches = np.zeros((len(grids), max_num_patches, dim), np.float32)
        mask = np.zeros((len(grids), max_num_patches), np.int32)
        for i, (h, w) in enumerate(grids):
            patches[i, : h * w] = rng.uniform(-1, 1, (h * w, dim))
            mask[i, : h * w] = 1
        inputs.update(patches=patches, patch_mask=mask,
                      spatial_shapes=np.asarray(grids, np.int32))
    else:
        h, w = vision["image_size"]
        inputs["images"] = rng.uniform(-1, 1, (batch, h, w, 3)).astype(np.float32)
    inputs["token_ids"] = rng.integers(
        0, text["vocabulary_size"], (batch, text["sequence_length"])
    ).astype(np.int32)
    return inputs


def oracle_stages(params, inputs):
    """Every stage of the kit, computed by the float64 NumPy oracle, in stage order."""
    naflex = None
    if "patches" in inputs:
        naflex = {k: inputs[k] for k in ("patches", "patch_mask", "spatial_shapes")}
    out = reference.two_tower(
        params, images=inputs.get("images"), token_ids=inputs["token_ids"], naflex=naflex
    )
    stages = {}
    for tower in ("img", "txt"):
        for key, value in out[tower].items():
            stages[f"{tower}/{key}"] = value
    stages["zimg"], stages["ztxt"], stages["logits"] = out["zimg"], out["ztxt"], out["logits"]
    grads = reference.sigmoid_loss_grads(out["zimg"], out["ztxt"], params["t"], params["b"])
    for key in ("loss", "grad_zimg", "grad_ztxt", "grad_t_param", "grad_b"):
        stages[key] = np.asarray(grads[key], np.float64)
    return stages


def stage_tolerance(name, value):
    """The library's float32 tolerance of a stage: `RTOL * max(1, max|expected|)`."""
    return _tolerance(name, value)


def _tolerance(name, value):
    kind = "loss" if name in ("loss",) or name.startswith("grad_") else "forward"
    scale = max(float(np.max(np.abs(value))) if value.size else 0.0, 1.0)
    return RTOL[kind] * scale


def _stage_entries(expected, inputs):
    stages = []
    for stage, value in expected.items():
        rows = None
        if "patch_mask" in inputs and stage.startswith("img/") and value.ndim == 3:
            rows = "patch_mask"  # padded NaFlex rows differ between valid masking conventions
        stages.append(
            {
                "name": stage,
                "shape": list(value.shape),
                "dtype": "float64",
                "atol": _tolerance(stage, value),
                "valid_rows": rows,
            }
        )
    return stages


def build_kit(name="fixture_like", seed=0):
    """An in-memory kit `{"manifest", "params", "inputs", "expected"}` for a tiny config.

    `name` is a key of `keras_siglip.testing.TINY_CONFIGS` or `"naflex"`.
    """
    config = kit_config(name)
    params = random_params(config, seed)
    rng = np.random.default_rng([seed, 7])
    inputs = random_inputs(config, rng, BATCH, NAFLEX_GRIDS, NAFLEX_MAX_PATCHES)
    expected = oracle_stages(params, inputs)
    manifest = {
        "format": KIT_FORMAT,
        "config_name": name,
        "seed": int(seed),
        "config": config,
        "parameters": {
            "source": f"random (keras_siglip.conformance.random_params, seed {seed}; "
            f"embeddings x {EMBEDDING_SCALE})",
            "names": PARAMETER_NAMES,
        },
    }
    return make_kit(manifest, params, inputs, expected)


def make_kit(manifest, params, inputs, expected):
    """A kit dict: `manifest` (its kit-specific entries) plus the entries every kit has."""
    stages = _stage_entries(expected, inputs)
    manifest = {
        **manifest,
        "l2_epsilon": 1e-8,
        "tolerance_rule": _TOLERANCE_RULE,
        "params": [_describe(f"params/{k}", v) for k, v in params.items()],
        "inputs": [_describe(f"inputs/{k}", v) for k, v in inputs.items()],
        "stage_order": [s["name"] for s in stages],
        "stages": stages,
    }
    return {"manifest": manifest, "params": params, "inputs": inputs, "expected": expected}


def _describe(key, value):
    return {"name": key, "shape": list(np.shape(value)), "dtype": str(np.asarray(value).dtype)}


def _arrays(kit, float32=False):
    # A preset kit points at its checkpoint instead of holding the parameters.
    groups = ("inputs", "expected") if "checkpoint" in kit["manifest"] else (
        "params", "inputs", "expected")
    arrays = {}
    for group in groups:
        for key, value in kit[group].items():
            value = np.asarray(value)
            if float32 and value.dtype.kind == "f":
                value = value.astype(np.float32)
            arrays[f"{group}/{key}"] = value
    return arrays


def file_sha256(path, chunk=1 << 24):
    """The hex sha256 of a file, read in chunks (checkpoints may be several GB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_kit_destination(out_dir, overwrite=False):
    """Raise unless a kit may be written to `out_dir` (see `write_kit`)."""
    out_dir = Path(out_dir)
    check_destination(out_dir, overwrite, folder=True, owned=KIT_FILES)
    manifest = out_dir / "manifest.json"
    if manifest.is_file():
        try:
            found = json.loads(manifest.read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            found = None
        if found != KIT_FORMAT:
            raise FileExistsError(
                f"{out_dir} holds a manifest.json that is not a conformance kit's (format "
                f"{found!r}); it is never replaced. Write the kit to a new folder."
            )


def write_kit(kit, out_dir, *, overwrite=False):
    """Write `manifest.json`, `kit.npz` and `kit_float32.npz` to `out_dir`; returns the folder.

    The folder appears complete or not at all. An existing kit is refused unless
    `overwrite=True`; a folder with any other file in it is never replaced.
    """
    out_dir = Path(out_dir)
    check_kit_destination(out_dir, overwrite)
    manifest = dict(kit["manifest"])
    files = {}
    with atomic_output(out_dir, overwrite=overwrite, folder=True, owned=KIT_FILES) as tmp:
        for filename, float32 in (("kit.npz", False), ("kit_float32.npz", True)):
            _write_npz(tmp / filename, _arrays(kit, float32))
            dtype = "float32" if float32 else "float64"
            files[filename] = {"sha256": file_sha256(tmp / filename), "expected_dtype": dtype}
        manifest["files"] = files
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir


def _read_manifest(path):
    if not path.exists():
        raise FileNotFoundError(
            f"No conformance kit at {path}: the path does not exist. Write one with "
            f"`python -m keras_siglip vectors {path}`."
        )
    if not path.is_dir():
        raise NotADirectoryError(
            f"{path} is a file; a conformance kit is a folder holding {', '.join(KIT_FILES)} "
            "(pass the folder)."
        )
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no manifest.json, so it is not a conformance kit folder. Pass a "
            "folder written by `python -m keras_siglip vectors`."
        )
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise KitDataError(f"{path / 'manifest.json'} is not readable JSON ({error}).") from error
    if not isinstance(manifest, dict) or manifest.get("format") != KIT_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise KitDataError(
            f"{path / 'manifest.json'} is not a {KIT_FORMAT} manifest (format {found!r})."
        )
    return manifest


def read_kit_folder(path, float32=False):
    """A kit folder's manifest and arrays, `{"manifest", "params", "inputs", "expected"}`.

    The data file is checked against the sha256 its manifest records first (`KitDataError`
    on a mismatch: an edited kit would otherwise blame the implementation). A preset kit's
    `params` stay empty here: they live in its checkpoint (`keras_siglip.conformance.load_kit`
    reads and checks it).
    """
    path = Path(path)
    manifest = _read_manifest(path)
    filename = "kit_float32.npz" if float32 else "kit.npz"
    want = ((manifest.get("files") or {}).get(filename) or {}).get("sha256")
    if not (path / filename).is_file():
        raise FileNotFoundError(f"The kit {path} has no {filename}; write the kit again.")
    if not want:
        raise KitDataError(
            f"The manifest of {path} records no sha256 for {filename}, so its data cannot be "
            "trusted; write the kit again with `python -m keras_siglip vectors`."
        )
    got = file_sha256(path / filename)
    if got != want:
        raise KitDataError(
            f"sha256 mismatch: {path / filename} is {got}, but the kit's manifest records "
            f"{want}. The kit data was changed after it was written (or is damaged), so a "
            "failure would blame the implementation wrongly: restore the kit, or write it again "
            "with `python -m keras_siglip vectors`."
        )
    kit = {"manifest": manifest, "params": {}, "inputs": {}, "expected": {}}
    with np.load(path / filename, allow_pickle=False) as data:
        for key in data.files:
            group, name = key.split("/", 1)
            kit[group][name] = data[key]
    return kit


def check_manifest_stages(kit):
    """Raise `KitDataError` where the manifest's stages are looser than the library's.

    Kit tolerances may only tighten the library's per-stage tolerance (`stage_tolerance` of the
    expected values), every expected array must be a listed stage, and `valid_rows` must be the
    library's (a different row mask would skip rows).
    """
    library = {s["name"]: s for s in _stage_entries(kit["expected"], kit["inputs"])}
    listed = {s.get("name") for s in kit["manifest"].get("stages", [])}
    problems = [f"{name}: in the data but not in the manifest's stages"
                for name in library if name not in listed]
    for stage in kit["manifest"].get("stages", []):
        name, atol = stage.get("name"), stage.get("atol")
        if name not in library:
            problems.append(f"{name}: listed, but the kit has no expected values for it")
            continue
        limit = library[name]["atol"]
        if not isinstance(atol, (int, float)) or not math.isfinite(atol) or atol < 0:
            problems.append(f"{name}: atol {atol!r} is not a finite number >= 0")
        elif atol > limit * (1 + 1e-6):
            problems.append(f"{name}: atol {atol:.3g} is looser than the library's {limit:.3g}")
        if stage.get("valid_rows") != library[name]["valid_rows"]:
            problems.append(f"{name}: valid_rows {stage.get('valid_rows')!r}, library "
                            f"{library[name]['valid_rows']!r}")
    if problems:
        raise KitDataError(
            "The kit's manifest does not match the library's stage rules (kit tolerances may only "
            "tighten them):\n  " + "\n  ".join(problems[:10])
            + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
            + "\nRestore the manifest, or write the kit again with `python -m keras_siglip "
            "vectors`."
        )
