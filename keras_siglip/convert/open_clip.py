"""open_clip / timm SigLIP state dicts (safetensors) <-> `SigLIP` models.

The names and the open_clip configs are in `open_clip_names.py` (docs/checkpoints.md, "open_clip
state dict"). Only safetensors files are read: a pickle (`.bin`, `.pt`) can run code when
loaded, so it is refused with the safe way to convert it. open_clip's hub folders hold
`open_clip_model.safetensors` beside `open_clip_config.json`; a folder like that is read too,
its config telling what the shapes cannot (the image size) and that the model is a SigLIP.
"""

import json
import logging
from pathlib import Path

import numpy as np

from keras_siglip.builders import build_model
from keras_siglip.convert.big_vision import assign_tree, model_to_tree
from keras_siglip.convert.io import (
    atomic_output,
    check_fit,
    check_model,
    packed_rows,
    read_safetensors,
    track,
)
from keras_siglip.convert.open_clip_names import (  # noqa: F401  (re-exported)
    OPEN_CLIP_CONFIGS,
    architecture,
    config_architecture,
    config_layout,
    from_open_clip,
    infer_config,
    layout,
    matching_configs,
    state_dict_shapes,
    to_open_clip,
)
from keras_siglip.models import SigLIP, SigLIPNaFlexVisionEncoder

logger = logging.getLogger("keras_siglip.convert")
_METADATA_KEY = "keras_siglip_architecture"  # written by save_open_clip: the towers' kwargs


# --------------------------------------------------------------------------------------
# Reading.


# open_clip's hub folders hold the weights beside the model config (`{"model_cfg": ...}`).
WEIGHTS_FILE = "open_clip_model.safetensors"
PICKLE_FILE = "open_clip_pytorch_model.bin"
CONFIG_FILE = "open_clip_config.json"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _refuse_pickle(path):
    out = path.with_suffix(".safetensors")
    raise ValueError(
        f"{path} is a pickle checkpoint; keras-siglip reads only safetensors files, because "
        "loading a pickle can run arbitrary code. Convert it once, in an environment you trust, "
        "with: python -c \"import torch, safetensors.torch as st; "
        f"sd = torch.load('{path}', map_location='cpu', weights_only=True); "
        "sd = sd.get('state_dict', sd); "
        "st.save_file({k: v.contiguous() for k, v in sd.items()}, "
        f"'{out}')\" (weights_only=True refuses to run code), or download the {WEIGHTS_FILE} "
        "that open_clip's hub folders hold beside the .bin."
    )


def safetensors_keys(path):
    """`(tensor names, metadata)` of a safetensors file (its header only), or None."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            return list(f.keys()), f.metadata() or {}
    except Exception:  # noqa: BLE001  (any unreadable file is simply not this format)
        return None


def _weights_file(path):
    """The safetensors file of `path`: the file itself, or the one in an open_clip hub folder."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / WEIGHTS_FILE).is_file():
        return path / WEIGHTS_FILE
    if (path / PICKLE_FILE).is_file():
        _refuse_pickle(path / PICKLE_FILE)
    raise FileNotFoundError(f"No {WEIGHTS_FILE} in {path}: an open_clip hub folder holds it "
                            f"beside {CONFIG_FILE}.")


def is_open_clip_file(path):
    """True for an open_clip SigLIP checkpoint: a `.safetensors` file of its tensors, an open_clip
    hub folder, or open_clip's pickle (`open_clip_pytorch_model.bin`, which the loader refuses
    with the safe way to convert it)."""
    path = Path(path)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            return False
        if not (path / WEIGHTS_FILE).is_file():
            return (path / PICKLE_FILE).is_file()
        path = path / WEIGHTS_FILE
    if path.name == PICKLE_FILE:
        return path.is_file()
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return False
    found = safetensors_keys(path)
    keys = [_strip_module(k) for k in found[0]] if found else []
    return any(k.startswith("visual.trunk.") for k in keys) and "logit_bias" in keys


def _strip_module(name):
    # A state dict saved from a DistributedDataParallel wrapper prefixes every name.
    return name[len("module."):] if name.startswith("module.") else name


def _read(path):
    path = Path(path)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        _refuse_pickle(path)
    if not path.is_file():
        raise FileNotFoundError(f"No open_clip safetensors file at {path}.")
    with open(path, "rb") as f:
        start = f.read(2)
    if start == b"PK" or start[:1] == b"\x80":  # torch.save's zip or a bare pickle, any suffix
        _refuse_pickle(path)
    state = read_safetensors(path)
    if state and all(name.startswith("module.") for name in state):
        state = {_strip_module(name): value for name, value in state.items()}
    found = safetensors_keys(path)
    return state, (found[1] if found else {})


