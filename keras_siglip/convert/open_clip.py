"""open_clip / timm SigLIP state dicts (safetensors) <-> the canonical big_vision tree.

open_clip builds its SigLIP models (`ViT-B-16-SigLIP`, `ViT-SO400M-14-SigLIP-384`,
`ViT-B-16-SigLIP2-256`, ...) as a `CustomTextCLIP`: a timm `VisionTransformer` (`global_pool
"map"`, no class token, no projection) under `visual.trunk.`, open_clip's `TextTransformer`
(no causal mask, last-token pooling, a Linear `text_projection` with bias) under `text.`, and
scalar `logit_scale` / `logit_bias`. The names, as written in docs/checkpoints.md:

    big_vision                                open_clip                                  fused
    img/embedding/{kernel,bias}               visual.trunk.patch_embed.proj.{weight,bias}
    img/pos_embedding (1,N,W)                 visual.trunk.pos_embed (1,N,W)
    .../encoderblock_i/LayerNorm_{0,1}        visual.trunk.blocks.i.norm{1,2}
    .../MultiHeadDotProductAttention_0/q,k,v  visual.trunk.blocks.i.attn.qkv (3W,W), (3W,) rows [q; k; v]
    .../MultiHeadDotProductAttention_0/out    visual.trunk.blocks.i.attn.proj
    .../MlpBlock_0/Dense_{0,1}                visual.trunk.blocks.i.mlp.fc{1,2}
    img/Transformer/encoder_norm              visual.trunk.norm
    img/MAPHead_0/probe (1,1,W)               visual.trunk.attn_pool.latent (1,1,W)
    img/MAPHead_0/.../query                   visual.trunk.attn_pool.q
    img/MAPHead_0/.../key, value              visual.trunk.attn_pool.kv (2W,W), (2W,)    rows [k; v]
    img/MAPHead_0/.../out, LayerNorm_0, Mlp   visual.trunk.attn_pool.proj, .norm, .mlp.fc{1,2}
    txt/Embed_0/embedding                     text.token_embedding.weight
    txt/pos_embedding (1,L,Wt)                text.positional_embedding (L,Wt)
    txt/Encoder_0/encoderblock_i/...          text.transformer.resblocks.i.{ln_1, ln_2,
                                              attn.in_proj_{weight,bias}, attn.out_proj,
                                              mlp.c_fc, mlp.c_proj}                      rows [q; k; v]
    txt/Encoder_0/encoder_norm                text.ln_final
    txt/head                                  text.text_projection (E,Wt)
    t, b (1,)                                 logit_scale, logit_bias ()

Linear weights are `(out, in)` (kernel `.T`; q/k/v `reshape(W, W).T`, feature `h*hd+d`), the
patch convolution `(W, 3, p, p)`. Only safetensors files are read: a pickle (`.bin`, `.pt`)
can run code when loaded.
"""

import json
import math
import re
from pathlib import Path

import numpy as np

from keras_siglip.architectures import PRESETS
from keras_siglip.builders import build_model, tower_kwargs
from keras_siglip.convert import names
from keras_siglip.convert.big_vision import assign_tree, model_to_tree
from keras_siglip.convert.io import atomic_output, check_fit, read_safetensors, track
from keras_siglip.models import SigLIP, SigLIPNaFlexVisionEncoder

