"""KerasHub `SigLIPBackbone` presets <-> the canonical big_vision tree (docs/checkpoints.md).

A KerasHub preset is a folder: `config.json` (the backbone's Keras config, `class_name
"SigLIPBackbone"`, `registered_name "keras_hub>SigLIPBackbone"`), `model.weights.h5` (Keras'
weights file), `metadata.json`, and, when a tokenizer was saved, `tokenizer.json` with
`assets/tokenizer/vocabulary.spm`. SigLIP 1 and fixed-resolution SigLIP 2 presets share this
backbone (they differ in sizes and tokenizer only); KerasHub has no NaFlex model.

Keras' weights file names a variable by where it sits, not by its layer's name: a layer of a
functional model sits under `layers/<snake case of its class>` (`_1`, `_2`, ... for repeats, in
graph order), a sublayer under its attribute name, and a layer's own variables under
`vars/<index>`. So every name below is fixed by the architecture. KerasHub's MultiHeadAttention
and Dense kernels use flax's layouts: the tensors copy unchanged, except the position tables
(`(N, W)` here, `(1, N, W)` in big_vision) and the two logit parameters (`()` here, `(1,)`).

Reading and writing need only h5py (a Keras dependency), not keras_hub; sentencepiece tells a
bare SentencePiece model's tokenizer class (SigLIP or Gemma).
"""

import datetime
import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np

from keras_siglip.builders import build_model
from keras_siglip.convert import names
from keras_siglip.convert.big_vision import assign_tree, model_to_tree
from keras_siglip.convert.io import as_float_array, atomic_output, check_fit, check_model, track
from keras_siglip.models import SigLIP, SigLIPNaFlexVisionEncoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
TOKENIZER_FILE = "tokenizer.json"
VOCABULARY = "assets/tokenizer/vocabulary.spm"
# The files `save_keras_hub` writes; `overwrite=True` replaces a folder holding only these (a
# preset KerasHub itself saved, with its task and preprocessor files, is never replaced).
KERAS_HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE, TOKENIZER_FILE, VOCABULARY)

_VISION = "layers/sig_lip_vision_encoder/layers/"
_TEXT = "layers/sig_lip_text_encoder/layers/"
_HEAD = "layers/sig_lip_head/vars/"
_VISION_IDS = _VISION + "sig_lip_vision_embedding/vars/0"
_TEXT_IDS = _TEXT + "sig_lip_text_embedding/vars/0"

# (big_vision name pattern, KerasHub name, transform), `{i}` the block index; `{b}` in a KerasHub
# name is the block's container name (`sig_lip_encoder_layer`, `sig_lip_encoder_layer_1`, ...).
_BLOCK_LEAVES = [
    ("LayerNorm_0/{leaf}", "layer_norm1"),
    ("LayerNorm_1/{leaf}", "layer_norm2"),
    ("MlpBlock_0/Dense_0/{leaf}", "mlp/fc1"),
    ("MlpBlock_0/Dense_1/{leaf}", "mlp/fc2"),
    ("MultiHeadDotProductAttention_0/query/{leaf}", "self_attn/query_dense"),
    ("MultiHeadDotProductAttention_0/key/{leaf}", "self_attn/key_dense"),
    ("MultiHeadDotProductAttention_0/value/{leaf}", "self_attn/value_dense"),
    ("MultiHeadDotProductAttention_0/out/{leaf}", "self_attn/output_dense"),
]
_LEAF_INDEX = {"scale": 0, "kernel": 0, "bias": 1}  # LayerNorm (gamma, beta), Dense (kernel, bias)