def _hub_config(file):
    """The `model_cfg` of the `open_clip_config.json` beside `file`, checked to be a SigLIP's."""
    config = file.parent / CONFIG_FILE
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{config} is not a readable open_clip config ({error}).") from error
    cfg = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(cfg, dict) or not {"vision_cfg", "text_cfg"} <= set(cfg):
        raise ValueError(f"{config} has no model_cfg with vision_cfg and text_cfg.")
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    # What makes the model a SigLIP rather than a CLIP with the same tensor names.
    siglip = {"vision_cfg.timm_pool": (v.get("timm_pool"), "map"),
              "text_cfg.no_causal_mask": (t.get("no_causal_mask"), True),
              "text_cfg.pool_type": (t.get("pool_type"), "last")}
    wrong = [f"{key}={found!r} (SigLIP: {want!r})" for key, (found, want) in siglip.items()
             if found != want]
    if wrong:
        raise ValueError(f"{config} describes an open_clip model that is not a SigLIP: "
                         f"{', '.join(wrong)}. keras-siglip converts open_clip's SigLIP models only.")
    return cfg


def _choose_config(state, hub, where):
    """The config of a state dict: from its shapes, narrowed by the hub config if any."""
    candidates = matching_configs({name: value.shape for name, value in state.items()})
    if not candidates:
        raise ValueError(
            f"Cannot infer the open_clip config of {where}: its tensors match none of "
            f"{', '.join(OPEN_CLIP_CONFIGS)}. Pass config= (one of those names, or "
            "{'vision': {...}, 'text': {...}}), or --open-clip-config on the command line."
        )
    sizes = {name: config_architecture(name)["vision"]["image_size"] for name in candidates}
    if hub is not None:  # the hub config tells the image size that the shapes cannot
        size = hub["vision_cfg"].get("image_size")
        if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
            size = size[0]
        same = [name for name in candidates if sizes[name] == size]
        if not same and isinstance(size, int):  # a size no released config has
            arch = config_architecture(candidates[0])
            return {"vision": {**arch["vision"], "image_size": size}, "text": arch["text"]}
        candidates = same or candidates
    if len(candidates) > 1:
        others = ", ".join(f"{n} (image size {sizes[n]})" for n in candidates[1:])
        logger.warning("%s holds the tensors of %s (image size %s) and of %s; built %s. Pass "
                    "config= (--open-clip-config) to choose.", where, candidates[0],
                    sizes[candidates[0]], others, candidates[0])
    return candidates[0]


def load_open_clip(path, *, config=None, progress=None):
    """An open_clip SigLIP state dict (safetensors) to the equivalent `SigLIP`.

    Args:
        path: a `.safetensors` file (open_clip's `open_clip_model.safetensors`, or one written
            by `save_open_clip`), or an open_clip hub folder holding `open_clip_model.safetensors`
            and `open_clip_config.json`. Pickles (`.bin`, `.pt`) are refused.
        config: None to infer the open_clip config from the tensors' shapes (narrowed by the
            folder's `open_clip_config.json`, or taken from the architecture `save_open_clip`
            records); an open_clip config name such as `"ViT-B-16-SigLIP"`; or
            `{"vision": {...}, "text": {...}}` tower keyword arguments.
        progress: optional tqdm-like callable shown over the tensors.

    Returns:
        A `SigLIP` whose weights are the file's, bit for bit (float32).

    Raises:
        ValueError: a pickle, an unreadable file, a hub config that is not a SigLIP's, an
            architecture that cannot be inferred, or tensors that do not fit the config (all
            listed in one error, in open_clip names).
    """
    file = _weights_file(path)
    state, metadata = _read(file)
    hub = _hub_config(file)
    where = f"the open_clip checkpoint {file}"
    described = repr(config) if isinstance(config, str) else "the config given"
    if config is None and _METADATA_KEY in metadata:
        try:
            config = json.loads(metadata[_METADATA_KEY])
        except ValueError as error:
            raise ValueError(
                f"The metadata entry {_METADATA_KEY!r} of {file} is not valid JSON ({error}); "
                "pass config= (--open-clip-config) to read the tensors without it."
            ) from None
        described = "the sizes its metadata records"
    if config is None:
        config = _choose_config(state, hub, where)
        described = repr(config) if isinstance(config, str) else "its open_clip_config.json"
    expected = config_layout(config)  # checked before a model is built
    check_fit(
        {name: shape for name, (shape, _) in expected.items()},
        {name: value.shape for name, value in state.items()},
        f"The open_clip checkpoint {file} does not fit the architecture of {described}.",
        expects="the config implies",
        note=lambda name: f"  [big_vision {', '.join(p[0] for p in expected[name][1])}]",
    )
    arch = architecture(config)
    model = build_model(False, arch["vision"], arch["text"], where=str(file))
    tree = {}
    for name, (_, parts) in track(expected.items(), progress, "convert"):
        value = state[name]
        for bv_name, shape, transform, slot in parts:
            part = value if slot is None else packed_rows(value, *slot)
            tree[bv_name] = np.ascontiguousarray(from_open_clip(part, transform, shape))
    return assign_tree(model, tree)


