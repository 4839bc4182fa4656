"""`SigLIPProcessor`: the tokenizer and image preprocessing that belong to one checkpoint.

A model alone does not say how its inputs are made: which SentencePiece file and text
convention (SigLIP 1 pads with EOS, SigLIP 2 with PAD), which sequence length, which resize
(bicubic for SigLIP 1, bilinear for SigLIP 2, big_vision's own), and for NaFlex the patch
budget. `SigLIPProcessor.from_preset(x)` reads them from the same source as
`SigLIP.from_preset(x)`:

* a preset name: the preset's row, and its SentencePiece file from the weights cache;
* a transformers folder: `spiece.model` / `tokenizer.model`, `tokenizer_config.json`,
  `preprocessor_config.json` (or the `image_processor` entry of `processor_config.json`) and
  `config.json` (text length, patch size);
* a big_vision `.npz` with `preset=`: the preset's row and tokenizer;
* a `.keras` file: the processor folder saved beside it (`x.keras` -> `x.processor/`).

Any folder the processor writes (`save`) holds `keras_siglip_processor.json` plus the files
transformers' `AutoProcessor` reads, so it loads in both libraries (docs/preprocessing.md).
"""

import json
from pathlib import Path

import numpy as np

from keras_siglip import presets
from keras_siglip.extras import require
from keras_siglip.preprocessing import Tokenizer, naflex_patchify, preprocess_images

PROCESSOR_FILE = "keras_siglip_processor.json"
# The SentencePiece file name transformers uses for each text convention.
TOKENIZER_FILES = {"siglip": "spiece.model", "siglip2": "tokenizer.model"}
_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL resample codes in transformers' configs
_RESAMPLE_CODE = {"bilinear": 2, "bicubic": 3}


def keras_sidecar(path):
    """The processor folder that belongs to the `.keras` file `path` (`x.keras` -> `x.processor`)."""
    path = Path(path)
    return path.with_name(path.stem + ".processor")


def load_image(item, index=0):
    """A file path, a PIL image or an array to an `(H, W, 3)` array (uint8 for files/PIL)."""
    if isinstance(item, (str, Path)):
        require("images", "Reading image files")
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(item) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as error:
            raise ValueError(f"Image {index} ({item}) cannot be read as an image: {error}") from error
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        return np.asarray(item.convert("RGB"))
    return np.asarray(item)