_FIXED = {
    "img/embedding/{leaf}": _VISION + "sig_lip_vision_embedding/patch_embedding",
    "img/Transformer/encoder_norm/{leaf}": _VISION + "layer_normalization",
    "img/MAPHead_0/MultiHeadDotProductAttention_0/query/{leaf}":
        _VISION + "sig_lip_multi_head_attention_pooling/attention/query_dense",
    "img/MAPHead_0/MultiHeadDotProductAttention_0/key/{leaf}":
        _VISION + "sig_lip_multi_head_attention_pooling/attention/key_dense",
    "img/MAPHead_0/MultiHeadDotProductAttention_0/value/{leaf}":
        _VISION + "sig_lip_multi_head_attention_pooling/attention/value_dense",
    "img/MAPHead_0/MultiHeadDotProductAttention_0/out/{leaf}":
        _VISION + "sig_lip_multi_head_attention_pooling/attention/output_dense",
    "img/MAPHead_0/LayerNorm_0/{leaf}": _VISION + "sig_lip_multi_head_attention_pooling/layer_norm",
    "img/MAPHead_0/MlpBlock_0/Dense_0/{leaf}": _VISION + "sig_lip_multi_head_attention_pooling/mlp/fc1",
    "img/MAPHead_0/MlpBlock_0/Dense_1/{leaf}": _VISION + "sig_lip_multi_head_attention_pooling/mlp/fc2",
    "txt/Encoder_0/encoder_norm/{leaf}": _TEXT + "layer_normalization",
    "txt/head/{leaf}": _TEXT + "dense",
}
# Single tensors: (KerasHub name, transform).
_SINGLE = {
    "img/pos_embedding": (_VISION + "sig_lip_vision_embedding/position_embedding/vars/0", "rows"),
    "img/MAPHead_0/probe": (_VISION + "sig_lip_multi_head_attention_pooling/vars/0", "same"),
    "txt/Embed_0/embedding": (_TEXT + "sig_lip_text_embedding/token_embedding/vars/0", "same"),
    "txt/pos_embedding": (_TEXT + "sig_lip_text_embedding/position_embedding/vars/0", "rows"),
    "t": (_HEAD + "0", "scalar"),
    "b": (_HEAD + "1", "scalar"),
}
_BLOCK_ROOTS = {"img/Transformer/encoderblock_": _VISION, "txt/Encoder_0/encoderblock_": _TEXT}


def _block_container(i):
    return "sig_lip_encoder_layer" if i == 0 else f"sig_lip_encoder_layer_{i}"


def keras_hub_name(bv_name):
    """`(KerasHub weights-file name, transform)` of a big_vision tensor name."""
    if bv_name in _SINGLE:
        return _SINGLE[bv_name]
    leaf = bv_name.rsplit("/", 1)[1]
    for prefix, root in _BLOCK_ROOTS.items():
        match = re.match(re.escape(prefix) + r"(\d+)/(.*)$", bv_name)
        if match:
            rest = match.group(2).replace(leaf, "{leaf}")
            for pattern, sub in _BLOCK_LEAVES:
                if pattern == rest:
                    block = _block_container(int(match.group(1)))
                    return f"{root}{block}/{sub}/vars/{_LEAF_INDEX[leaf]}", "same"
    pattern = bv_name[: -len(leaf)] + "{leaf}"
    if pattern in _FIXED and leaf in _LEAF_INDEX:
        return f"{_FIXED[pattern]}/vars/{_LEAF_INDEX[leaf]}", "same"
    raise KeyError(f"No KerasHub name for the big_vision tensor {bv_name!r}.")


def _to_hub(value, transform):
    if transform == "rows":
        return value.reshape(-1, value.shape[-1])
    if transform == "scalar":
        return value.reshape(())
    return value


def _layout(model):
    """`{KerasHub name: (KerasHub shape, big_vision name, big_vision shape, transform)}`."""
    layout = {}
    for row, variable in names.model_parameters(model):
        shape = tuple(variable.shape)
        hub, transform = keras_hub_name(row.name)
        hub_shape = _to_hub(np.zeros(shape, np.float32), transform).shape
        layout[hub] = (hub_shape, row.name, shape, transform)
    return layout


# --------------------------------------------------------------------------------------
# Configs.


def is_keras_hub_preset(path):
    """True for a folder whose `config.json` is a KerasHub backbone (`keras_hub>...`)."""
    path = Path(path)
    config = path / CONFIG_FILE
    if not path.is_dir() or not config.is_file():
        return False
    try:
        data = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("registered_name", "")).startswith("keras_hub>")


def _read_config(folder):
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{folder / CONFIG_FILE} is not a readable KerasHub config ({error}).") \
            from error
    if not isinstance(config, dict) or config.get("class_name") != "SigLIPBackbone":
        found = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ValueError(
            f"{folder} is a KerasHub preset of {found!r}; only SigLIPBackbone presets (SigLIP and "
            "fixed-resolution SigLIP 2) convert. Save the backbone itself "
            "(backbone.save_to_preset(folder))."
        )
    return config["config"]


def _check(where, key, value, expected):
    if value != expected:
        raise ValueError(
            f"{where}: {key}={value!r} is not supported (keras-siglip builds {key}={expected!r}, "
            "as every released SigLIP checkpoint has)."
        )