# open_clip config name -> (keras-siglip preset row, image size when it differs from the row's).
OPEN_CLIP_CONFIGS = {
    "ViT-B-16-SigLIP": ("siglip_base_patch16_224", None),
    "ViT-B-16-SigLIP-256": ("siglip_base_patch16_256", None),
    "ViT-B-16-SigLIP-384": ("siglip_base_patch16_384", None),
    "ViT-B-16-SigLIP-512": ("siglip_base_patch16_512", None),
    "ViT-B-16-SigLIP-i18n-256": ("siglip_base_patch16_256_multilingual", None),
    "ViT-L-16-SigLIP-256": ("siglip_large_patch16_256", None),
    "ViT-L-16-SigLIP-384": ("siglip_large_patch16_384", None),
    "ViT-SO400M-14-SigLIP": ("siglip_so400m_patch14_224", None),
    "ViT-SO400M-14-SigLIP-384": ("siglip_so400m_patch14_384", None),
    "ViT-SO400M-16-SigLIP-i18n-256": ("siglip_so400m_patch16_256_i18n", None),
    "ViT-B-32-SigLIP2-256": ("siglip2_base_patch32_256", None),
    "ViT-B-16-SigLIP2": ("siglip2_base_patch16_224", None),
    "ViT-B-16-SigLIP2-256": ("siglip2_base_patch16_256", None),
    "ViT-B-16-SigLIP2-384": ("siglip2_base_patch16_384", None),
    "ViT-B-16-SigLIP2-512": ("siglip2_base_patch16_512", None),
    "ViT-L-16-SigLIP2-256": ("siglip2_large_patch16_256", None),
    "ViT-L-16-SigLIP2-384": ("siglip2_large_patch16_384", None),
    "ViT-L-16-SigLIP2-512": ("siglip2_large_patch16_512", None),
    "ViT-SO400M-14-SigLIP2": ("siglip2_so400m_patch14_224", None),
    "ViT-SO400M-14-SigLIP2-378": ("siglip2_so400m_patch14_384", 378),
    "ViT-SO400M-16-SigLIP2-256": ("siglip2_so400m_patch16_256", None),
    "ViT-SO400M-16-SigLIP2-384": ("siglip2_so400m_patch16_384", None),
    "ViT-SO400M-16-SigLIP2-512": ("siglip2_so400m_patch16_512", None),
    "ViT-gopt-16-SigLIP2-256": ("siglip2_giant_opt_patch16_256", None),
    "ViT-gopt-16-SigLIP2-384": ("siglip2_giant_opt_patch16_384", None),
}
_METADATA_KEY = "keras_siglip_architecture"  # written by save_open_clip: the towers' kwargs

# Block leaves: big_vision -> (timm vision name, open_clip text name, transform, slot of q/k/v).
_BLOCK = {
    "LayerNorm_0/scale": ("norm1.weight", "ln_1.weight", "same", None),
    "LayerNorm_0/bias": ("norm1.bias", "ln_1.bias", "same", None),
    "LayerNorm_1/scale": ("norm2.weight", "ln_2.weight", "same", None),
    "LayerNorm_1/bias": ("norm2.bias", "ln_2.bias", "same", None),
    "MlpBlock_0/Dense_0/kernel": ("mlp.fc1.weight", "mlp.c_fc.weight", "dense", None),
    "MlpBlock_0/Dense_0/bias": ("mlp.fc1.bias", "mlp.c_fc.bias", "same", None),
    "MlpBlock_0/Dense_1/kernel": ("mlp.fc2.weight", "mlp.c_proj.weight", "dense", None),
    "MlpBlock_0/Dense_1/bias": ("mlp.fc2.bias", "mlp.c_proj.bias", "same", None),
    "MultiHeadDotProductAttention_0/out/kernel": ("attn.proj.weight", "attn.out_proj.weight",
                                                  "heads_out", None),
    "MultiHeadDotProductAttention_0/out/bias": ("attn.proj.bias", "attn.out_proj.bias", "same",
                                                None),
    **{f"MultiHeadDotProductAttention_0/{proj}/{leaf}": (
        f"attn.qkv.{hf}", f"attn.in_proj_{hf}", "dense" if leaf == "kernel" else "flat", (slot, 3))
       for slot, proj in enumerate(("query", "key", "value"))
       for leaf, hf in (("kernel", "weight"), ("bias", "bias"))},
}
_MAP_HEAD = {
    "probe": ("latent", "same", None),
    "MultiHeadDotProductAttention_0/query/kernel": ("q.weight", "dense", None),
    "MultiHeadDotProductAttention_0/query/bias": ("q.bias", "flat", None),
    "MultiHeadDotProductAttention_0/key/kernel": ("kv.weight", "dense", (0, 2)),
    "MultiHeadDotProductAttention_0/key/bias": ("kv.bias", "flat", (0, 2)),
    "MultiHeadDotProductAttention_0/value/kernel": ("kv.weight", "dense", (1, 2)),
    "MultiHeadDotProductAttention_0/value/bias": ("kv.bias", "flat", (1, 2)),
    "MultiHeadDotProductAttention_0/out/kernel": ("proj.weight", "heads_out", None),
    "MultiHeadDotProductAttention_0/out/bias": ("proj.bias", "same", None),
    "LayerNorm_0/scale": ("norm.weight", "same", None),
    "LayerNorm_0/bias": ("norm.bias", "same", None),
    "MlpBlock_0/Dense_0/kernel": ("mlp.fc1.weight", "dense", None),
    "MlpBlock_0/Dense_0/bias": ("mlp.fc1.bias", "same", None),
    "MlpBlock_0/Dense_1/kernel": ("mlp.fc2.weight", "dense", None),
    "MlpBlock_0/Dense_1/bias": ("mlp.fc2.bias", "same", None),
}
_SINGLE = {
    "img/embedding/kernel": ("visual.trunk.patch_embed.proj.weight", "conv"),
    "img/embedding/bias": ("visual.trunk.patch_embed.proj.bias", "same"),
    "img/pos_embedding": ("visual.trunk.pos_embed", "same"),
    "img/Transformer/encoder_norm/scale": ("visual.trunk.norm.weight", "same"),
    "img/Transformer/encoder_norm/bias": ("visual.trunk.norm.bias", "same"),
    "txt/Embed_0/embedding": ("text.token_embedding.weight", "same"),
    "txt/pos_embedding": ("text.positional_embedding", "rows"),
    "txt/Encoder_0/encoder_norm/scale": ("text.ln_final.weight", "same"),
    "txt/Encoder_0/encoder_norm/bias": ("text.ln_final.bias", "same"),
    "txt/head/kernel": ("text.text_projection.weight", "dense"),
    "txt/head/bias": ("text.text_projection.bias", "same"),
    "t": ("logit_scale", "scalar"),
    "b": ("logit_bias", "scalar"),
}


