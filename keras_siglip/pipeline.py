"""`SigLIPPipeline`: a model and its processor, from raw images and texts to answers.

`SigLIPPipeline.from_preset(x)` loads the model (`SigLIP.from_preset`) and the processor
(`SigLIPProcessor.from_preset`) from one source; `zero_shot_classify`, `embed_images`,
`embed_texts` and `retrieve` then take file paths, PIL images, uint8 arrays of any size and
plain strings, in batches, with a progress bar on long runs. The arithmetic is
`keras_siglip.tasks`'; this module reads, batches and scores.
"""

import collections
import math
import sys
from pathlib import Path

import keras
import numpy as np

from keras_siglip import arguments, tasks
from keras_siglip.convert import load_big_vision, save_transformers
from keras_siglip.convert.io import progress_bar
from keras_siglip.convert.safe_write import atomic_output, check_destination
from keras_siglip.models import SigLIP, SigLIPNaFlexVisionEncoder
from keras_siglip.processor import (
    PROCESSOR_FILES,
    ImageReadError,
    SigLIPProcessor,
    keras_sidecar,
    load_image,
)

# transformers' zero-shot-image-classification pipeline's default prompt.
DEFAULT_TEMPLATE = "This is a photo of {}."  # transformers' zero-shot pipeline's prompt
# Show a progress bar by default when encoding takes more batches than this.
_AUTO_PROGRESS_BATCHES = 8

Retrieved = collections.namedtuple("Retrieved", ["indices", "scores"])
Retrieved.__doc__ = """Result of `retrieve`: `indices` int `(Q, k)` into the index, best first,
and `scores` float32 `(Q, k)`, the sigmoid probabilities of those pairs."""

ImageEmbeddings = collections.namedtuple("ImageEmbeddings", ["embeddings", "kept"])
ImageEmbeddings.__doc__ = """Result of `embed_images_kept`: float32 `(N_kept, D)` L2-normalised
embeddings and int64 `(N_kept,)` the positions of those images among the inputs."""


def _as_list(items, what):
    if isinstance(items, (str, Path)):
        return [items]
    if isinstance(items, np.ndarray) and what == "images":
        if items.ndim not in (3, 4):
            raise ValueError(
                f"An image array must be one image (height, width, channels) or a batch "
                f"(N, height, width, channels); got shape {items.shape}. Pass a list for "
                "images of different sizes."
            )
        items = list(items) if items.ndim == 4 else [items]
    if hasattr(items, "getbands"):  # one PIL image
        return [items]
    items = list(items)
    if not items:
        raise ValueError(f"No {what} given; pass at least one.")
    return items


