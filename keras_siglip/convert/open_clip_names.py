"""open_clip / timm SigLIP state-dict names and configs <-> the canonical big_vision tree.

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
patch convolution `(W, 3, p, p)`. Reading and writing are in `open_clip.py`.
"""

import functools
import math
import re

from keras_siglip.architectures import PRESETS
from keras_siglip.builders import tower_kwargs
from keras_siglip.convert import names

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
    # -384 and -378 hold the same tensors (27 x 27 patches of 14 either way); inference picks
    # -384, the size of Google's release, and says so.
    "ViT-SO400M-14-SigLIP-384": ("siglip_so400m_patch14_384", None),
    "ViT-SO400M-14-SigLIP-378": ("siglip_so400m_patch14_384", 378),
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


def to_open_clip(x, transform):
    """A big_vision array in open_clip's layout (one part of a fused tensor if fused)."""
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


def from_open_clip(y, transform, shape):
    """An open_clip array (one part of a fused tensor) in big_vision's layout of `shape`."""
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


def architecture(config):
    """`{"naflex": False, "vision": ..., "text": ...}` of a config name or architecture dict."""
    return config_architecture(config) if isinstance(config, str) else as_architecture(config)


def config_layout(config):
    """`layout(...)` of the state dict of a config name or architecture dict (no model built)."""
    arch = architecture(config)
    size = arch["vision"]["image_size"]
    vision = {**arch["vision"], "image_size": (size, size) if isinstance(size, int) else size}
    return layout(names.tree_shapes({**arch, "vision": vision}))


def state_dict_shapes(config):
    """`{open_clip name: shape}` of the state dict of a config name or architecture dict."""
    return {name: shape for name, (shape, _) in config_layout(config).items()}


def as_architecture(config):
    """`{"naflex": False, "vision": ..., "text": ...}` of `{"vision": {...}, "text": {...}}`."""
    if not isinstance(config, dict) or not {"vision", "text"} <= set(config):
        raise ValueError(
            f"config must be an open_clip config name ({', '.join(list(OPEN_CLIP_CONFIGS)[:3])}, "
            f"...) or {{'vision': {{...}}, 'text': {{...}}}}; got {config!r}."
        )
    vision = dict(config["vision"])
    if isinstance(vision.get("image_size"), (list, tuple)):
        vision["image_size"] = tuple(vision["image_size"])
    return {"naflex": False, "vision": vision, "text": dict(config["text"])}


def matching_configs(shapes):
    """The open_clip config names whose state dict has exactly these `{name: shape}`, in order."""
    shapes = {name: tuple(int(d) for d in s) for name, s in shapes.items()}
    return [name for name in OPEN_CLIP_CONFIGS if _config_shapes(name) == shapes]


def infer_config(shapes):
    """The first open_clip config name whose state dict has exactly these shapes, or None."""
    found = matching_configs(shapes)
    return found[0] if found else None


@functools.lru_cache(maxsize=None)
def _config_shapes_cached(name):
    return tuple(sorted((k, tuple(v)) for k, v in state_dict_shapes(name).items()))


def _config_shapes(name):
    return dict(_config_shapes_cached(name))
