"""The one table of SigLIP parameters: big_vision names, shapes, Keras variables, transformers names.

The canonical tree is big_vision's: flat `/`-joined names (docs/checkpoints.md). Every row of
the tables below is a `Param`:

* `name`: the big_vision name; `{i}` stands for an encoder block's index;
* `keras`: the Keras variable, as an attribute path from its tower (`blocks.{i}.mlp.fc1.kernel`;
  `t` and `b` from the `SigLIP` model);
* `shape`: in symbols of the tower's dimensions (`_vision_dims`, `_text_dims`);
* `hf`, `transform`, `slot`: the transformers state-dict name, the layout change between the
  two (the transforms live in `keras_siglip.convert.transformers`) and, for the MAP head's
  query, key and value, the slot in the tensor they are packed into;
* `when`: None, or the kind of tower the row belongs to (`"fixed"`, `"naflex"`, `"text_head"`).

Keras kernels use flax layouts, so big_vision <-> Keras is a plain copy. Both
`tree_entries(model)` and `tree_shapes(config)` expand the same rows, so they name the same
tensors.
"""

import collections
import re

from keras_siglip.models import (
    SigLIP,
    SigLIPNaFlexVisionEncoder,
    SigLIPTextEncoder,
)

Param = collections.namedtuple(
    "Param", ["name", "keras", "shape", "hf", "transform", "slot", "when"], defaults=(None, None)
)


def _dense(name, keras, shape, hf, transform="dense", when=None):
    """A kernel of `shape` and its bias (the kernel's last axis)."""
    return [
        Param(f"{name}/kernel", f"{keras}.kernel", shape, f"{hf}.weight", transform, when=when),
        Param(f"{name}/bias", f"{keras}.bias", shape.split()[-1], f"{hf}.bias", "same", when=when),
    ]


def _layer_norm(name, keras, hf):
    """A LayerNorm's scale and bias (width `W`)."""
    return [
        Param(f"{name}/scale", f"{keras}.gamma", "W", f"{hf}.weight", "same"),
        Param(f"{name}/bias", f"{keras}.beta", "W", f"{hf}.bias", "same"),
    ]


# An encoder block, as (big_vision leaf, Keras path, shape, transformers leaf, transform).
_BLOCK = [
    *_layer_norm("LayerNorm_0", "layer_norm_1", "layer_norm1"),
    *_layer_norm("LayerNorm_1", "layer_norm_2", "layer_norm2"),
    *_dense("MlpBlock_0/Dense_0", "mlp.fc1", "W M", "mlp.fc1"),
    *_dense("MlpBlock_0/Dense_1", "mlp.fc2", "M W", "mlp.fc2"),
    *[
        row
        for proj, hf in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"))
        for row in (
            Param(f"MultiHeadDotProductAttention_0/{proj}/kernel", f"attention.{proj}.kernel",
                  "W H D", f"self_attn.{hf}.weight", "dense"),
            Param(f"MultiHeadDotProductAttention_0/{proj}/bias", f"attention.{proj}.bias",
                  "H D", f"self_attn.{hf}.bias", "flat"),
        )
    ],
    *_dense("MultiHeadDotProductAttention_0/out", "attention.out", "H D W", "self_attn.out_proj",
            "heads_out"),
]

PACKED = ("query", "key", "value")
"""The MAP head projections transformers packs into `in_proj_*`, in row order."""


def _map_head_row(row):
    """A block row as the MAP head's: its own LayerNorm, q/k/v packed in transformers."""
    proj = row.name.split("/")[1]
    if proj in PACKED:
        leaf = "weight" if row.name.endswith("kernel") else "bias"
        return row._replace(hf=f"attention.in_proj_{leaf}", slot=PACKED.index(proj))
    return row._replace(hf=row.hf.replace("self_attn.", "attention."))


_MAP_HEAD = [
    *_layer_norm("LayerNorm_0", "layer_norm", "layernorm"),
    *[_map_head_row(row) for row in _BLOCK if not row.name.startswith("LayerNorm")],
]


def _under(rows, name, keras, hf):
    """`rows` with the prefixes of where they sit prepended."""
    return [
        row._replace(name=name + row.name, keras=keras + row.keras, hf=hf + row.hf) for row in rows
    ]


def _encoder(name, hf, norm):
    """An encoder's blocks and its final LayerNorm (`encoder_norm`, transformers' `norm`)."""
    return [
        *_under(_BLOCK, f"{name}/encoderblock_{{i}}/", "blocks.{i}.", f"{hf}.encoder.layers.{{i}}."),
        *_layer_norm(f"{name}/encoder_norm", "encoder_norm", f"{hf}.{norm}"),
    ]


_PATCH = "vision_model.embeddings.patch_embedding"
_VISION = [
    # Fixed resolution: a conv (p, p, 3, W); NaFlex: a Linear on flattened patches (p*p*3, W).
    *_dense("img/embedding", "patch_embedding.conv", "P P 3 W", _PATCH, "conv", when="fixed"),
    *_dense("img/embedding", "patch_embedding", "PP3 W", _PATCH, when="naflex"),
    Param("img/pos_embedding", "position_embedding.embeddings", "1 N W",
          "vision_model.embeddings.position_embedding.weight", "rows", when="fixed"),
    Param("img/pos_embedding", "position_embedding.embeddings", "G G W",
          "vision_model.embeddings.position_embedding.weight", "rows", when="naflex"),
    *_encoder("img/Transformer", "vision_model", "post_layernorm"),
    Param("img/MAPHead_0/probe", "head.probe", "1 1 W", "vision_model.head.probe", "same"),
    *_under(_MAP_HEAD, "img/MAPHead_0/", "head.", "vision_model.head."),
]

