"""Portable conformance kits: oracle-computed inputs and per-stage expected outputs.

A kit is a folder with three files, readable with NumPy alone (see docs/conformance_kit.md):

    manifest.json     config, stage order, shapes, dtypes, float32 tolerances, file hashes
    kit.npz           params/<big_vision name> (float32), inputs/<name>, expected/<stage> (float64)
    kit_float32.npz   the same with every floating array cast to float32

`build_kit` computes the expected values with the float64 NumPy oracle (`reference/`);
`verify(kit, fn)` runs any implementation `fn(params, inputs) -> {stage: array}` and names the
first stage, in the manifest's order, whose error exceeds its tolerance. `keras_fn` and
`transformers_fn` are the two adapters the command line offers.

Preset kits (`build_preset_kit`) use a released checkpoint found in the weights cache instead of
random parameters: their manifest points at it (`checkpoint`: preset, hf_id, big_vision_file,
local file, sha256) and `load_kit` reads it back, after checking the sha256.

Stages are the oracle's intermediates, prefixed by tower: `img/stem`, `img/with_posemb`,
`img/block00/sa`, `img/block00/+sa`, `img/block00/mlp`, `img/block00/+mlp`, ..., `img/encoded`,
`img/pooled` (MAP head), `txt/embedded`, ..., `txt/pre_logits`, `txt/pooled`, then `zimg`,
`ztxt` (normalised embeddings), `logits`, `loss`, `grad_zimg`, `grad_ztxt`, `grad_t_param`,
`grad_b` (the sigmoid loss of the square batch and its gradients).
"""

import hashlib
import io
import json
import math
import os
import zipfile
from pathlib import Path

import numpy as np

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

# The kits the issue asks for: non-square fixed resolution with text length 16, non-square with
# leftover pixels and odd widths, NaFlex with mixed grids.
DEFAULT_KITS = ("fixture_like", "odd_nonsquare", "naflex")


# --------------------------------------------------------------------------------------
# Deterministic .npz writing (np.savez stamps the current time into the zip).