def open_clip_name(bv_name):
    """`(open_clip name, transform, (slot, of) or None)` of a big_vision tensor name."""
    if bv_name in _SINGLE:
        return (*_SINGLE[bv_name], None)
    match = re.match(r"(img/Transformer|txt/Encoder_0)/encoderblock_(\d+)/(.*)$", bv_name)
    if match and match.group(3) in _BLOCK:
        vision, text, transform, slot = _BLOCK[match.group(3)]
        if match.group(1).startswith("img"):
            return f"visual.trunk.blocks.{match.group(2)}.{vision}", transform, slot
        return f"text.transformer.resblocks.{match.group(2)}.{text}", transform, slot
    if bv_name.startswith("img/MAPHead_0/") and bv_name[14:] in _MAP_HEAD:
        leaf, transform, slot = _MAP_HEAD[bv_name[14:]]
        return f"visual.trunk.attn_pool.{leaf}", transform, slot
    raise KeyError(f"No open_clip name for the big_vision tensor {bv_name!r}.")


def _linear_shape(shape, in_axes):
    return math.prod(shape[in_axes:]), math.prod(shape[:in_axes])


def _to_open_clip(x, transform):
    if transform == "dense":
        return x.reshape(_linear_shape(x.shape, 1)[::-1]).T
    if transform == "heads_out":
        return x.reshape(_linear_shape(x.shape, 2)[::-1]).T
    if transform == "conv":
        return x.transpose(3, 2, 0, 1)
    if transform == "flat":
        return x.reshape(-1)
    if transform == "rows":
        return x.reshape(-1, x.shape[-1])
    if transform == "scalar":
        return x.reshape(())
    return x


def _open_clip_shape(shape, transform):
    """The open_clip shape of a big_vision tensor of `shape` (no array is made)."""
    if transform in ("dense", "heads_out"):
        return _linear_shape(shape, 1 if transform == "dense" else 2)
    if transform == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    if transform == "flat":
        return (math.prod(shape),)
    if transform == "rows":
        return (math.prod(shape[:-1]), shape[-1])
    if transform == "scalar":
        return ()
    return tuple(shape)


