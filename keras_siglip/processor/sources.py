"""Where a processor's settings come from, and the files it writes.

Each reader returns `(config, proto)`: the processor's settings as `SigLIPProcessor.get_config`
gives them, and the path of the SentencePiece model. Sources: a preset row (the tokenizer from
the weights cache), a transformers checkpoint folder (its tokenizer and image-processor files
and `config.json`), a folder written by `SigLIPProcessor.save`. `transformers_configs` writes
what transformers' `AutoProcessor` reads (docs/preprocessing.md, "One processor per checkpoint").
"""

import json
from pathlib import Path

import numpy as np

from keras_siglip import presets

PROCESSOR_FILE = "keras_siglip_processor.json"
# The SentencePiece file name transformers uses for each text convention.
TOKENIZER_FILES = {"siglip": "spiece.model", "siglip2": "tokenizer.model"}
# What `SigLIPProcessor.save` writes, and so the only files its `overwrite=True` may replace.
PROCESSOR_FILES = (PROCESSOR_FILE, *TOKENIZER_FILES.values(), "tokenizer_config.json",
                   "preprocessor_config.json")  # fmt: skip
_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL resample codes in transformers' configs
_RESAMPLE_CODE = {"bilinear": 2, "bicubic": 3}
_TOKENIZER_CLASSES = {
    "SiglipTokenizer": "siglip",
    "Siglip2Tokenizer": "siglip2",
    # Fixed-resolution SigLIP 2 checkpoints name the Gemma tokenizer itself; the model was
    # trained on lowercased text, which the "siglip2" flavour applies (docs/preprocessing.md).
    "GemmaTokenizer": "siglip2",
    "GemmaTokenizerFast": "siglip2",
}


def keras_sidecar(path):
    """The processor folder that belongs to the `.keras` file `path` (`x.keras` -> `x.processor`)."""
    path = Path(path)
    return path.with_name(path.stem + ".processor")