def _write_npz(target, arrays):
    """Write an uncompressed `.npz` (a path or a binary file) one member at a time."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())


# --------------------------------------------------------------------------------------
# Building a kit.


def _block_shapes(prefix, width, mlp_dim, num_heads):
    head_dim = width // num_heads
    shapes = {}
    for ln in ("LayerNorm_0", "LayerNorm_1"):
        shapes[f"{prefix}/{ln}/scale"] = (width,)
        shapes[f"{prefix}/{ln}/bias"] = (width,)
    attention = f"{prefix}/MultiHeadDotProductAttention_0"
    shapes.update(_attention_shapes(attention, width, num_heads, head_dim))
    shapes.update(_mlp_shapes(f"{prefix}/MlpBlock_0", width, mlp_dim))
    return shapes


def _attention_shapes(prefix, width, num_heads, head_dim):
    shapes = {}
    for proj in ("query", "key", "value"):
        shapes[f"{prefix}/{proj}/kernel"] = (width, num_heads, head_dim)
        shapes[f"{prefix}/{proj}/bias"] = (num_heads, head_dim)
    shapes[f"{prefix}/out/kernel"] = (num_heads, head_dim, width)
    shapes[f"{prefix}/out/bias"] = (width,)
    return shapes


def _mlp_shapes(prefix, width, mlp_dim):
    return {
        f"{prefix}/Dense_0/kernel": (width, mlp_dim),
        f"{prefix}/Dense_0/bias": (mlp_dim,),
        f"{prefix}/Dense_1/kernel": (mlp_dim, width),
        f"{prefix}/Dense_1/bias": (width,),
    }


def tree_shapes(config):
    """`{big_vision name: shape}` of a two-tower model, from a kit config (no Keras needed)."""
    v, t = config["vision"], config["text"]
    w, p = v["width"], v["patch_size"]
    shapes = {}
    if config["naflex"]:
        g = v.get("position_grid_size", 16)
        shapes["img/embedding/kernel"] = (p * p * 3, w)
        shapes["img/pos_embedding"] = (g, g, w)
    else:
        h, wi = v["image_size"]
        shapes["img/embedding/kernel"] = (p, p, 3, w)
        shapes["img/pos_embedding"] = (1, (h // p) * (wi // p), w)
    shapes["img/embedding/bias"] = (w,)
    for i in range(v["depth"]):
        block = f"img/Transformer/encoderblock_{i}"
        shapes.update(_block_shapes(block, w, v["mlp_dim"], v["num_heads"]))
    shapes["img/Transformer/encoder_norm/scale"] = (w,)
    shapes["img/Transformer/encoder_norm/bias"] = (w,)
    shapes["img/MAPHead_0/probe"] = (1, 1, w)
    shapes.update(_attention_shapes("img/MAPHead_0/MultiHeadDotProductAttention_0", w,
                                    v["num_heads"], w // v["num_heads"]))
    shapes["img/MAPHead_0/LayerNorm_0/scale"] = (w,)
    shapes["img/MAPHead_0/LayerNorm_0/bias"] = (w,)
    shapes.update(_mlp_shapes("img/MAPHead_0/MlpBlock_0", w, v["mlp_dim"]))
    tw = t["width"]
    shapes["txt/Embed_0/embedding"] = (t["vocabulary_size"], tw)
    shapes["txt/pos_embedding"] = (1, t["sequence_length"], tw)
    for i in range(t["depth"]):
        block = f"txt/Encoder_0/encoderblock_{i}"
        shapes.update(_block_shapes(block, tw, t["mlp_dim"], t["num_heads"]))
    shapes["txt/Encoder_0/encoder_norm/scale"] = (tw,)
    shapes["txt/Encoder_0/encoder_norm/bias"] = (tw,)
    if t.get("use_head", True):
        embed = t.get("embed_dim") or w
        shapes["txt/head/kernel"] = (tw, embed)
        shapes["txt/head/bias"] = (embed,)
    shapes["t"] = (1,)
    shapes["b"] = (1,)
    return shapes


def random_params(config, seed=0):
    """Random float32 parameters for a kit config, keyed by big_vision name (sorted).

    The same recipe as `keras_siglip.testing.random_tree` (LayerNorm scales `1 + N(0, 0.1)`,
    biases `N(0, 0.1)`, fan-in-scaled kernels, `t = log 10`, `b = -2`, perturbed), with the
    patch, token and position embeddings scaled by `EMBEDDING_SCALE`.
    """
    from keras_siglip.testing import random_values

    params = random_values(sorted(tree_shapes(config).items()), seed)
    for name in _SMALL_EMBEDDINGS:
        if name in params:
            params[name] = (params[name] * EMBEDDING_SCALE).astype(np.float32)
    return params


def kit_config(name):
    """The architecture of a named tiny kit: a `TINY_CONFIGS` key or `"naflex"` (JSON-ready)."""
    from keras_siglip import testing

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


def _tiny_params_and_inputs(name, seed):
    """`(config, params, inputs)` for a named tiny kit; NumPy only."""
    config = kit_config(name)
    params = random_params(config, seed)
    rng = np.random.default_rng([seed, 7])
    if config["naflex"]:
        dim = config["vision"]["patch_size"] ** 2 * 3
        patches = np.zeros((len(NAFLEX_GRIDS), NAFLEX_MAX_PATCHES, dim), np.float32)
        mask = np.zeros((len(NAFLEX_GRIDS), NAFLEX_MAX_PATCHES), np.int32)
        for i, (h, w) in enumerate(NAFLEX_GRIDS):
            patches[i, : h * w] = rng.uniform(-1, 1, (h * w, dim))
            mask[i, : h * w] = 1
        inputs = {
            "patches": patches,
            "patch_mask": mask,
            "spatial_shapes": np.asarray(NAFLEX_GRIDS, np.int32),
        }
    else:
        h, w = config["vision"]["image_size"]
        inputs = {"images": rng.uniform(-1, 1, (BATCH, h, w, 3)).astype(np.float32)}
    text = config["text"]
    inputs["token_ids"] = rng.integers(
        0, text["vocabulary_size"], (BATCH, text["sequence_length"])
    ).astype(np.int32)
    return config, params, inputs


def oracle_stages(params, inputs):
    """Every stage of the kit, computed by the float64 NumPy oracle, in stage order."""
    import reference

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


_TOLERANCE_RULE = "max|actual - expected| <= atol (valid_rows: only rows where that input is 1)"


def build_kit(name="fixture_like", seed=0):
    """An in-memory kit `{"manifest", "params", "inputs", "expected"}` for a tiny config.

    `name` is a key of `keras_siglip.testing.TINY_CONFIGS` or `"naflex"`.
    """
    config, params, inputs = _tiny_params_and_inputs(name, seed)
    expected = oracle_stages(params, inputs)
    manifest = {
        "format": KIT_FORMAT,
        "config_name": name,
        "seed": int(seed),
        "config": config,
        "parameters": {
            "source": f"random (keras_siglip.conformance.random_params, seed {seed}; "
            f"embeddings x {EMBEDDING_SCALE})",
            "names": "big_vision (SPEC §10.1), per-block, float32",
        },
    }
    return _kit(manifest, params, inputs, expected)


def _kit(manifest, params, inputs, expected):
    """A kit dict: `manifest` (its kit-specific entries) completed with the entries every kit has."""
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


def _file_sha256(path, chunk=1 << 24):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_kit(kit, out_dir):
    """Write `manifest.json`, `kit.npz` and `kit_float32.npz` to `out_dir`; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = dict(kit["manifest"])
    files = {}
    for filename, float32 in (("kit.npz", False), ("kit_float32.npz", True)):
        _write_npz(out_dir / filename, _arrays(kit, float32))
        dtype = "float32" if float32 else "float64"
        files[filename] = {"sha256": _file_sha256(out_dir / filename), "expected_dtype": dtype}
    manifest["files"] = files
    text = json.dumps(manifest, indent=1) + "\n"
    (out_dir / "manifest.json").write_text(text)
    return out_dir