class SigLIPPipeline:
    """A SigLIP model with the processor that makes its inputs.

    Args:
        model: a `SigLIP` (two towers).
        processor: the `SigLIPProcessor` of the same checkpoint.
        batch_size: images or texts per forward pass.

    Example:
        >>> pipe = SigLIPPipeline.from_preset("path/to/transformers_folder")
        >>> result = pipe.zero_shot_classify(["cat.png", "dog.png"], ["a cat", "a dog"])
        >>> result.probabilities  # (2, 2) sigmoid probabilities
    """

    def __init__(self, model, processor, *, batch_size=32):
        if not isinstance(model, SigLIP):
            raise TypeError(f"model must be a SigLIP (two towers), got {type(model).__name__}.")
        if not isinstance(processor, SigLIPProcessor):
            raise TypeError(
                f"processor must be a SigLIPProcessor, got {type(processor).__name__}."
            )
        _check_match(model, processor)
        self.model = model
        self.processor = processor
        self.batch_size = arguments.check_int("batch_size", batch_size)

    @classmethod
    def from_preset(cls, source, *, preset=None, load_weights=True, batch_size=32, **options):
        """Model and processor from one preset name, transformers folder, `.keras` file or
        big_vision `.npz` (with `preset=`). `options` go to the processor
        (`max_num_patches`, `resize`). The processor is read first: a missing tokenizer
        file is reported before the weights are loaded."""
        if preset is None:
            processor = SigLIPProcessor.from_preset(source, **options)
            model = SigLIP.from_preset(source, load_weights=load_weights)
        else:  # a big_vision .npz: the preset settles what its shapes cannot
            processor = SigLIPProcessor.from_preset(source, preset=preset, **options)
            model = load_big_vision(source, preset=preset)
        return cls(model, processor, batch_size=batch_size)

    def save(self, path, *, overwrite=False):
        """Write model and processor: a `.keras` file with its processor folder beside it
        (`x.keras` and `x.processor/`), or a transformers folder holding both (what
        `from_preset` reads back, and transformers' `from_pretrained`/`AutoProcessor` too).
        Returns the path."""
        path = Path(path)
        if path.suffix.lower() == ".keras":
            sidecar = keras_sidecar(path)
            check_destination(path, overwrite, folder=False)
            check_destination(sidecar, overwrite, folder=True, owned=PROCESSOR_FILES)
            with atomic_output(path, overwrite=overwrite) as tmp:
                self.model.save(tmp)
                self.processor.save(sidecar, overwrite=overwrite)
            return path
        return save_transformers(self.model, path, overwrite=overwrite, processor=self.processor)

    # ----------------------------------------------------------------------------------

    def embed_images(self, images, *, progress=None):
        """L2-normalised float32 `(N, D)` embeddings of images (paths, PIL, arrays).

        Files are read one batch at a time; an unreadable one raises an error naming it
        (`embed_images_kept(..., on_error="skip")` leaves such files out instead).
        """
        return self.embed_images_kept(images, progress=progress).embeddings

    def embed_images_kept(self, images, *, progress=None, on_error="raise"):
        """`ImageEmbeddings(embeddings, kept)`: as `embed_images`; with `on_error="skip"`
        unreadable files are left out (a warning on stderr names each) and `kept` says
        which inputs the rows belong to."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
        images = _as_list(images, "images")
        chunk = self.batch_size
        count = -(-len(images) // chunk)
        bar = progress_bar(count, "encoding images",
                           count > _AUTO_PROGRESS_BATCHES if progress is None else progress)
        parts, kept = [], []
        try:
            for start in range(0, len(images), chunk):
                arrays, indices = [], []
                for i in range(start, min(start + chunk, len(images))):
                    try:
                        arrays.append(load_image(images[i], i))
                    except ImageReadError as error:
                        if on_error == "raise":
                            raise
                        print(f"warning: skipped {error}", file=sys.stderr)
                        continue
                    indices.append(i)
                if arrays:
                    inputs = self.processor.preprocess_images(arrays)
                    parts.append(tasks.embed_images(self.model, inputs, batch_size=chunk,
                                                    progress=False))  # fmt: skip
                    kept += indices
                bar.update(1)
        finally:
            bar.close()
        if not parts:
            raise ImageReadError(f"None of the {len(images)} images could be read.")
        return ImageEmbeddings(np.concatenate(parts), np.asarray(kept, np.int64))

    def embed_texts(self, texts, *, progress=None):
        """L2-normalised float32 `(T, D)` embeddings of a str or a list of str."""
        texts = _as_list(texts, "texts")
        return tasks.embed_texts(self.model, texts, tokenizer=self.processor.tokenizer,
                                 batch_size=self.batch_size, progress=progress)  # fmt: skip

    def label_embeddings(self, labels, templates=(DEFAULT_TEMPLATE,), *, progress=None):
        """One normalised embedding per label, averaged over the prompt templates: `(C, D)`
        (`keras_siglip.tasks.class_embeddings`)."""
        return tasks.class_embeddings(self.model, self.processor.tokenizer, labels, templates,
                                      batch_size=self.batch_size, progress=progress)

    def zero_shot_classify(self, images, labels, *, templates=(DEFAULT_TEMPLATE,), top_k=1,
                           progress=None):
        """Zero-shot sigmoid probabilities that image `n` shows `labels[c]`.

        Each label is put into every template (default transformers' pipeline prompt
        "This is a photo of {}.") and the prompt embeddings are averaged; SigLIP scores every
        pair on its own, so a row need not sum to 1.

        Returns:
            `keras_siglip.tasks.ZeroShotResult(probabilities, top_k)`: float32 `(N, C)` and
            int `(N, top_k)`, the best label first.
        """
        top_k = arguments.check_int("top_k", top_k)
        labels = list(labels) if not isinstance(labels, str) else labels
        label_embeddings = self.label_embeddings(labels, templates, progress=progress)
        probabilities = self.probabilities(self.embed_images(images, progress=progress),
                                           label_embeddings)  # fmt: skip
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, : min(top_k, len(labels))]
        return tasks.ZeroShotResult(probabilities, order)

    def probabilities(self, image_embeddings, text_embeddings):
        """`sigmoid(exp(logit_scale) <img, txt> + logit_bias)`, float32 `(N, T)`, for
        normalised embeddings `(N, D)` and `(T, D)`."""
        scale = math.exp(float(keras.ops.convert_to_numpy(self.model.logit_scale).reshape(-1)[0]))
        bias = float(keras.ops.convert_to_numpy(self.model.logit_bias).reshape(-1)[0])
        logits = scale * (np.asarray(image_embeddings, np.float64)
                          @ np.asarray(text_embeddings, np.float64).T) + bias  # fmt: skip
        # Stable for large |logits|: exp of non-positive numbers only.
        e = np.exp(-np.abs(logits))
        return np.where(logits >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)

    def retrieve(self, queries, index, *, k=5, kind="text"):
        """The `k` best rows of `index` (normalised embeddings `(M, D)`) for each query.

        `kind="text"`: queries are strings scored against image embeddings;
        `kind="image"`: queries are images scored against text embeddings.

        Returns:
            `Retrieved(indices, scores)`, both `(Q, min(k, M))`, the best first.
        """
        index = np.asarray(index)
        if index.ndim != 2 or index.shape[1] != self.model.embed_dim or not len(index):
            raise ValueError(
                f"The index must be embeddings of shape (count, {self.model.embed_dim}) from "
                f"this model; got shape {index.shape}."
            )
        if not np.all(np.isfinite(index)):
            raise ValueError("The index holds NaN or inf; write it again with `embed`.")
        k = arguments.check_int("k", k)
        if kind == "text":
            scores = self.probabilities(index, self.embed_texts(queries)).T
        elif kind == "image":
            scores = self.probabilities(self.embed_images(queries), index)
        else:
            raise ValueError(f"kind must be 'text' or 'image', got {kind!r}.")
        order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, index.shape[0])]
        return Retrieved(order, np.take_along_axis(scores, order, axis=1))


def _check_match(model, processor):
    """Raise unless `processor` makes inputs of the shapes `model` takes."""
    naflex = isinstance(model.vision_encoder, SigLIPNaFlexVisionEncoder)
    kinds = {True: "NaFlex", False: "fixed-resolution"}
    problems = []
    if naflex != processor.naflex:
        problems.append(f"the model is {kinds[naflex]}, the processor {kinds[processor.naflex]}")
    elif naflex and model.vision_encoder.patch_size != processor.patch_size:
        problems.append(f"the model takes {model.vision_encoder.patch_size}-pixel patches, the "
                        f"processor cuts {processor.patch_size}")  # fmt: skip
    elif not naflex and tuple(model.vision_encoder.image_size) != processor.image_size:
        problems.append(f"the model takes {tuple(model.vision_encoder.image_size)} images, the "
                        f"processor makes {processor.image_size}")  # fmt: skip
    if model.text_encoder.sequence_length != processor.sequence_length:
        problems.append(f"the model reads {model.text_encoder.sequence_length} tokens, the "
                        f"processor makes {processor.sequence_length}")  # fmt: skip
    if model.text_encoder.vocabulary_size < processor.tokenizer.vocabulary_size:
        problems.append(f"the model's vocabulary has {model.text_encoder.vocabulary_size} ids, "
                        f"the tokenizer {processor.tokenizer.vocabulary_size}")  # fmt: skip
    if problems:
        raise ValueError(
            "Model and processor do not belong together: " + "; ".join(problems)
            + ". Load both from the same checkpoint (SigLIPPipeline.from_preset)."
        )