def architecture(config, where):
    """`(vision_kwargs, text_kwargs)` of a `SigLIPBackbone` config (its `"config"` entry)."""
    v = config["vision_encoder"]["config"]
    t = config["text_encoder"]["config"]
    for tower, c in (("vision_encoder", v), ("text_encoder", t)):
        _check(f"{where} {tower}", "intermediate_activation",
               c.get("intermediate_activation", "gelu_approximate"), "gelu_approximate")
    _check(f"{where} vision_encoder", "layer_norm_epsilon", v.get("layer_norm_epsilon", 1e-6), 1e-6)
    _check(f"{where} text_encoder", "embedding_dim", t["embedding_dim"], t["hidden_dim"])
    shape = list(v.get("image_shape", (224, 224, 3)))
    size = shape[1] if shape[0] == 3 and shape[-1] != 3 else shape[0]  # channels_first
    vision = {"image_size": int(size), "patch_size": v["patch_size"], "width": v["hidden_dim"],
              "depth": v["num_layers"], "mlp_dim": v["intermediate_dim"],
              "num_heads": v["num_heads"]}
    text = {"vocabulary_size": t["vocabulary_size"],
            "sequence_length": t.get("max_sequence_length", 64), "width": t["hidden_dim"],
            "depth": t["num_layers"], "mlp_dim": t["intermediate_dim"], "num_heads": t["num_heads"],
            "embed_dim": t.get("projection_dim") or t["hidden_dim"]}
    if t.get("layer_norm_epsilon", 1e-6) != 1e-6:
        text["layer_norm_epsilon"] = float(t["layer_norm_epsilon"])
    return vision, text


def _policy(name):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": name},
            "registered_name": None}


def _serialized(cls, module, config):
    return {"module": f"keras_hub.src.models.siglip.{module}", "class_name": cls,
            "config": config, "registered_name": f"keras_hub>{cls}"}


def keras_hub_config(model):
    """The `config.json` of the KerasHub `SigLIPBackbone` equal to a `SigLIP` model."""
    v, t = model.vision_encoder, model.text_encoder
    h, w = v.image_size
    if h != w:
        raise ValueError(
            f"KerasHub's SigLIPVisionEncoder takes square images only; this model's image size "
            f"is {(h, w)}. Rebuild the vision tower square (with_image_size) before saving."
        )
    vision = {"name": "vision_encoder", "trainable": True, "dtype": _policy("float32"),
              "patch_size": v.patch_size, "hidden_dim": v.width, "num_layers": v.depth,
              "num_heads": v.num_heads, "intermediate_dim": v.mlp_dim,
              "intermediate_activation": "gelu_approximate",
              "layer_norm_epsilon": v.layer_norm_epsilon, "image_shape": [h, w, 3]}
    text = {"name": "text_encoder", "trainable": True, "dtype": _policy("float32"),
            "vocabulary_size": t.vocabulary_size, "embedding_dim": t.width,
            "hidden_dim": t.width, "num_layers": t.depth, "num_heads": t.num_heads,
            "intermediate_dim": t.mlp_dim, "intermediate_activation": "gelu_approximate",
            "layer_norm_epsilon": float(getattr(t, "layer_norm_epsilon", 1e-6)),
            "max_sequence_length": t.sequence_length, "projection_dim": t.embed_dim}
    return _serialized("SigLIPBackbone", "siglip_backbone", {
        "name": "siglip_backbone", "trainable": True, "dtype": _policy("float32"),
        "vision_encoder": _serialized("SigLIPVisionEncoder", "siglip_vision_encoder", vision),
        "text_encoder": _serialized("SigLIPTextEncoder", "siglip_text_encoder", text),
    })


# --------------------------------------------------------------------------------------
# KerasHub -> Keras.


def _read_weights(file):
    import h5py

    state = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            value = item[()]
            if item.attrs.get("dtype") == "bfloat16" and value.dtype.itemsize == 2:
                value = value.view("V2")
            state[name] = value

    try:
        with h5py.File(file, "r") as f:
            f.visititems(visit)
    except OSError as error:
        raise ValueError(f"{file} is not a readable Keras weights file ({error}); it may be "
                         "truncated or corrupt: re-download or re-save the preset.") from error
    return state


def tokenizer_file(path):
    """The SentencePiece model a KerasHub preset carries (`assets/tokenizer/...`), or None."""
    path = Path(path)
    for candidate in (path / VOCABULARY, *sorted((path / "assets/tokenizer").glob("*.spm")),
                      *sorted((path / "assets/tokenizer").glob("*.model"))):
        if candidate.is_file():
            return candidate
    return None