# --------------------------------------------------------------------------------------
# Preset kits: the released checkpoint, found in the weights cache, instead of random params.

PRESET_BATCH = 2  # full-size per-block intermediates are large; the loss still has pairs i != j


class KitWeightsError(ValueError):
    """A preset kit's checkpoint is not the one the kit was computed from (sha256 mismatch)."""


def _download_hint(info, places):
    where = "\n  ".join(str(p) for p in places)
    from keras_siglip.presets import cache_dir

    return (
        f"Download the big_vision checkpoint {info.get('big_vision_file')} (or the transformers "
        f"checkpoint https://huggingface.co/{info.get('hf_id')}) and put it at one of:\n  "
        f"{where}\n(the cache folder is {cache_dir()}; set KERAS_SIGLIP_CACHE to change it)."
    )


def _checkpoint_format(path):
    path = Path(path)
    if path.suffix == ".keras":
        return "keras"
    if path.suffix == ".npz" and path.is_file():
        return "big_vision"
    if path.is_dir():
        return "transformers"
    return None


def find_preset_weights(preset):
    """`(path, format)` of the preset's checkpoint in the cache (`weights_candidates`).

    A big_vision `.npz` or a transformers folder is used; a `.keras` file alone is refused (a
    kit must point at a published checkpoint, whose bytes anyone can hash). Missing weights
    raise `FileNotFoundError` naming the file to download and where to put it.
    """
    from keras_siglip.presets import preset_info, weights_candidates

    info = preset_info(preset)
    candidates = weights_candidates(preset)
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
        return {p.name: _file_sha256(p) for p in files}
    return {path.name: _file_sha256(path)}


def read_checkpoint_tree(path, kind):
    """The checkpoint as a flat big_vision tree (float32, per-block)."""
    if kind == "transformers":
        # The transformers folder -> canonical tree goes through the converter's checks.
        from keras_siglip.convert import load_transformers, model_to_tree

        tree = model_to_tree(load_transformers(path))
    else:
        from keras_siglip.convert.big_vision import read_tree

        tree = read_tree(path)
    return {name: np.asarray(value, np.float32) for name, value in sorted(tree.items())}


def _preset_config(preset, tree):
    """The kit config of a checkpoint tree, checked against the preset's architecture."""
    from keras_siglip.convert.big_vision import fit_position_embedding, infer_architecture
    from keras_siglip.presets import architecture_kwargs

    info, vision_want, text_want = architecture_kwargs(preset)
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
    vision, text = config["vision"], config["text"]
    inputs = {}
    if config["naflex"]:
        dim = vision["patch_size"] ** 2 * 3
        budget = config["max_num_patches"]
        grids = naflex_preset_grids(budget)[:batch]
        patches = np.zeros((len(grids), budget, dim), np.float32)
        mask = np.zeros((len(grids), budget), np.int32)
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