def _from_open_clip(y, transform, shape):
    if transform in ("dense", "heads_out"):
        return y.T.reshape(shape)
    if transform == "conv":
        return y.transpose(2, 3, 1, 0).reshape(shape)
    return y.reshape(shape)


def layout(bv_shapes):
    """`{open_clip name: (shape, [(big_vision name, shape, transform, slot)])}` of a tree's shapes.

    Fused tensors (`attn.qkv`, `attn.in_proj_*`, `attn_pool.kv`) list their parts in row order.
    """
    out = {}
    for bv_name, shape in bv_shapes.items():
        shape = tuple(int(d) for d in shape)
        name, transform, slot = open_clip_name(bv_name)
        oc_shape = _open_clip_shape(shape, transform)
        if slot is not None:
            oc_shape = (oc_shape[0] * slot[1], *oc_shape[1:])
        out.setdefault(name, [oc_shape, []])[1].append((bv_name, shape, transform, slot))
    return {name: (tuple(s), sorted(parts, key=lambda p: p[3][0] if p[3] else 0))
            for name, (s, parts) in out.items()}


def config_architecture(name):
    """`{"naflex": False, "vision": ..., "text": ...}` of a known open_clip config name."""
    if name not in OPEN_CLIP_CONFIGS:
        raise ValueError(
            f"Unknown open_clip config {name!r}; known: {', '.join(OPEN_CLIP_CONFIGS)}. For another "
            "architecture pass config={'vision': {...}, 'text': {...}} with the towers' keyword "
            "arguments."
        )
    preset, image_size = OPEN_CLIP_CONFIGS[name]
    vision, text = tower_kwargs(PRESETS[preset])
    if image_size is not None:
        vision["image_size"] = image_size
    return {"naflex": False, "vision": vision, "text": text}


def state_dict_shapes(config):
    """`{open_clip name: shape}` of the state dict of a config name or architecture dict."""
    arch = config_architecture(config) if isinstance(config, str) else _as_arch(config)
    size = arch["vision"]["image_size"]
    vision = {**arch["vision"], "image_size": (size, size) if isinstance(size, int) else size}
    shapes = names.tree_shapes({**arch, "vision": vision})
    return {name: shape for name, (shape, _) in layout(shapes).items()}


def _as_arch(config):
    if not isinstance(config, dict) or not {"vision", "text"} <= set(config):
        raise ValueError(
            f"config must be an open_clip config name ({', '.join(list(OPEN_CLIP_CONFIGS)[:3])}, "
            f"...) or {{'vision': {{...}}, 'text': {{...}}}}; got {config!r}."
        )
    vision = dict(config["vision"])
    if isinstance(vision.get("image_size"), (list, tuple)):
        vision["image_size"] = tuple(vision["image_size"])
    return {"naflex": False, "vision": vision, "text": dict(config["text"])}


def infer_config(shapes):
    """The open_clip config name whose state dict has exactly these `{name: shape}`, or None."""
    shapes = {name: tuple(int(d) for d in s) for name, s in shapes.items()}
    for name in OPEN_CLIP_CONFIGS:
        if state_dict_shapes(name) == shapes:
            return name
    return None


# --------------------------------------------------------------------------------------
# Reading and writing.


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _refuse_pickle(path):
    raise ValueError(
        f"{path} is a pickle checkpoint; keras-siglip reads only safetensors files, because "
        "loading a pickle can run arbitrary code. Convert it once, in an environment you trust, "
        "with: python -c \"import torch, safetensors.torch as st; "
        f"sd = torch.load('{path.name}', map_location='cpu', weights_only=True); "
        "st.save_file({k: v.contiguous() for k, v in sd.items()}, "
        f"'{path.with_suffix('.safetensors').name}')\" (weights_only=True refuses code), or "
        "download the open_clip_model.safetensors the hub offers beside the .bin."
    )