def sentencepiece_file(path):
    """The SentencePiece model at `path` (a file), in a KerasHub preset, or in a transformers
    folder (`spiece.model` for SigLIP, `tokenizer.model` for SigLIP 2); None when none."""
    path = Path(path)
    if path.is_file() or not path.is_dir():
        return path if path.is_file() else None
    return tokenizer_file(path) or next(
        (path / n for n in ("spiece.model", "tokenizer.model") if (path / n).is_file()), None)


def load_keras_hub(path, *, progress=None):
    """A KerasHub `SigLIPBackbone` preset folder to the equivalent `SigLIP` model.

    The architecture comes from `config.json`; every tensor of `model.weights.h5` is checked
    against it first, and all missing, unexpected and misshapen ones are reported in one error,
    in the weights file's own names. The preset's tokenizer (if any) is `tokenizer_file(path)`.

    Raises:
        FileNotFoundError: no `config.json` or `model.weights.h5`.
        ValueError: not a `SigLIPBackbone`, an unsupported setting, or tensors that do not fit.
    """
    folder = Path(path)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"No KerasHub preset at {folder}: {CONFIG_FILE} is missing.")
    config = _read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        sharded = (folder / "model.weights.json").is_file()
        raise FileNotFoundError(
            f"No {WEIGHTS_FILE} in {folder}"
            + ("; sharded KerasHub weights are not read: re-save the preset with "
               "max_shard_size=None." if sharded else ".")
        )
    vision, text = architecture(config, str(folder))
    model = build_model(False, vision, text, where=str(folder))
    state = _read_weights(weights)
    for buffer in (_VISION_IDS, _TEXT_IDS):  # position_ids: not parameters
        state.pop(buffer, None)
    layout = _layout(model)
    check_fit(
        {hub: shape for hub, (shape, *_) in layout.items()},
        {name: value.shape for name, value in state.items()},
        f"The KerasHub preset {folder} does not fit the architecture its {CONFIG_FILE} "
        "describes.",
        expects=f"{CONFIG_FILE} implies",
        note=lambda hub: f"  [big_vision {layout[hub][1]}]",
    )
    tree = {}
    for hub, (_, bv_name, shape, _) in track(layout.items(), progress, "convert"):
        value = np.asarray(as_float_array(hub, state[hub]), np.float32)
        tree[bv_name] = np.ascontiguousarray(value.reshape(shape))
    return assign_tree(model, tree)


# --------------------------------------------------------------------------------------
# Keras -> KerasHub.


def _write_weights(file, model, progress):
    import h5py

    tree = model_to_tree(model, progress)
    v, t = model.vision_encoder, model.text_encoder
    if t.head is None:  # KerasHub always has a text head: the identity is the same function
        tree["txt/head/kernel"] = np.eye(t.width, dtype=np.float32)
        tree["txt/head/bias"] = np.zeros((t.width,), np.float32)
    n = v.grid_size[0] * v.grid_size[1]
    with h5py.File(file, "w") as f:
        for bv_name, value in tree.items():
            hub, transform = keras_hub_name(bv_name)
            f[hub] = np.array(_to_hub(np.asarray(value, np.float32), transform), order="C")
        f[_VISION_IDS] = np.arange(n, dtype=np.int32)[None]
        f[_TEXT_IDS] = np.arange(t.sequence_length, dtype=np.int32)[None]
        f.create_group("vars")


# KerasHub's own SigLIP presets: SigLIP's SentencePiece model as a SigLIPTokenizer that appends
# `</s>`; SigLIP 2's Gemma model as a GemmaTokenizer (its defaults, as KerasHub converts them).
_TOKENIZER_CLASSES = (
    ("SigLIPTokenizer", "siglip.siglip_tokenizer", ("</s>", "<unk>"), True),
    ("GemmaTokenizer", "gemma.gemma_tokenizer", ("<bos>", "<eos>", "<pad>"), False),
)