_TEXT = [
    Param("txt/Embed_0/embedding", "token_embedding.embeddings", "V W",
          "text_model.embeddings.token_embedding.weight", "same"),
    Param("txt/pos_embedding", "position_embedding.embeddings", "1 L W",
          "text_model.embeddings.position_embedding.weight", "rows"),
    *_encoder("txt/Encoder_0", "text_model", "final_layer_norm"),
    # big_vision's So400m/16-i18n has no txt/head.
    *_dense("txt/head", "head", "W E", "text_model.head", when="text_head"),
]

_LOGITS = [
    Param("t", "logit_scale", "1", "logit_scale", "same"),
    Param("b", "logit_bias", "1", "logit_bias", "same"),
]

TABLE = _VISION + _TEXT + _LOGITS
"""Every row, with `{i}` unexpanded."""


def _expand(rows, depth, kinds):
    """The rows of one tower: those of its kinds, each block's rows repeated `depth` times."""
    out, block = [], []
    for row in rows + [None]:
        if row is not None and "{i}" in row.name:
            block.append(row)
            continue
        for i in range(depth):
            out += [_at_block(r, i) for r in block]
        block = []
        if row is not None and (row.when is None or row.when in kinds):
            out.append(row)
    return out


def _at_block(row, i):
    return row._replace(**{f: getattr(row, f).replace("{i}", str(i)) for f in ("name", "keras", "hf")})


def parameters(*, vision=None, text=None, logits=False):
    """The expanded rows of the towers asked for, in checkpoint order.

    Args:
        vision: None, or `(naflex, depth)` of the image tower.
        text: None, or `(depth, has_head)` of the text tower.
        logits: include `t` and `b`.
    """
    rows = []
    if vision is not None:
        naflex, depth = vision
        rows += _expand(_VISION, depth, {"naflex" if naflex else "fixed"})
    if text is not None:
        depth, has_head = text
        rows += _expand(_TEXT, depth, {"text_head"} if has_head else set())
    if logits:
        rows += _LOGITS
    return rows


def shape(row, dims):
    """The concrete shape of `row` given a tower's `dims` (`{symbol: int}`)."""
    return tuple(int(s) if s.isdigit() else dims[s] for s in row.shape.split())


def _vision_dims(v, naflex):
    w, p = v["width"], v["patch_size"]
    dims = {"W": w, "M": v["mlp_dim"], "H": v["num_heads"], "D": w // v["num_heads"],
            "P": p, "PP3": p * p * 3}
    if naflex:
        dims["G"] = v.get("position_grid_size", 16)
    else:
        h, wi = v["image_size"]
        dims["N"] = (h // p) * (wi // p)
    return dims


def _text_dims(t, vision_width):
    w = t["width"]
    return {"W": w, "M": t["mlp_dim"], "H": t["num_heads"], "D": w // t["num_heads"],
            "V": t["vocabulary_size"], "L": t["sequence_length"],
            "E": t.get("embed_dim") or vision_width}


def tree_shapes(config):
    """`{big_vision name: shape}` of a two-tower model, from a config (no model is built).

    `config` is `{"naflex": bool, "vision": {...}, "text": {...}}` with the towers' keyword
    arguments (as `infer_architecture` and the conformance kits write them).
    """
    v, t = config["vision"], config["text"]
    naflex = bool(config["naflex"])
    dims = {"img": _vision_dims(v, naflex), "txt": _text_dims(t, v["width"]), None: {}}
    rows = parameters(vision=(naflex, v["depth"]), text=(t["depth"], t.get("use_head", True)),
                      logits=True)
    return {row.name: shape(row, dims[tower_of(row.name)]) for row in rows}


def tower_of(name):
    """`"img"`, `"txt"` or None (`t`, `b`) for a big_vision name."""
    head = name.split("/", 1)[0]
    return head if head in ("img", "txt") else None


def towers(model):
    """`(vision tower or None, text tower or None)` of a `SigLIP` or a single tower."""
    if isinstance(model, SigLIP):
        return model.vision_encoder, model.text_encoder
    if isinstance(model, SigLIPTextEncoder):
        return None, model
    return model, None


def model_parameters(model):
    """`[(Param, Keras variable)]` for every parameter of a `SigLIP` or a single tower."""
    vision, text = towers(model)
    roots = {"img": vision, "txt": text, None: model}
    rows = parameters(
        vision=None if vision is None else (isinstance(vision, SigLIPNaFlexVisionEncoder),
                                            len(vision.blocks)),
        text=None if text is None else (len(text.blocks), text.head is not None),
        logits=isinstance(model, SigLIP),
    )
    return [(row, _resolve(roots[tower_of(row.name)], row.keras)) for row in rows]


def _resolve(obj, path):
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def tree_entries(model):
    """`(big_vision name, Keras variable)` for every parameter of a `SigLIP` model.

    `model` may also be a single tower, which gives only its `img/...` or `txt/...` entries.
    """
    return [(row.name, variable) for row, variable in model_parameters(model)]


def _template_pattern(name):
    return re.compile(re.escape(name).replace(re.escape("{i}"), r"(\d+)") + "$")


_LOOKUP = [(_template_pattern(row.name), row) for row in TABLE]


def lookup(name, ndim):
    """The row (block index filled in) of the big_vision tensor `name`.

    `ndim` settles the names with two layouts (the patch kernel and position table of fixed
    resolution and NaFlex towers).
    """
    found = []
    for pattern, row in _LOOKUP:
        match = pattern.match(name)
        if match:
            found.append(_at_block(row, match.group(1)) if match.groups() else row)
    if len(found) > 1:
        found = [row for row in found if len(row.shape.split()) == ndim] or found
    if not found:
        raise KeyError(f"No parameter named {name!r}.")
    return found[0]