def safetensors_keys(path):
    """The tensor names of a safetensors file (its header only), or None when unreadable."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            return list(f.keys()), f.metadata() or {}
    except Exception:  # noqa: BLE001  (any unreadable file is simply not this format)
        return None


def is_open_clip_file(path):
    """True for a `.safetensors` file whose tensors are an open_clip SigLIP's."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return False
    found = safetensors_keys(path)
    return found is not None and any(k.startswith("visual.trunk.") for k in found[0]) \
        and "logit_bias" in found[0]


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
    found = safetensors_keys(path)
    metadata = found[1] if found else {}
    return read_safetensors(path), metadata


def load_open_clip(path, *, config=None, progress=None):
    """An open_clip SigLIP state dict (a `.safetensors` file) to the equivalent `SigLIP`.

    Args:
        path: the `.safetensors` file (open_clip's `open_clip_model.safetensors`, or one written
            by `save_open_clip`). Pickles (`.bin`, `.pt`) are refused.
        config: None to infer the open_clip config from the tensors' shapes (or from the
            architecture `save_open_clip` records); an open_clip config name such as
            `"ViT-B-16-SigLIP"`; or `{"vision": {...}, "text": {...}}` tower keyword arguments.
        progress: optional tqdm-like callable shown over the tensors.

    Raises:
        ValueError: a pickle, an unreadable file, an architecture that cannot be inferred, or
            tensors that do not fit the config (all listed in one error, in open_clip names).
    """
    state, metadata = _read(path)
    where = f"the open_clip checkpoint {path}"
    if config is None and _METADATA_KEY in metadata:
        config = json.loads(metadata[_METADATA_KEY])
    if config is None:
        config = infer_config({name: value.shape for name, value in state.items()})
        if config is None:
            raise ValueError(
                f"Cannot infer the open_clip config of {where}: its tensors match none of "
                f"{', '.join(OPEN_CLIP_CONFIGS)}. Pass config= (one of those names, or "
                "{'vision': {...}, 'text': {...}})."
            )
    arch = config_architecture(config) if isinstance(config, str) else _as_arch(config)
    model = build_model(False, arch["vision"], arch["text"], where=str(path))
    expected = layout({name: var.shape for name, var in names.tree_entries(model)})
    check_fit(
        {name: shape for name, (shape, _) in expected.items()},
        {name: value.shape for name, value in state.items()},
        f"The open_clip checkpoint {path} does not fit the architecture of "
        f"{config if isinstance(config, str) else 'the config given'}.",
        expects="the config implies",
        note=lambda name: f"  [big_vision {', '.join(p[0] for p in expected[name][1])}]",
    )
    tree = {}
    for name, (_, parts) in track(expected.items(), progress, "convert"):
        value = state[name]
        for bv_name, shape, transform, slot in parts:
            part = value
            if slot is not None:
                rows = value.shape[0] // slot[1]
                part = value[slot[0] * rows:(slot[0] + 1) * rows]
            tree[bv_name] = np.ascontiguousarray(_from_open_clip(part, transform, shape))
    return assign_tree(model, tree)


def model_to_state_dict(model, progress=None):
    """The weights of a fixed-resolution `SigLIP` as an open_clip state dict (float32)."""
    tree = model_to_tree(model, progress)
    state = {}
    for name, (_, parts) in layout({n: v.shape for n, v in tree.items()}).items():
        arrays = [_to_open_clip(np.asarray(tree[bv], np.float32), t) for bv, _, t, _ in parts]
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


def save_open_clip(model, path, *, overwrite=False, progress=None, sources=()):
    """Write a fixed-resolution `SigLIP` as an open_clip state dict in one `.safetensors` file.

    The file's metadata records the towers' sizes (so that `load_open_clip` needs no config
    for sizes no open_clip config has) and, when the shapes are a released config's, its name
    (`open_clip_config`). `open_clip.create_model(name)` followed by `load_state_dict` reads it.

    Returns:
        The file as a `Path`.
    """
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
    metadata = {"format": "pt", _METADATA_KEY: json.dumps(_architecture(model), sort_keys=True)}
    name = infer_config({k: v.shape for k, v in state.items()})
    if name is not None:
        metadata["open_clip_config"] = name
    with atomic_output(path, overwrite=overwrite, folder=False, sources=sources) as tmp:
        save_file(state, str(tmp), metadata=metadata)
    return path