def build_preset_kit(preset, seed=0):
    """An in-memory kit for a preset, from its checkpoint in the cache (see `find_preset_weights`).

    The manifest's `checkpoint` entry points at the weights (preset, hf_id, big_vision_file, the
    local file name, the sha256 of the file(s)); `params` holds the tree in memory but
    `write_kit` does not write it. Inputs: `PRESET_BATCH` images at the preset's resolution (or
    NaFlex patches within its patch budget) and token ids of its length, from `seed`.
    """
    from keras_siglip.presets import cache_dir, preset_info

    info = preset_info(preset)
    path, kind = find_preset_weights(preset)
    hashes = checkpoint_hashes(path, kind)
    params = read_checkpoint_tree(path, kind)
    config = _preset_config(preset, params)
    inputs = _preset_inputs(config, seed)
    expected = oracle_stages(params, inputs)
    try:
        local = str(Path(path).relative_to(cache_dir()))
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
            "names": "big_vision (SPEC §10.1), per-block, float32",
        },
    }
    return _kit(manifest, params, inputs, expected)


def write_preset_kit(preset, out_dir, seed=0):
    """Build a preset kit and write it; nothing is written when the weights are missing."""
    kit = build_preset_kit(preset, seed)
    return write_kit(kit, out_dir)


def locate_checkpoint(manifest, weights=None):
    """`(path, format)` of a preset kit's checkpoint: `weights`, else the cache.

    The cache lookup tries the manifest's `file` in `cache_dir()`, then the preset's other
    candidate places of the same format. Missing weights raise `FileNotFoundError` naming what
    to download and where to put it.
    """
    from keras_siglip.presets import PRESETS, cache_dir, weights_candidates

    pointer = manifest["checkpoint"]
    kind = pointer["format"]
    if weights is not None:
        return Path(weights), kind
    places = [cache_dir() / pointer["file"]]
    if pointer["preset"] in PRESETS:
        places += [p for p in weights_candidates(pointer["preset"])
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


# --------------------------------------------------------------------------------------
# Reading and verifying.


def load_kit(path, float32=False, weights=None):
    """Read a kit folder (or pass an in-memory kit through) to `{"manifest", "params", ...}`.

    A preset kit's parameters come from its checkpoint (`checkpoint_params`): found in the cache
    (or at `weights`), checked against the manifest's sha256, then read.
    """
    if isinstance(path, dict):
        return path
    path = Path(path)
    manifest = json.loads((path / "manifest.json").read_text())
    kit = {"manifest": manifest, "params": {}, "inputs": {}, "expected": {}}
    with np.load(path / ("kit_float32.npz" if float32 else "kit.npz")) as data:
        for key in data.files:
            group, name = key.split("/", 1)
            kit[group][name] = data[key]
    if "checkpoint" in manifest:
        kit["params"] = checkpoint_params(manifest, weights)
    return kit


class Report:
    """Per-stage errors of one verification; `first_failure` is a stage name or None."""

    def __init__(self, rows, first_failure):
        self.rows = rows  # dicts: stage, max_abs, max_rel, atol, status
        self.first_failure = first_failure

    @property
    def ok(self):
        return self.first_failure is None

    def __str__(self):
        lines = [f"{'stage':<22} {'max abs err':>12} {'max rel err':>12} {'atol':>10}  status"]
        for r in self.rows:
            if r["status"] == "missing":
                lines.append(f"{r['stage']:<22} {'-':>12} {'-':>12} {r['atol']:>10.2e}  missing")
                continue
            lines.append(
                f"{r['stage']:<22} {r['max_abs']:>12.3e} {r['max_rel']:>12.3e} "
                f"{r['atol']:>10.2e}  {r['status']}"
            )
        lines.append(
            "all stages within tolerance"
            if self.ok
            else f"FIRST FAILING STAGE: {self.first_failure}"
        )
        return "\n".join(lines)


def verify(kit, fn, *, require_all=False):
    """Check an implementation against a kit.

    Args:
        kit: a kit folder path, or an in-memory kit from `build_kit` / `load_kit`.
        fn: callable `fn(params, inputs) -> {stage: array}`; `params` is the flat big_vision dict
            (float32), `inputs` the kit's inputs. Stages it does not return are reported as
            missing.
        require_all: count a missing stage as a failure.

    Returns:
        `Report`, whose `first_failure` is the first stage in the manifest's order that exceeds
        its tolerance (or has the wrong shape, or NaNs), else None.
    """
    kit = load_kit(kit)
    actual = fn(kit["params"], kit["inputs"])
    rows, first = [], None
    for stage in kit["manifest"]["stages"]:
        name, atol = stage["name"], stage["atol"]
        expected = np.asarray(kit["expected"][name], np.float64)
        row = {"stage": name, "atol": atol, "max_abs": math.nan, "max_rel": math.nan}
        if name not in actual:
            row["status"] = "missing"
            rows.append(row)
            if require_all and first is None:
                first = name
            continue
        got = np.asarray(actual[name], np.float64)
        if got.shape != expected.shape:
            row["status"] = f"shape {got.shape} != {expected.shape}"
        else:
            if stage.get("valid_rows"):
                keep = np.asarray(kit["inputs"][stage["valid_rows"]]).astype(bool)
                got, expected = got[keep], expected[keep]
            err = np.abs(got - expected)
            row["max_abs"] = float(np.max(err)) if err.size else 0.0
            scale = float(np.max(np.abs(expected))) if expected.size else 0.0
            row["max_rel"] = row["max_abs"] / scale if scale > 0 else row["max_abs"]
            bad = not np.all(np.isfinite(got)) or row["max_abs"] > atol
            row["status"] = "FAIL" if bad else "ok"
        if row["status"] != "ok" and first is None:
            first = name
        rows.append(row)
    return Report(rows, first)


# --------------------------------------------------------------------------------------
# Adapter: keras-siglip on the current Keras backend.


def _image_size(kit):
    config = kit["manifest"]["config"]
    return None if config["naflex"] else tuple(config["vision"]["image_size"])


def _value_and_grads(fn, *args):
    """`fn(*args)` (a scalar) and its gradients w.r.t. every arg, with the backend's autodiff."""
    import keras

    backend = keras.backend.backend()
    args = [np.asarray(a, np.float32) for a in args]
    if backend == "jax":
        import jax

        value, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
        return np.asarray(value), [np.asarray(g) for g in grads]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            for t in tensors:
                tape.watch(t)
            value = fn(*tensors)
        return np.asarray(value), [np.asarray(g) for g in tape.gradient(value, tensors)]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        value = fn(*tensors)
        grads = torch.autograd.grad(value, tensors)
        return value.detach().cpu().numpy(), [g.detach().cpu().numpy() for g in grads]
    raise NotImplementedError(f"No gradients for the {backend!r} backend.")


def keras_model(kit):
    """A `SigLIP` holding the kit's parameters (`load_big_vision`)."""
    from keras_siglip.convert import load_big_vision

    kit = load_kit(kit)
    return load_big_vision(dict(kit["params"]), image_size=_image_size(kit))


def keras_fn(kit, model=None):
    """`fn(params, inputs)` running keras-siglip (current backend) with `return_intermediates`.

    `model` may be a prepared (e.g. deliberately broken) `SigLIP`; by default one is built from
    the kit's parameters.
    """
    from keras import ops

    from keras_siglip.losses import sigmoid_loss
    from keras_siglip.models import l2_normalize

    def np_(x):
        return np.asarray(ops.convert_to_numpy(x))

    def fn(params, inputs):
        nonlocal model
        if model is None:
            model = keras_model(kit)
        stages = {}
        if "patches" in inputs:
            image_in = {k: inputs[k] for k in ("patches", "patch_mask", "spatial_shapes")}
        else:
            image_in = inputs["images"]
        for key, value in model.vision_encoder(image_in, return_intermediates=True).items():
            stages[f"img/{key}"] = np_(value)
        text = model.text_encoder
        ids = ops.convert_to_tensor(inputs["token_ids"], "int32")
        stages["txt/embedded"] = np_(text.token_embedding(ids))
        for key, value in text(ids, return_intermediates=True).items():
            # keras-siglip's "embedded" already holds the position embedding.
            stages["txt/with_posemb" if key == "embedded" else f"txt/{key}"] = np_(value)
        zimg = l2_normalize(ops.convert_to_tensor(stages["img/pooled"]), model.l2_epsilon)
        ztxt = l2_normalize(ops.convert_to_tensor(stages["txt/pooled"]), model.l2_epsilon)
        stages["zimg"], stages["ztxt"] = np_(zimg), np_(ztxt)
        stages["logits"] = np_(model.logits(zimg, ztxt))
        t = np_(ops.reshape(model.logit_scale, ()))
        b = np_(ops.reshape(model.logit_bias, ()))
        loss, grads = _value_and_grads(sigmoid_loss, stages["zimg"], stages["ztxt"], t, b)
        stages["loss"] = loss
        stages["grad_zimg"], stages["grad_ztxt"] = grads[0], grads[1]
        stages["grad_t_param"] = np.reshape(grads[2], ())
        stages["grad_b"] = np.reshape(grads[3], ())
        return stages

    return fn


def break_keras_model(model, variant):
    """Give a keras-siglip model one deliberate mistake, in place; returns a function undoing it.

    `variant` (see `BROKEN_VARIANTS`): "gelu_erf" (exact GELU in every MLP), "ln_eps" (LayerNorm
    eps 1e-5 everywhere), "map_residual" (the MAP head adds the probe back to its attention
    output, as a standard block would; SigLIP's MAP head has no residual there) or
    "map_unscaled" (MAP attention queries scaled by sqrt(head_dim), i.e. logits without the
    1/sqrt(head_dim) scale).
    """
    from keras import ops

    from keras_siglip.layers.map_head import MAPHead
    from keras_siglip.layers.mlp import MLPBlock

    _check_variant(variant)
    undo = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if variant == "gelu_erf" and isinstance(layer, MLPBlock):
            def call(x, layer=layer):
                return layer.fc2(ops.gelu(layer.fc1(x), approximate=False))

            layer.call = call
            undo.append(lambda layer=layer: delattr(layer, "call"))
        elif variant == "ln_eps" and layer.__class__.__name__ == "LayerNormalization":
            undo.append(lambda layer=layer, eps=layer.epsilon: setattr(layer, "epsilon", eps))
            layer.epsilon = 1e-5
        elif variant in ("map_residual", "map_unscaled") and isinstance(layer, MAPHead):
            attention = layer.attention
            if variant == "map_unscaled":
                head_dim = layer.probe.shape[-1] // layer.num_heads
                _scale_queries(attention, math.sqrt(head_dim), undo)
                continue

            def attend(query, x, key_mask=None, attention=attention):
                return type(attention).call(attention, query, x, key_mask=key_mask) + query

            attention.call = attend
            undo.append(lambda attention=attention: delattr(attention, "call"))

    def restore():
        for step in reversed(undo):
            step()

    return restore


def _scale_queries(attention, factor, undo):
    """Multiply the projected queries of a keras-siglip MultiHeadAttention by `factor`."""
    dense = attention.query
    original = type(dense).call

    def call(x, dense=dense, original=original):
        return original(dense, x) * factor

    dense.call = call
    undo.append(lambda dense=dense: delattr(dense, "call"))


BROKEN_VARIANTS = {
    "gelu_erf": "exact (erf) GELU instead of the tanh approximation",
    "ln_eps": "LayerNorm eps 1e-5 instead of 1e-6",
    "map_residual": "MAP head with a residual around its attention",
    "map_unscaled": "MAP head attention logits without the 1/sqrt(head_dim) scale",
}


def _check_variant(variant):
    if variant not in BROKEN_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(BROKEN_VARIANTS)}, got {variant!r}")