class SigLIPProcessor:
    """Texts and images of any size to the inputs of one SigLIP / SigLIP 2 checkpoint.

    Args:
        tokenizer: a `keras_siglip.preprocessing.Tokenizer` (its flavor and
            `sequence_length` are the checkpoint's).
        image_size: `(H, W)` of a fixed-resolution model; None for NaFlex.
        resize: `"bilinear"`, `"bicubic"` or `"big_vision"` (fixed resolution).
        naflex: True for a NaFlex model, which takes `patch_size` and `max_num_patches`.
        patch_size: int, NaFlex only.
        max_num_patches: int, the NaFlex patch budget (the padded sequence length).

    Example:
        >>> processor = SigLIPProcessor.from_preset("path/to/transformers_folder")
        >>> inputs = processor(images=["cat.png"], texts=["a photo of a cat"])
        >>> model(inputs)["logits"]
    """

    def __init__(self, tokenizer, *, image_size=None, resize="bilinear", naflex=False,
                 patch_size=None, max_num_patches=None, tokenizer_proto=None):
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(
                f"tokenizer must be a keras_siglip.preprocessing.Tokenizer, got "
                f"{type(tokenizer).__name__}."
            )
        self.tokenizer = tokenizer
        # The SentencePiece model's bytes, which `save` writes; read back from the tokenizer.
        self._proto = tokenizer_proto or tokenizer._sp.serialized_model_proto()
        self.naflex = bool(naflex)
        if self.naflex:
            for name, value in (("patch_size", patch_size), ("max_num_patches", max_num_patches)):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise ValueError(f"A NaFlex processor needs a positive int {name}, got {value!r}.")
            self.patch_size, self.max_num_patches = int(patch_size), int(max_num_patches)
            self.image_size, self.resize = None, None
        else:
            if image_size is None:
                raise ValueError("A fixed-resolution processor needs image_size=(H, W).")
            if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
                image_size = (image_size, image_size)
            self.image_size = tuple(int(s) for s in image_size)
            self.resize = resize
            self.patch_size, self.max_num_patches = None, None
            preprocess_images(np.zeros((1, 1, 3), np.uint8), self.image_size, resize=resize)

    @property
    def flavor(self):
        return self.tokenizer.flavor

    @property
    def sequence_length(self):
        return self.tokenizer.sequence_length

    # ----------------------------------------------------------------------------------
    # Inputs.

    def tokenize(self, texts):
        """A str or a list of str to int32 `(B, L)` token ids."""
        return self.tokenizer(texts)

    def preprocess_images(self, images):
        """Images (file paths, PIL images, uint8 arrays of any size, or one batch array).

        Returns float32 `(B, H, W, 3)` in `[-1, 1]` (fixed resolution) or the NaFlex dict
        `{"patches", "patch_mask", "spatial_shapes"}`.
        """
        if isinstance(images, (str, Path)) or hasattr(images, "convert"):
            images = [images]
        if isinstance(images, (list, tuple)):
            images = [load_image(item, i) for i, item in enumerate(images)]
        if self.naflex:
            return naflex_patchify(images, self.patch_size, self.max_num_patches)
        return preprocess_images(images, self.image_size, resize=self.resize)

    def __call__(self, images=None, texts=None):
        """The model's input dict: `"images"` and/or `"token_ids"`."""
        if images is None and texts is None:
            raise ValueError("Pass images=, texts= or both.")
        inputs = {}
        if images is not None:
            inputs["images"] = self.preprocess_images(images)
        if texts is not None:
            inputs["token_ids"] = self.tokenize(texts)
        return inputs

    # ----------------------------------------------------------------------------------
    # Configuration and files.

    def get_config(self):
        config = {
            "flavor": self.flavor,
            "sequence_length": self.sequence_length,
            "naflex": self.naflex,
        }
        if self.naflex:
            config.update(patch_size=self.patch_size, max_num_patches=self.max_num_patches)
        else:
            config.update(image_size=list(self.image_size), resize=self.resize)
        return config

    def save(self, folder):
        """Write the processor into `folder` (created if needed): our config, the
        SentencePiece file and transformers' tokenizer and image-processor configs."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in processor_files(self).items():
            (folder / name).write_text(text)
        (folder / TOKENIZER_FILES[self.flavor]).write_bytes(self._proto)

    @classmethod
    def from_folder(cls, folder, *, sequence_length=None):
        """Read a folder written by `save`, or a transformers checkpoint folder."""
        folder = Path(folder)
        own = folder / PROCESSOR_FILE
        if own.exists():
            config = json.loads(own.read_text())
            proto = _tokenizer_file(folder, config["flavor"])
            tokenizer = Tokenizer(str(proto), flavor=config["flavor"],
                                  sequence_length=sequence_length or config["sequence_length"])
            kwargs = {k: config[k] for k in ("image_size", "resize", "patch_size",
                                             "max_num_patches") if k in config}  # fmt: skip
            return cls(tokenizer, naflex=config["naflex"], **kwargs)
        return _from_transformers(cls, folder, sequence_length)

    @classmethod
    def from_preset(cls, preset, **overrides):
        """The processor of a preset name, a transformers folder, a `.keras` file, or a
        big_vision `.npz` with `preset=` (the preset whose tokenizer and sizes it uses).

        Overrides: `sequence_length`, `max_num_patches` (NaFlex), `resize`.
        """
        unknown = set(overrides) - {"preset", "sequence_length", "max_num_patches", "resize"}
        if unknown:
            raise ValueError(
                f"Unknown argument(s) {sorted(unknown)}; SigLIPProcessor.from_preset takes "
                "preset=, sequence_length=, max_num_patches= and resize=."
            )
        row_name = overrides.pop("preset", None)
        path = Path(str(preset)).expanduser()
        if str(preset) in presets.list_presets():
            processor = _from_row(cls, str(preset))
        elif path.suffix.lower() == ".keras":
            sidecar = keras_sidecar(path)
            if not (sidecar / PROCESSOR_FILE).exists():
                raise FileNotFoundError(
                    f"{path} has no processor beside it: expected the folder {sidecar} (written "
                    "by SigLIPProcessor.save(keras_sidecar(path)) when the model was saved). "
                    "Build one with SigLIPProcessor(Tokenizer(...), image_size=...) instead."
                )
            processor = cls.from_folder(sidecar)
        elif path.suffix.lower() == ".npz":
            if row_name is None:
                raise ValueError(
                    f"{path} is a big_vision checkpoint, which holds no tokenizer or image "
                    "settings: pass preset=NAME (see `python -m keras_siglip presets`)."
                )
            processor = _from_row(cls, row_name)
        elif path.is_dir():
            processor = cls.from_folder(path)
        else:
            raise ValueError(
                f"{preset!r} is neither a preset name (see `python -m keras_siglip presets`) "
                "nor an existing transformers folder, .keras file or big_vision .npz."
            )
        return processor.with_options(**overrides) if overrides else processor

    def with_options(self, *, sequence_length=None, max_num_patches=None, resize=None):
        """A copy with another text length, NaFlex budget or resize mode."""
        config = self.get_config()
        if max_num_patches is not None:
            if not self.naflex:
                raise ValueError("max_num_patches applies to NaFlex processors only.")
            config["max_num_patches"] = max_num_patches
        if resize is not None:
            if self.naflex:
                raise ValueError("resize applies to fixed-resolution processors only.")
            config["resize"] = resize
        tokenizer = Tokenizer(self._proto, flavor=self.flavor,
                              sequence_length=sequence_length or self.sequence_length)
        kwargs = {k: v for k, v in config.items() if k in
                  ("image_size", "resize", "patch_size", "max_num_patches")}  # fmt: skip
        return type(self)(tokenizer, naflex=self.naflex, **kwargs)

    def __repr__(self):
        if self.naflex:
            images = f"NaFlex patch {self.patch_size}, budget {self.max_num_patches}"
        else:
            images = f"{self.image_size[0]}x{self.image_size[1]} {self.resize}"
        return (f"SigLIPProcessor({self.flavor} text, length {self.sequence_length}; "
                f"images {images})")


# --------------------------------------------------------------------------------------
# transformers' files.


def processor_files(processor):
    """`{file name: JSON text}` of the processor's configs (ours and transformers')."""
    dump = lambda d: json.dumps(d, indent=2, sort_keys=True) + "\n"  # noqa: E731
    files = {PROCESSOR_FILE: dump(processor.get_config())}
    normalize = {"do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                 "do_rescale": True, "rescale_factor": 1 / 255, "do_resize": True}  # fmt: skip
    if processor.naflex:
        image = {"image_processor_type": "Siglip2ImageProcessor", "resample": 2,
                 "patch_size": processor.patch_size,
                 "max_num_patches": processor.max_num_patches, **normalize}  # fmt: skip
        processor_class = "Siglip2Processor"
    else:
        if processor.resize not in _RESAMPLE_CODE:
            raise ValueError(
                f"transformers' image processor has no {processor.resize!r} resize; save a "
                "processor with resize='bilinear' or 'bicubic' for transformers."
            )
        height, width = processor.image_size
        image = {"image_processor_type": "SiglipImageProcessor", "do_convert_rgb": True,
                 "resample": _RESAMPLE_CODE[processor.resize],
                 "size": {"height": height, "width": width}, **normalize}  # fmt: skip
        processor_class = "SiglipProcessor"
    files["preprocessor_config.json"] = dump({**image, "processor_class": processor_class})
    if processor.flavor == "siglip":
        tokenizer = {"tokenizer_class": "SiglipTokenizer", "do_lower_case": True,
                     "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}  # fmt: skip
    else:
        tokenizer = {"tokenizer_class": "Siglip2Tokenizer", "add_bos_token": False,
                     "add_eos_token": True, "eos_token": "<eos>", "pad_token": "<pad>",
                     "bos_token": "<bos>", "unk_token": "<unk>"}  # fmt: skip
    tokenizer.update(model_max_length=processor.sequence_length, padding_side="right",
                     processor_class=processor_class)
    files["tokenizer_config.json"] = dump(tokenizer)
    return files


def _tokenizer_file(folder, flavor=None):
    names = [TOKENIZER_FILES[flavor]] if flavor else []
    names += [n for n in ("spiece.model", "tokenizer.model") if n not in names]
    for name in names:
        if (folder / name).exists():
            return folder / name
    only_json = (folder / "tokenizer.json").exists()
    raise FileNotFoundError(
        f"{folder} has no SentencePiece tokenizer file (spiece.model for SigLIP 1, "
        "tokenizer.model for SigLIP 2)"
        + (": it has only tokenizer.json, the tokenizers library's format, which keras-siglip "
           "does not read" if only_json else "")
        + ". The file comes with the checkpoint on the Hugging Face hub (google/siglip-* has "
        "spiece.model, google/siglip2-* tokenizer.model): copy it into the folder."
    )


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def _image_config(folder):
    if (folder / "preprocessor_config.json").exists():
        return _read_json(folder / "preprocessor_config.json")
    if (folder / "processor_config.json").exists():
        entry = _read_json(folder / "processor_config.json").get("image_processor")
        if entry:
            return entry
    raise FileNotFoundError(
        f"{folder} has no preprocessor_config.json (transformers' image-processor settings: "
        "resize mode and size); it comes with the checkpoint on the Hugging Face hub."
    )


def _from_transformers(cls, folder, sequence_length):
    if not (folder / "config.json").exists():
        raise FileNotFoundError(
            f"{folder} is not a transformers checkpoint folder: it has no config.json "
            f"(nor {PROCESSOR_FILE})."
        )
    model = _read_json(folder / "config.json")
    image = _image_config(folder)
    tok_config = (_read_json(folder / "tokenizer_config.json")
                  if (folder / "tokenizer_config.json").exists() else {})  # fmt: skip
    proto = _tokenizer_file(folder)
    tokenizer_class = tok_config.get("tokenizer_class", "")
    if tokenizer_class == "SiglipTokenizer" or (not tokenizer_class and proto.name == "spiece.model"):
        flavor = "siglip"
    else:
        flavor = "siglip2"  # Siglip2Tokenizer, GemmaTokenizer(Fast): the Gemma vocabulary
    text = model.get("text_config", {})
    length = sequence_length or text.get("max_position_embeddings") or 64
    tokenizer = Tokenizer(str(proto), flavor=flavor, sequence_length=int(length))
    if any(np.asarray(image.get(k, [0.5] * 3)).tolist() != [0.5] * 3
           for k in ("image_mean", "image_std")):  # fmt: skip
        raise ValueError(
            f"{folder}/preprocessor_config.json normalises with mean {image.get('image_mean')} "
            f"and std {image.get('image_std')}; SigLIP checkpoints use 0.5 and 0.5, which is all "
            "keras-siglip's preprocessing implements."
        )
    resample = image.get("resample", 3)
    if resample not in _RESAMPLE:
        raise ValueError(
            f"{folder}: resample={resample} in the image-processor config is not supported; "
            "expected 2 (bilinear) or 3 (bicubic)."
        )
    if "max_num_patches" in image or model.get("model_type") == "siglip2":
        patch = image.get("patch_size") or model.get("vision_config", {}).get("patch_size")
        return cls(tokenizer, naflex=True, patch_size=patch,
                   max_num_patches=image.get("max_num_patches", 256))
    size = image.get("size", {})
    if "height" in size:
        image_size = (size["height"], size["width"])
    else:
        side = model.get("vision_config", {}).get("image_size")
        if side is None:
            raise ValueError(f"{folder}: the image-processor config gives no size.")
        image_size = (side, side)
    return cls(tokenizer, image_size=image_size, resize=_RESAMPLE[resample])


def _from_row(cls, name):
    info = presets.preset_info(name)
    candidates = tokenizer_candidates(name)
    proto = next((p for p in candidates if p.exists()), None)
    if proto is None:
        places = "\n  ".join(str(p) for p in candidates)
        raise FileNotFoundError(
            f"No tokenizer for preset {name!r}: download {info['tokenizer_file']} and put it at "
            f"one of:\n  {places}"
        )
    tokenizer = Tokenizer(str(proto), flavor=info["tokenizer_flavor"],
                          sequence_length=info["sequence_length"])
    if info["naflex"]:
        return cls(tokenizer, naflex=True, patch_size=info["patch_size"],
                   max_num_patches=info["max_num_patches"])
    resize = "bicubic" if info["family"] == "siglip" else "bilinear"
    return cls(tokenizer, image_size=info["image_size"], resize=resize)


def tokenizer_candidates(name):
    """Paths, in order, where the SentencePiece file of preset `name` may be put: in the
    weights cache as `<tokenizer>.model` (c4_en, mc4, gemma), under its upstream file name,
    or inside the preset's transformers folder."""
    info = presets.preset_info(name)
    folder = presets.cache_dir()
    flavor_file = TOKENIZER_FILES[info["tokenizer_flavor"]]
    return [
        folder / f"{info['tokenizer']}.model",
        *([folder / Path(info["tokenizer_file"]).name]
          if Path(info["tokenizer_file"]).name != "sentencepiece.model" else []),
        folder / name / flavor_file,
    ]