def _tokenizer_config(proto, vocabulary_size):
    """The `tokenizer.json` KerasHub writes for the SentencePiece model at `proto`."""
    import sentencepiece

    try:
        processor = sentencepiece.SentencePieceProcessor(model_file=str(proto))
    except (OSError, RuntimeError) as error:
        raise ValueError(f"{proto} is not a readable SentencePiece model ({error}).") from error
    if processor.get_piece_size() > vocabulary_size:
        raise ValueError(
            f"The SentencePiece model {proto} has {processor.get_piece_size()} pieces, more than "
            f"the model's vocabulary of {vocabulary_size}: it is another model's tokenizer."
        )
    pieces = {processor.id_to_piece(i) for i in range(processor.get_piece_size())}
    for cls, module, special, add_eos in _TOKENIZER_CLASSES:
        if set(special) <= pieces:
            return {"module": f"keras_hub.src.models.{module}", "class_name": cls,
                    "config": {"name": "tokenizer", "trainable": True, "dtype": _policy("int32"),
                               "config_file": TOKENIZER_FILE, "proto": None,
                               "sequence_length": None, "add_bos": False, "add_eos": add_eos},
                    "registered_name": f"keras_hub>{cls}"}
    raise ValueError(
        f"The SentencePiece model {proto} has neither SigLIP's special pieces (</s>, <unk>) nor "
        "Gemma's (<bos>, <eos>, <pad>), so no KerasHub SigLIP tokenizer can use it."
    )


def _copy_tokenizer(tokenizer, tmp, vocabulary_size):
    """Write `tokenizer` (a SentencePiece file, a KerasHub preset or a transformers folder with
    one) into the preset folder `tmp`: a preset's `tokenizer.json` verbatim, else the one
    KerasHub's own SigLIP presets have for that model."""
    source = Path(tokenizer)
    proto = sentencepiece_file(source)
    if proto is None:
        raise FileNotFoundError(
            f"No SentencePiece tokenizer at {tokenizer}: pass a .spm/.model file, a KerasHub "
            "preset folder (assets/tokenizer/vocabulary.spm) or a transformers folder "
            "(spiece.model, tokenizer.model)."
        )
    config = source / TOKENIZER_FILE if source.is_dir() and tokenizer_file(source) else None
    text = json.dumps(_tokenizer_config(proto, vocabulary_size), indent=4) + "\n"
    if config is not None and config.is_file():
        text = config.read_text()  # a KerasHub preset's own, verbatim
    (tmp / VOCABULARY).parent.mkdir(parents=True)
    shutil.copyfile(proto, tmp / VOCABULARY)
    (tmp / TOKENIZER_FILE).write_text(text)


def save_keras_hub(model, folder, *, overwrite=False, progress=None, sources=(), tokenizer=None):
    """Write a `SigLIP` model as a KerasHub preset folder.

    `keras_hub.models.SigLIPBackbone.from_preset(folder)` loads it and gives the same
    embeddings and logits.

    Args:
        model: a fixed-resolution `SigLIP` with a square image size (KerasHub has no NaFlex
            model and no lone-tower preset here).
        folder: destination folder, written under a temporary name and renamed when complete.
        overwrite: replace an existing preset folder (one holding only preset files).
        progress: optional tqdm-like callable shown over the tensors.
        sources: paths read; a destination that is or contains one is refused.
        tokenizer: optional SentencePiece model (`.spm` / `.model`), a KerasHub preset folder
            whose tokenizer is carried over (`tokenizer.json` and `assets/tokenizer/`), or a
            transformers folder whose `spiece.model` / `tokenizer.model` is (as the
            `SigLIPTokenizer` or `GemmaTokenizer` of KerasHub's own SigLIP / SigLIP 2 presets).

    Returns:
        The folder as a `Path`.
    """
    check_model("save_keras_hub", model, SigLIP, "a two-tower SigLIP (KerasHub's SigLIPBackbone)")
    if not isinstance(model, SigLIP) or isinstance(model.vision_encoder,
                                                   SigLIPNaFlexVisionEncoder):
        raise ValueError(
            f"save_keras_hub writes a fixed-resolution two-tower SigLIP (KerasHub's "
            f"SigLIPBackbone), not a {type(model).__name__}"
            + (" with a NaFlex tower (KerasHub has no NaFlex model): save it as a transformers "
               "folder or .keras file instead." if isinstance(model, SigLIP) else ".")
        )
    folder = Path(folder)
    config = keras_hub_config(model)
    with atomic_output(folder, overwrite=overwrite, folder=True, owned=KERAS_HUB_FILES,
                       sources=sources) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=4) + "\n")
        _write_weights(tmp / WEIGHTS_FILE, model, progress)
        metadata = {"keras_version": keras.__version__, "written_by": "keras_siglip",
                    "parameter_count": int(model.count_params()),
                    "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                    "tasks": []}
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=4) + "\n")
        if tokenizer is not None:
            _copy_tokenizer(tokenizer, tmp, model.text_encoder.vocabulary_size)
    return folder