# --------------------------------------------------------------------------------------
# Writing.


def model_to_state_dict(model, progress=None):
    """The weights of a fixed-resolution `SigLIP` as an open_clip state dict (float32)."""
    tree = model_to_tree(model, progress)
    state = {}
    for name, (_, parts) in layout({n: v.shape for n, v in tree.items()}).items():
        arrays = [to_open_clip(np.asarray(tree[bv], np.float32), t) for bv, _, t, _ in parts]
        state[name] = np.array(arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0),
                               dtype=np.float32, order="C")
    return state


def _architecture(model):
    v, t = model.vision_encoder, model.text_encoder
    vision = {"image_size": list(v.image_size), "patch_size": v.patch_size, "width": v.width,
              "depth": v.depth, "mlp_dim": v.mlp_dim, "num_heads": v.num_heads}
    text = {"vocabulary_size": t.vocabulary_size, "sequence_length": t.sequence_length,
            "width": t.width, "depth": t.depth, "mlp_dim": t.mlp_dim, "num_heads": t.num_heads,
            "embed_dim": t.embed_dim if t.head is not None else None,
            "use_head": t.head is not None}
    return {"vision": vision, "text": text}


def save_open_clip(model, path, *, config=None, overwrite=False, progress=None, sources=()):
    """Write a fixed-resolution `SigLIP` as an open_clip state dict in one `.safetensors` file.

    `open_clip.create_model(name)` followed by `load_state_dict` reads it. The file's metadata
    records the towers' sizes (so that `load_open_clip` needs no config, even for sizes no
    open_clip config has) and, as `open_clip_config`, the config name: `config` if given (the
    tensors must then fit it: a mismatch is reported in open_clip names), else the name inferred
    from the shapes, when a released config has them.

    Args:
        model: a fixed-resolution two-tower `SigLIP`.
        path: the `.safetensors` file, written under a temporary name and renamed when complete.
        config: optional open_clip config name to record (and check the tensors against), or
            an architecture dict (`{"vision": {...}, "text": {...}}`, checked, not recorded).
        overwrite: replace an existing file.
        progress: optional tqdm-like callable shown over the tensors.
        sources: paths read; a destination that is one is refused.

    Returns:
        The file as a `Path`.
    """
    check_model("save_open_clip", model, SigLIP, "a two-tower SigLIP (open_clip's SigLIP)")
    if not isinstance(model, SigLIP) or isinstance(model.vision_encoder,
                                                   SigLIPNaFlexVisionEncoder):
        raise ValueError(
            "save_open_clip writes a fixed-resolution two-tower SigLIP (open_clip's timm-based "
            f"SigLIP); got {type(model).__name__}"
            + (" with a NaFlex tower: save it as a transformers folder instead."
               if isinstance(model, SigLIP) else ".")
        )
    from safetensors.numpy import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"An open_clip output is one .safetensors file; got {path}: name it "
                         f"{path.with_suffix('.safetensors').name}.")
    state = model_to_state_dict(model, progress)
    shapes = {k: v.shape for k, v in state.items()}
    if config is not None:
        check_fit(state_dict_shapes(config), shapes,
                  f"The model does not fit the open_clip config {config!r}.",
                  expects=f"{config} has")
    else:
        found = matching_configs(shapes)
        config = found[0] if found else None
    metadata = {"format": "pt", _METADATA_KEY: json.dumps(_architecture(model), sort_keys=True)}
    if isinstance(config, str):  # a config given as a dict is recorded in the architecture only
        metadata["open_clip_config"] = config
    with atomic_output(path, overwrite=overwrite, folder=False, sources=sources) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path
