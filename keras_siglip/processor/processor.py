"""The `SigLIPProcessor` class: a tokenizer and image settings, with their files."""

from pathlib import Path


from keras_siglip import presets
from keras_siglip.arguments import check_int
from keras_siglip.convert.safe_write import atomic_output
from keras_siglip.preprocessing import Tokenizer, naflex_patchify, preprocess_images
from keras_siglip.preprocessing.images import RESIZE_MODES
from keras_siglip.processor import sources
from keras_siglip.processor.images import is_pil, load_image


def _positive_int(name, value):
    """A wrong type is a TypeError, a value below 1 a ValueError (as everywhere in the API)."""
    return check_int(name, value, where="SigLIPProcessor")


class SigLIPProcessor:
    """Texts and images of any size to the inputs of one SigLIP / SigLIP 2 checkpoint.

    Args:
        tokenizer: a `keras_siglip.preprocessing.Tokenizer` (its flavor and
            `sequence_length` are the checkpoint's).
        image_size: int or `(H, W)` of a fixed-resolution model; None for NaFlex.
        resize: `"bilinear"`, `"bicubic"` or `"big_vision"` (fixed resolution; see
            `keras_siglip.preprocessing.preprocess_images`).
        naflex: True for a NaFlex model, which takes `patch_size` and `max_num_patches`.
        patch_size: int, NaFlex only.
        max_num_patches: int, the NaFlex patch budget (the padded sequence length).

    Calling it gives the model's input dict: `processor(images=..., texts=...)` ->
    `{"images": float32 (B, H, W, 3) in [-1, 1] or the NaFlex dict, "token_ids": int32 (T, L)}`.
    Images are file paths, PIL images, uint8 arrays of any size (a list, or one
    `(B, H, W, 3)` array); texts a str or a list of str.

    Example:
        >>> processor = SigLIPProcessor.from_preset("path/to/transformers_folder")
        >>> inputs = processor(images=["cat.png"], texts=["a photo of a cat"])
        >>> model(inputs)["logits"]
    """

    def __init__(self, tokenizer, *, image_size=None, resize="bilinear", naflex=False,
                 patch_size=None, max_num_patches=None):
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(
                f"tokenizer must be a keras_siglip.preprocessing.Tokenizer, got "
                f"{type(tokenizer).__name__}."
            )
        self.tokenizer = tokenizer
        self.naflex = bool(naflex)
        if self.naflex:
            if image_size is not None:
                raise ValueError("A NaFlex processor takes patch_size and max_num_patches, "
                                 "not image_size.")  # fmt: skip
            self.patch_size = _positive_int("patch_size", patch_size)
            self.max_num_patches = _positive_int("max_num_patches", max_num_patches)
            self.image_size, self.resize = None, None
        else:
            if image_size is None:
                raise ValueError("A fixed-resolution processor needs image_size=(H, W).")
            if patch_size is not None or max_num_patches is not None:
                raise ValueError("patch_size and max_num_patches are for NaFlex processors "
                                 "(naflex=True).")  # fmt: skip
            if not isinstance(image_size, (list, tuple)):
                image_size = (image_size, image_size)
            if len(image_size) != 2:
                raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}.")
            self.image_size = tuple(_positive_int("image_size", s) for s in image_size)
            if not isinstance(resize, str) or resize not in RESIZE_MODES:
                raise ValueError(f"Unknown resize {resize!r}; expected one of {RESIZE_MODES}.")
            self.resize = resize
            self.patch_size, self.max_num_patches = None, None

    @property
    def flavor(self):
        """The text convention: `"siglip"` (SigLIP 1) or `"siglip2"`."""
        return self.tokenizer.flavor

    @property
    def sequence_length(self):
        """The text length `L` of the token ids."""
        return self.tokenizer.sequence_length

    def _proto(self):
        # The SentencePiece model's bytes, which `save` writes beside the configs.
        return self.tokenizer._sp.serialized_model_proto()

    # ----------------------------------------------------------------------------------
    # Inputs.

    def tokenize(self, texts):
        """A str or a list of str to int32 `(T, L)` token ids."""
        return self.tokenizer(texts)

    def preprocess_images(self, images):
        """Images (file paths, PIL images, uint8 arrays of any size, or one batch array).

        Returns float32 `(B, H, W, 3)` in `[-1, 1]` (fixed resolution) or the NaFlex dict
        `{"patches": (B, N, p*p*3), "patch_mask": (B, N), "spatial_shapes": (B, 2)}`.
        """
        if isinstance(images, (str, Path)) or is_pil(images):
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
        """The settings as a JSON-ready dict (what `keras_siglip_processor.json` holds)."""
        config = {"flavor": self.flavor, "sequence_length": self.sequence_length,
                  "naflex": self.naflex}  # fmt: skip
        if self.naflex:
            config.update(patch_size=self.patch_size, max_num_patches=self.max_num_patches)
        else:
            config.update(image_size=list(self.image_size), resize=self.resize)
        return config

    @classmethod
    def from_config(cls, config, proto):
        """A processor from `get_config()`'s dict and the SentencePiece model (path or bytes)."""
        try:
            tokenizer = Tokenizer(proto, flavor=config["flavor"],
                                  sequence_length=config["sequence_length"])  # fmt: skip
            kwargs = {k: config[k] for k in ("image_size", "resize", "patch_size",
                                             "max_num_patches") if k in config}  # fmt: skip
            return cls(tokenizer, naflex=config["naflex"], **kwargs)
        except KeyError as error:
            raise ValueError(f"The processor config lacks the entry {error}.") from None

    def transformers_files(self):
        """`{file name: bytes}` that transformers' `AutoProcessor` reads: the SentencePiece
        file, `tokenizer_config.json` and `preprocessor_config.json`.

        Raises `ValueError` for `resize="big_vision"`, which transformers cannot express.
        """
        files = {k: v.encode() for k, v in sources.transformers_configs(self.get_config()).items()}
        files[sources.TOKENIZER_FILES[self.flavor]] = self._proto()
        return files

    def save(self, folder, *, overwrite=False):
        """Write the processor to `folder`, atomically: `keras_siglip_processor.json`, the
        SentencePiece file and (unless the resize is big_vision's) transformers' configs.

        An existing folder is replaced only with `overwrite=True`, and only when it holds
        nothing but processor files. Returns the folder as a `Path`.
        """
        folder = Path(folder)
        try:
            files = self.transformers_files()
        except ValueError:  # big_vision's resize: our own config and the tokenizer only
            files = {sources.TOKENIZER_FILES[self.flavor]: self._proto()}
        files[sources.PROCESSOR_FILE] = sources.dump_json(self.get_config()).encode()
        with atomic_output(folder, overwrite=overwrite, folder=True,
                           owned=sources.PROCESSOR_FILES) as tmp:  # fmt: skip
            for name, data in files.items():
                (tmp / name).write_bytes(data)
        return folder

    @classmethod
    def from_folder(cls, folder):
        """Read a folder written by `save`, or a transformers checkpoint folder."""
        folder = Path(folder)
        if (folder / sources.PROCESSOR_FILE).exists():
            config, proto = sources.read_own_folder(folder)
        else:
            config, proto = sources.read_transformers(folder)
        return cls.from_config(config, str(proto))

    @classmethod
    def from_preset(cls, source, **overrides):
        """The processor of a preset name, a transformers folder, a `.keras` file, or a
        big_vision `.npz` with `preset=` (the preset whose tokenizer and sizes it uses).

        Overrides: `preset` (for a `.npz`), `max_num_patches` (NaFlex) and `resize` (fixed
        resolution). Missing files raise `FileNotFoundError` naming the file and where it
        comes from.
        """
        unknown = set(overrides) - {"preset", "max_num_patches", "resize"}
        if unknown:
            raise ValueError(
                f"Unknown argument(s) {sorted(unknown)}; SigLIPProcessor.from_preset takes "
                "preset=, max_num_patches= and resize=."
            )
        row = overrides.pop("preset", None)
        path = Path(str(source)).expanduser()
        if row is not None and path.suffix.lower() != ".npz":
            raise ValueError("preset= applies to big_vision .npz checkpoints only.")
        if str(source) in presets.list_presets():
            processor = cls.from_config(*_str_proto(sources.read_preset(str(source))))
        elif path.suffix.lower() == ".keras":
            sidecar = sources.keras_sidecar(path)
            if not (sidecar / sources.PROCESSOR_FILE).exists():
                raise FileNotFoundError(
                    f"{path} has no processor beside it: expected the folder {sidecar}, which "
                    "SigLIPPipeline.save(path) and `python -m keras_siglip convert` write next "
                    "to a .keras file (or SigLIPProcessor.save(keras_sidecar(path)))."
                )
            processor = cls.from_folder(sidecar)
        elif path.suffix.lower() == ".npz":
            if row is None:
                raise ValueError(
                    f"{path} is a big_vision checkpoint, which holds no tokenizer or image "
                    "settings: pass preset=NAME (--preset NAME on the command line; see "
                    "`python -m keras_siglip presets`)."
                )
            processor = cls.from_config(*_str_proto(sources.read_preset(row)))
        elif path.is_dir():
            processor = cls.from_folder(path)
        else:
            raise FileNotFoundError(
                f"{str(source)!r} is neither a preset name (see `python -m keras_siglip presets`) "
                "nor an existing transformers folder, .keras file or big_vision .npz."
            )
        return processor.with_options(**overrides) if overrides else processor

    def with_options(self, *, max_num_patches=None, resize=None):
        """A copy with another NaFlex budget or resize mode."""
        config = self.get_config()
        if max_num_patches is not None:
            if not self.naflex:
                raise ValueError("max_num_patches applies to NaFlex processors only.")
            config["max_num_patches"] = max_num_patches
        if resize is not None:
            if self.naflex:
                raise ValueError("resize applies to fixed-resolution processors only.")
            config["resize"] = resize
        return type(self).from_config(config, self._proto())

    def __repr__(self):
        if self.naflex:
            images = f"NaFlex patch {self.patch_size}, budget {self.max_num_patches}"
        else:
            images = f"{self.image_size[0]}x{self.image_size[1]} {self.resize}"
        return (f"SigLIPProcessor({self.flavor} text, length {self.sequence_length}; "
                f"images {images})")


def _str_proto(found):
    config, proto = found
    return config, str(proto)
