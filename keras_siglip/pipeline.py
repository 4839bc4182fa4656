"""`SigLIPPipeline`: a model and its processor, from raw images and texts to answers.

`SigLIPPipeline.from_preset(x)` loads the model (`SigLIP.from_preset`) and the processor
(`SigLIPProcessor.from_preset`) from one source, then `classify`, `embed_images`,
`embed_texts` and `retrieve` take file paths, PIL images, uint8 arrays of any size and plain
strings. The arithmetic is `keras_siglip.tasks`'; this module only feeds it.
"""

import collections

import numpy as np

from keras_siglip import arguments, tasks
from keras_siglip.convert.io import progress_bar
from keras_siglip.models import SigLIP
from keras_siglip.processor import SigLIPProcessor

# transformers' zero-shot-image-classification pipeline's default prompt.
DEFAULT_TEMPLATE = "This is a photo of {}."

Retrieved = collections.namedtuple("Retrieved", ["indices", "scores"])
Retrieved.__doc__ = """Result of `retrieve`: `indices` int `(Q, k)` into the index, best first,
and `scores` float32 `(Q, k)`, the sigmoid probabilities of those pairs."""


def _as_list(items, what):
    if isinstance(items, str):
        return [items]
    if isinstance(items, np.ndarray) and items.ndim in (3, 4):
        return list(items) if items.ndim == 4 else [items]
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
    """

    def __init__(self, model, processor, *, batch_size=32):
        if not isinstance(model, SigLIP):
            raise TypeError(f"model must be a SigLIP (two towers), got {type(model).__name__}.")
        if not isinstance(processor, SigLIPProcessor):
            raise TypeError(
                f"processor must be a SigLIPProcessor, got {type(processor).__name__}."
            )
        naflex = getattr(model.vision_encoder, "is_naflex", False)
        if naflex != processor.naflex:
            raise ValueError(
                f"The model is {'NaFlex' if naflex else 'fixed-resolution'} but the processor "
                f"is {'NaFlex' if processor.naflex else 'fixed-resolution'}: load both from "
                "the same checkpoint."
            )
        self.model = model
        self.processor = processor
        self.batch_size = arguments.check_int("batch_size", batch_size)

    @classmethod
    def from_preset(cls, source, *, preset=None, load_weights=True, batch_size=32, **options):
        """Model and processor from one preset name, transformers folder, `.keras` file or
        big_vision `.npz` (with `preset=`). `options` go to the processor
        (`sequence_length`, `max_num_patches`, `resize`)."""
        model_kwargs = {"preset": preset} if preset is not None else {}
        processor_kwargs = dict(options, **model_kwargs)
        processor = SigLIPProcessor.from_preset(source, **processor_kwargs)
        model = SigLIP.from_preset(source, load_weights=load_weights, **model_kwargs)
        return cls(model, processor, batch_size=batch_size)

    # ----------------------------------------------------------------------------------

    def embed_images(self, images, *, progress=None, on_error="raise"):
        """L2-normalised float32 `(N, D)` embeddings of images (paths, PIL, arrays).

        `on_error="skip"` leaves out files that cannot be read (with a warning on stderr);
        use `embed_images_kept` to also learn which were kept.
        """
        return self.embed_images_kept(images, progress=progress, on_error=on_error)[0]

    def embed_images_kept(self, images, *, progress=None, on_error="raise"):
        """`(embeddings, kept)`: as `embed_images`, and the indices of the images embedded."""
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
        images = _as_list(images, "images")
        chunk = max(self.batch_size, 1)
        count = -(-len(images) // chunk)
        bar = progress_bar(count, "encoding images",
                           len(images) > 8 * chunk if progress is None else progress)  # fmt: skip
        parts, kept = [], []
        try:
            for start in range(0, len(images), chunk):
                arrays, indices = [], []
                for i in range(start, min(start + chunk, len(images))):
                    try:
                        arrays.append(_load(images[i], i))
                    except ValueError as error:
                        if on_error == "raise":
                            raise
                        import sys

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
            raise ValueError("None of the images could be read.")
        return np.concatenate(parts), np.asarray(kept, np.int64)

    def embed_texts(self, texts, *, progress=None):
        """L2-normalised float32 `(T, D)` embeddings of a list of strings."""
        texts = _as_list(texts, "texts")
        return tasks.embed_texts(self.model, texts, tokenizer=self.processor.tokenizer,
                                 batch_size=self.batch_size, progress=progress)  # fmt: skip

    def classify(self, images, labels, *, templates=(DEFAULT_TEMPLATE,), progress=None):
        """Zero-shot sigmoid probabilities `(N, C)`: image `n` shows `labels[c]`.

        Each label is put into every template and the prompt embeddings averaged
        (`tasks.class_embeddings`); SigLIP scores every pair on its own, so the rows do
        not sum to 1.
        """
        image_embeddings = self.embed_images(images, progress=progress)
        text_embeddings = tasks.class_embeddings(
            self.model, self.processor.tokenizer, labels, templates,
            batch_size=self.batch_size, progress=progress,
        )
        return self.probabilities(image_embeddings, text_embeddings)

    def probabilities(self, image_embeddings, text_embeddings):
        """sigmoid(exp(logit_scale) <img, txt> + logit_bias) for normalised embeddings."""
        scale = float(np.exp(np.asarray(self.model.logit_scale.numpy(), np.float64)))
        bias = float(np.asarray(self.model.logit_bias.numpy(), np.float64))
        logits = scale * (np.asarray(image_embeddings, np.float64)
                          @ np.asarray(text_embeddings, np.float64).T) + bias  # fmt: skip
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def retrieve(self, queries, index, *, k=5, kind="text"):
        """The `k` best rows of `index` (normalised embeddings `(M, D)`) for each query.

        `kind="text"`: queries are strings scored as texts against image embeddings;
        `kind="image"`: queries are images scored against text embeddings.
        """
        index = np.asarray(index, np.float32)
        if index.ndim != 2 or index.shape[1] != self.model.embed_dim:
            raise ValueError(
                f"The index must be embeddings of shape (count, {self.model.embed_dim}) from "
                f"this model; got shape {index.shape}."
            )
        k = arguments.check_int("k", k)
        if kind == "text":
            query = self.embed_texts(queries)
            scores = self.probabilities(index, query).T
        elif kind == "image":
            query = self.embed_images(queries)
            scores = self.probabilities(query, index)
        else:
            raise ValueError(f"kind must be 'text' or 'image', got {kind!r}.")
        k = min(k, index.shape[0])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return Retrieved(order, np.take_along_axis(scores, order, axis=1))


def _load(item, index):
    from keras_siglip.processor import load_image

    return load_image(item, index)