# --------------------------------------------------------------------------------------
# Adapter: Hugging Face transformers (SiglipModel / Siglip2Model, eager attention, torch).


def transformers_model(kit, variant=None):
    """A transformers `SiglipModel` (or `Siglip2Model` for NaFlex kits) with the kit's params.

    Fixed-resolution kits may have non-square grids: transformers' Siglip adds its position
    table row by row to the flattened grid, so any grid works once the table has the grid's
    number of rows (we size it to the kit's table). `variant` applies one deliberate mistake
    (see `BROKEN_VARIANTS`) for exercising the locator.
    """
    import torch
    import transformers

    from keras_siglip.convert.big_vision import infer_architecture

    kit = load_kit(kit)
    if variant is not None:
        _check_variant(variant)
    params = kit["params"]
    naflex, vision, text = infer_architecture(params, _image_size(kit))
    act = "gelu" if variant == "gelu_erf" else "gelu_pytorch_tanh"
    eps = 1e-5 if variant == "ln_eps" else 1e-6
    vision_config = {
        "hidden_size": vision["width"],
        "intermediate_size": vision["mlp_dim"],
        "num_hidden_layers": vision["depth"],
        "num_attention_heads": vision["num_heads"],
        "num_channels": 3,
        "patch_size": vision["patch_size"],
        "hidden_act": act,
        "layer_norm_eps": eps,
        "attention_dropout": 0.0,
    }
    if naflex:
        vision_config["num_patches"] = vision["position_grid_size"] ** 2
        num_positions = None
    else:
        num_positions = params["img/pos_embedding"].shape[1]
        side = math.isqrt(num_positions)
        vision_config["image_size"] = vision["patch_size"] * side
    text_config = {
        "vocab_size": text["vocabulary_size"],
        "hidden_size": text["width"],
        "intermediate_size": text["mlp_dim"],
        "num_hidden_layers": text["depth"],
        "num_attention_heads": text["num_heads"],
        "max_position_embeddings": text["sequence_length"],
        "projection_size": text["embed_dim"] or text["width"],
        "hidden_act": act,
        "layer_norm_eps": eps,
        "attention_dropout": 0.0,
        # Token ids are metadata that the model never reads; keep them inside the tiny vocabulary.
        "pad_token_id": 1,
        "bos_token_id": None,
        "eos_token_id": 1,
    }
    cls = transformers.Siglip2Model if naflex else transformers.SiglipModel
    config_cls = transformers.Siglip2Config if naflex else transformers.SiglipConfig
    config = config_cls(text_config=text_config, vision_config=vision_config)
    model = cls._from_config(config, attn_implementation="eager", dtype=torch.float32)
    if num_positions is not None and num_positions != side * side:
        embeddings = model.vision_model.embeddings
        embeddings.position_embedding = torch.nn.Embedding(num_positions, vision["width"])
        embeddings.num_patches = embeddings.num_positions = num_positions
        embeddings.register_buffer(
            "position_ids", torch.arange(num_positions).expand((1, -1)), persistent=False
        )

    from keras_siglip.convert.transformers import tree_to_state_dict

    state = tree_to_state_dict(params, text["width"])
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    if variant in ("map_residual", "map_unscaled"):
        _break_transformers_map(model.vision_model.head, variant)
    return model.eval()