def dump_json(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def read_json(path):
    try:
        data = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object.")
    return data


# --------------------------------------------------------------------------------------
# Writing transformers' files.


def transformers_configs(config):
    """`{file name: JSON text}`: transformers' tokenizer and image-processor configs for a
    processor config (`SigLIPProcessor.get_config()`).

    Raises `ValueError` for `resize="big_vision"`, which transformers cannot express.
    """
    normalize = {"do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                 "do_rescale": True, "rescale_factor": 1 / 255, "do_resize": True,
                 "do_convert_rgb": True}  # fmt: skip
    if config["naflex"]:
        image = {"image_processor_type": "Siglip2ImageProcessor", "resample": 2,
                 "patch_size": config["patch_size"],
                 "max_num_patches": config["max_num_patches"], **normalize}  # fmt: skip
        processor_class = "Siglip2Processor"
    else:
        if config["resize"] not in _RESAMPLE_CODE:
            raise ValueError(
                f"transformers' image processor has no {config['resize']!r} resize; only "
                "processors with resize='bilinear' or 'bicubic' can be written for transformers."
            )
        height, width = config["image_size"]
        image = {"image_processor_type": "SiglipImageProcessor",
                 "resample": _RESAMPLE_CODE[config["resize"]],
                 "size": {"height": height, "width": width}, **normalize}  # fmt: skip
        processor_class = "SiglipProcessor"
    if config["flavor"] == "siglip":
        tokenizer = {"tokenizer_class": "SiglipTokenizer", "do_lower_case": True,
                     "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}  # fmt: skip
    else:
        # Siglip2Tokenizer defaults to left padding and no EOS; SigLIP 2 was trained with both
        # the other way round.
        tokenizer = {"tokenizer_class": "Siglip2Tokenizer", "add_bos_token": False,
                     "add_eos_token": True, "eos_token": "<eos>", "pad_token": "<pad>",
                     "bos_token": "<bos>", "unk_token": "<unk>", "mask_token": "<mask>"}  # fmt: skip
    # No attention mask, as in the released checkpoints: the text tower was trained without one
    # (with a mask, transformers would hide the padding from it).
    tokenizer.update(model_max_length=config["sequence_length"], padding_side="right",
                     model_input_names=["input_ids"], processor_class=processor_class)
    return {"preprocessor_config.json": dump_json({**image, "processor_class": processor_class}),
            "tokenizer_config.json": dump_json(tokenizer)}  # fmt: skip


# --------------------------------------------------------------------------------------
# Reading.


def read_own_folder(folder):
    """`(config, proto)` of a folder written by `SigLIPProcessor.save`."""
    config = read_json(folder / PROCESSOR_FILE)
    return config, tokenizer_file(folder, config.get("flavor"))


def tokenizer_file(folder, flavor=None):
    """The SentencePiece file in `folder` (the flavour's name first), or a FileNotFoundError
    naming the files expected and where they come from."""
    names = [TOKENIZER_FILES[flavor]] if flavor in TOKENIZER_FILES else []
    names += [n for n in ("spiece.model", "tokenizer.model") if n not in names]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    only_json = (folder / "tokenizer.json").exists()
    raise FileNotFoundError(
        f"{folder} has no SentencePiece tokenizer file: spiece.model (SigLIP 1) or "
        "tokenizer.model (SigLIP 2)"
        + (". It has only tokenizer.json, the tokenizers library's format, which keras-siglip "
           "does not read" if only_json else "")
        + ". The file comes with the checkpoint on the Hugging Face hub (google/siglip-* has "
        "spiece.model, google/siglip2-* tokenizer.model): copy it into the folder."
    )


def _image_config(folder):
    if (folder / "preprocessor_config.json").exists():
        return read_json(folder / "preprocessor_config.json")
    if (folder / "processor_config.json").exists():
        entry = read_json(folder / "processor_config.json").get("image_processor")
        if isinstance(entry, dict):
            return entry
    raise FileNotFoundError(
        f"{folder} has no preprocessor_config.json (transformers' image-processor settings: "
        "resize mode, size, NaFlex patch budget). It comes with the checkpoint on the Hugging "
        "Face hub: copy it into the folder."
    )


def _check_pixel_rules(where, image):
    """Refuse image-processor settings that keras-siglip's preprocessing does not implement."""
    wrong = []
    for key in ("image_mean", "image_std"):
        value = image.get(key, 0.5)
        if not np.allclose(np.broadcast_to(np.asarray(value, np.float64), 3), 0.5):
            wrong.append(f"{key}={value}")
    for key in ("do_resize", "do_rescale", "do_normalize"):
        if image.get(key, True) is not True:
            wrong.append(f"{key}={image[key]}")
    if not np.isclose(float(image.get("rescale_factor", 1 / 255)), 1 / 255):
        wrong.append(f"rescale_factor={image['rescale_factor']}")
    if wrong:
        raise ValueError(
            f"{where} asks for {', '.join(wrong)}; SigLIP checkpoints resize, rescale by 1/255 "
            "and normalise with mean 0.5 and std 0.5, which is all keras-siglip implements."
        )


def _flavor(folder, tokenizer_config, proto):
    name = tokenizer_config.get("tokenizer_class")
    if name is None:  # no tokenizer_config.json: the file name tells the convention
        return "siglip" if proto.name == "spiece.model" else "siglip2"
    if name not in _TOKENIZER_CLASSES:
        raise ValueError(
            f"{folder / 'tokenizer_config.json'} names tokenizer_class {name!r}; keras-siglip "
            f"reads {', '.join(_TOKENIZER_CLASSES)}."
        )
    return _TOKENIZER_CLASSES[name]


def is_keras_hub_folder(folder):
    """Whether `folder` is a KerasHub preset (its config.json is a serialized Keras object)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(config, dict) and {"class_name", "config"} <= set(config) and (
        "module" in config or "registered_name" in config)


def keras_hub_message(folder):
    """Why a KerasHub preset gives no processor here, and how to make one."""
    spm = Path(folder) / "assets" / "tokenizer" / "vocabulary.spm"
    return (
        f"{folder} is a KerasHub preset folder. Its image converter (KerasHub's resize, which "
        "crops to the aspect ratio) has no equivalent processor here, so it is not read as "
        "one. Load the model with SigLIP.from_preset(folder) and build the processor from its "
        f"tokenizer: SigLIPProcessor(Tokenizer('{spm}', flavor='siglip' (SigLIP) or 'siglip2' "
        "(SigLIP 2), sequence_length=...), image_size=(H, W)), then SigLIPPipeline(model, "
        "processor)."
    )


def read_transformers(folder):
    """`(config, proto)` of a transformers checkpoint folder."""
    if is_keras_hub_folder(folder):
        raise ValueError(keras_hub_message(folder))
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"{folder} is not a transformers checkpoint folder: it has no config.json "
            f"(nor {PROCESSOR_FILE})."
        )
    model = read_json(folder / "config.json")
    image = _image_config(folder)
    proto = tokenizer_file(folder)
    tokenizer_config = (read_json(folder / "tokenizer_config.json")
                        if (folder / "tokenizer_config.json").exists() else {})  # fmt: skip
    # The text tower pools its last position, so texts are padded to the trained length
    # (transformers' default is 64, as for every released checkpoint).
    length = (model.get("text_config") or {}).get("max_position_embeddings") or 64
    config = {"flavor": _flavor(folder, tokenizer_config, proto), "sequence_length": length}
    where = f"{folder}'s image-processor config"
    _check_pixel_rules(where, image)
    resample = image.get("resample", 3)
    if resample not in _RESAMPLE:
        raise ValueError(f"{where}: resample={resample} is not supported; expected 2 "
                         "(bilinear) or 3 (bicubic).")  # fmt: skip
    vision = model.get("vision_config") or {}
    if model.get("model_type") == "siglip2" or "max_num_patches" in image:
        if resample != 2:
            raise ValueError(f"{where}: NaFlex resizes bilinearly (resample=2); found "
                             f"resample={resample}.")  # fmt: skip
        patch = image.get("patch_size") or vision.get("patch_size") or 16
        if vision.get("patch_size") not in (None, patch):
            raise ValueError(f"{where} cuts {patch}-pixel patches but config.json's vision "
                             f"tower takes {vision['patch_size']}.")  # fmt: skip
        config.update(naflex=True, patch_size=patch,
                      max_num_patches=image.get("max_num_patches", 256))
        return config, proto
    side = vision.get("image_size", 224)
    size = image.get("size") or {}
    if "shortest_edge" in size:
        raise ValueError(f"{where} resizes the shortest edge; SigLIP squashes images to "
                         "{'height', 'width'}, which is all keras-siglip implements.")  # fmt: skip
    image_size = [size.get("height", side), size.get("width", side)]
    if image_size != [side, side]:
        raise ValueError(
            f"{where} resizes to {image_size[0]}x{image_size[1]}, but config.json's vision "
            f"tower takes {side}x{side} images; fix one of the two files."
        )
    config.update(naflex=False, image_size=image_size, resize=_RESAMPLE[resample])
    return config, proto


def read_preset(name):
    """`(config, proto)` of a preset: its row, and its tokenizer from the weights cache."""
    info = presets.preset_info(name)
    candidates = tokenizer_candidates(name)
    proto = next((p for p in candidates if p.exists()), None)
    if proto is None:
        places = "\n  ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"No tokenizer for preset {name!r}: download {info['tokenizer_file']} (or the "
            f"{TOKENIZER_FILES[info['tokenizer_flavor']]} of https://huggingface.co/"
            f"{info['hf_id']}) and put it at one of:\n  {places}"
        )
    config = {"flavor": info["tokenizer_flavor"], "sequence_length": info["sequence_length"],
              "naflex": info["naflex"]}  # fmt: skip
    if info["naflex"]:
        config.update(patch_size=info["patch_size"], max_num_patches=info["max_num_patches"])
    else:
        # transformers' configs of the released checkpoints: SigLIP 1 bicubic, SigLIP 2
        # bilinear.
        resize = "bicubic" if info["family"] == "siglip" else "bilinear"
        size = info["image_size"]
        image_size = list(size) if isinstance(size, (list, tuple)) else [size, size]
        config.update(image_size=image_size, resize=resize)
    return config, proto


def tokenizer_candidates(name):
    """Paths, in order, where the SentencePiece file of preset `name` may be put: in the
    weights cache as `<tokenizer>.model` (c4_en, mc4, gemma, ...), under its upstream file
    name, or inside the preset's transformers folder."""
    info = presets.preset_info(name)
    folder = presets.cache_dir()
    upstream = Path(info["tokenizer_file"]).name
    return [
        folder / f"{info['tokenizer']}.model",
        *([folder / upstream] if upstream != "sentencepiece.model" else []),
        folder / name / TOKENIZER_FILES[info["tokenizer_flavor"]],
    ]