def _break_transformers_map(head, variant):
    import torch

    attention = head.attention
    original = attention.forward

    def forward(query, key, value, *args, **kwargs):
        if variant == "map_residual":
            out, weights = original(query, key, value, *args, **kwargs)
            return out + query, weights
        # Attention written out without the 1/sqrt(head_dim) scale.
        mask = kwargs.get("key_padding_mask")
        width, heads = attention.embed_dim, attention.num_heads
        wq, wk, wv = attention.in_proj_weight.split(width)
        bq, bk, bv = attention.in_proj_bias.split(width)

        def split(x):
            return x.reshape(x.shape[0], x.shape[1], heads, width // heads).transpose(1, 2)

        q = split(query @ wq.T + bq)
        k, v = split(key @ wk.T + bk), split(value @ wv.T + bv)
        logits = q @ k.transpose(-1, -2)
        if mask is not None:
            logits = logits.masked_fill(mask[:, None, None, :].bool(), float("-inf"))
        out = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(query.shape[0], -1, width)
        return attention.out_proj(out), None

    attention.forward = forward


def transformers_fn(kit, variant=None, model=None):
    """`fn(params, inputs)` running transformers with forward hooks on every stage."""
    import torch

    def fn(params, inputs):
        nonlocal model
        if model is None:
            model = transformers_model(kit, variant)
        store, handles = {}, []

        def hook(module, name, transform=lambda o: o, pre=False):
            def grab(mod, args, out=None):
                value = args[0] if pre else out
                if isinstance(value, tuple):
                    value = value[0]
                store[name] = transform(value).detach().cpu().numpy().astype(np.float64)

            if pre:
                handles.append(module.register_forward_pre_hook(grab))
            else:
                handles.append(module.register_forward_hook(grab))

        naflex = "patches" in inputs
        for tower, prefix in ((model.vision_model, "img"), (model.text_model, "txt")):
            emb = tower.embeddings
            if tower is model.vision_model:
                if naflex:
                    hook(emb.patch_embedding, "img/stem")
                else:
                    hook(emb.patch_embedding, "img/stem", lambda o: o.permute(0, 2, 3, 1))
            else:
                hook(emb.token_embedding, "txt/embedded")
            hook(emb, f"{prefix}/with_posemb")
            for i, layer in enumerate(tower.encoder.layers):
                hook(layer.self_attn, f"{prefix}/block{i:02d}/sa")
                hook(layer.layer_norm2, f"{prefix}/block{i:02d}/+sa", pre=True)
                hook(layer.mlp, f"{prefix}/block{i:02d}/mlp")
                hook(layer, f"{prefix}/block{i:02d}/+mlp")
            norm = tower.post_layernorm if prefix == "img" else tower.final_layer_norm
            hook(norm, f"{prefix}/encoded")
            hook(tower.head, f"{prefix}/pooled")
        try:
            kwargs = {"input_ids": torch.from_numpy(np.asarray(inputs["token_ids"], np.int64))}
            if naflex:
                kwargs["pixel_values"] = torch.from_numpy(np.asarray(inputs["patches"], np.float32))
                kwargs["pixel_attention_mask"] = torch.from_numpy(
                    np.asarray(inputs["patch_mask"], np.int64)
                )
                kwargs["spatial_shapes"] = torch.from_numpy(
                    np.asarray(inputs["spatial_shapes"], np.int64)
                )
            else:
                images = np.asarray(inputs["images"], np.float32).transpose(0, 3, 1, 2)
                kwargs["pixel_values"] = torch.from_numpy(np.ascontiguousarray(images))
            model.zero_grad(set_to_none=True)
            out = model(**kwargs, return_loss=True)
            out.image_embeds.retain_grad()
            out.text_embeds.retain_grad()
            out.loss.backward()
        finally:
            for handle in handles:
                handle.remove()
        stages = dict(store)
        if naflex:
            stages["img/posemb"] = stages["img/with_posemb"] - stages["img/stem"]
        stages["txt/pre_logits"] = stages["txt/encoded"][:, -1]

        def np64(t):
            return t.detach().cpu().numpy().astype(np.float64)

        stages["zimg"], stages["ztxt"] = np64(out.image_embeds), np64(out.text_embeds)
        stages["logits"] = np64(out.logits_per_image)
        stages["loss"] = np64(out.loss).reshape(())
        stages["grad_zimg"] = np64(out.image_embeds.grad)
        stages["grad_ztxt"] = np64(out.text_embeds.grad)
        stages["grad_t_param"] = np64(model.logit_scale.grad).reshape(())
        stages["grad_b"] = np64(model.logit_bias.grad).reshape(())
        return stages

    return fn


# --------------------------------------------------------------------------------------
# Command line.


def run_vectors(out_dir, tiny=None, preset=None, seed=0):
    """`python -m keras_siglip vectors`: write one kit (or the default set when nothing given)."""
    if preset is not None:
        return [write_preset_kit(preset, out_dir, seed)]
    names = [tiny] if tiny else list(DEFAULT_KITS)
    written = []
    for name in names:
        folder = Path(out_dir) if tiny else Path(out_dir) / name
        write_kit(build_kit(name, seed), folder)
        written.append(folder)
    return written


class _ChildReport:
    """The outcome of a verification run in a child process (its report is already printed)."""

    def __init__(self, returncode):
        self.ok = returncode == 0
        self.first_failure = None if self.ok else "(see above)"


def run_verify(kit_path, against="keras", backend=None, variant=None):
    """`python -m keras_siglip verify`: print the report; `.ok` is False on a failing stage.

    Keras fixes its backend when first imported (importing keras_siglip does), so a `backend`
    other than the current one reruns the command in a child process with `KERAS_BACKEND` set.
    """
    if backend is not None and against == "keras":
        import keras

        if keras.backend.backend() != backend:
            import subprocess
            import sys

            command = [sys.executable, "-m", "keras_siglip", "verify", str(kit_path),
                       "--against", against]
            if variant:
                command += ["--variant", variant]
            env = {**os.environ, "KERAS_BACKEND": backend}
            return _ChildReport(subprocess.call(command, env=env))
    try:
        kit = load_kit(kit_path)
    except (KitWeightsError, FileNotFoundError) as error:  # a preset kit's checkpoint
        import sys

        print(f"error: {error}", file=sys.stderr)
        return _ChildReport(1)
    if against == "keras":
        import keras

        print(f"keras-siglip on the {keras.backend.backend()} backend")
        model = None
        if variant:
            model = keras_model(kit)
            break_keras_model(model, variant)
        fn = keras_fn(kit, model)
    elif against == "transformers":
        import transformers

        print(f"transformers {transformers.__version__} (torch, eager attention, float32)")
        fn = transformers_fn(kit, variant)
    else:
        raise ValueError(f"--against must be 'keras' or 'transformers', got {against!r}")
    report = verify(kit, fn)
    print(report)
    return report
