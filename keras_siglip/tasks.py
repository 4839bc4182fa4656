"""Zero-shot classification and image-text retrieval with a trained SigLIP.

Both tasks encode their inputs in batches (with a progress bar on long runs:
tqdm when it is installed, otherwise nothing is printed) and do the rest in
NumPy on L2-normalised embeddings.

* Zero-shot probabilities are SigLIP's per-pair sigmoid,
  `sigmoid(exp(logit_scale) * cos + logit_bias)` (docs/architecture.md), **not** a softmax
  over the classes: each class is a separate yes/no question and a row need
  not sum to 1.
* Retrieval ranks by cosine similarity. The logits are an increasing function
  of it (`exp(logit_scale) > 0`), so the ranking is the same and the model's
  scale and bias are not needed.
"""

import collections

import keras
import numpy as np

from keras_siglip import backend
from keras_siglip.convert.io import progress_bar as _progress_bar
from keras_siglip.models.batching import batches, num_examples

ZeroShotResult = collections.namedtuple("ZeroShotResult", ["probabilities", "top_k"])
ZeroShotResult.__doc__ = """Result of `zero_shot_classify`.

Fields:
    probabilities: float32 `(N, C)`: sigmoid probability that image `n`
        shows class `c`.
    top_k: int `(N, k)`: class indices by decreasing probability.
"""

# Show a progress bar by default only when encoding takes more batches than this.
_AUTO_PROGRESS_BATCHES = 8


def _encode(encode, inputs, batch_size, desc, progress):
    """`encode` over `inputs` in batches of `batch_size`, as float32 NumPy `(N, D)`.

    The last batch is padded to the full batch size (and the padding dropped),
    so compiled backends trace one shape only.
    """
    if batch_size is None or isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int; received {batch_size!r}.")
    batch_size = int(batch_size)
    num_batches = -(-num_examples(inputs) // batch_size)
    if progress is None:
        progress = num_batches > _AUTO_PROGRESS_BATCHES
    bar = _progress_bar(num_batches, desc, progress)
    parts = []
    try:
        with backend.no_grad():
            for piece, count in batches(inputs, batch_size, pad=True):
                parts.append(keras.ops.convert_to_numpy(encode(piece))[:count])
                bar.update(1)
    finally:
        bar.close()
    return np.concatenate(parts, axis=0).astype(np.float32)


def _normalize(x):
    # big_vision's form, as in the model: x / (||x|| + 1e-8).
    x = np.asarray(x, np.float32)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def _token_ids(texts, tokenizer):
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, (list, tuple)) and texts and isinstance(texts[0], str):
        if tokenizer is None:
            raise ValueError("Texts given as strings need a `tokenizer`.")
        return tokenizer(list(texts))
    token_ids = np.asarray(texts)
    if token_ids.ndim != 2 or not np.issubdtype(token_ids.dtype, np.integer):
        raise ValueError(
            "texts must be a list of str or int token ids of shape (num_texts, length); "
            f"received {token_ids.dtype} of shape {token_ids.shape}."
        )
    return token_ids


def embed_images(model, images, *, batch_size=64, progress=None):
    """L2-normalised image embeddings `(N, D)` as float32 NumPy, encoded in batches.

    Args:
        model: a `SigLIP`.
        images: what `model.encode_images` takes: `(N, H, W, 3)` in `[-1, 1]`
            or a NaFlex dict.
        batch_size: int. Images per forward pass.
        progress: bool or None. Show a progress bar; None shows one when
            there are more than a few batches.
    """
    return _normalize(
        _encode(model.encode_images, images, batch_size, "encoding images", progress)
    )


def embed_texts(model, texts, *, tokenizer=None, batch_size=64, progress=None):
    """L2-normalised text embeddings `(T, D)` as float32 NumPy, encoded in batches.

    Args:
        model: a `SigLIP`.
        texts: a list of str (needs `tokenizer`) or int token ids `(T, L)`.
        tokenizer: a `keras_siglip.preprocessing.Tokenizer`.
        batch_size, progress: as for `embed_images`.
    """
    token_ids = _token_ids(texts, tokenizer)
    return _normalize(
        _encode(model.encode_texts, token_ids, batch_size, "encoding texts", progress)
    )


def class_embeddings(model, tokenizer, class_names, templates=("a photo of a {}.",), *,
                     batch_size=64, progress=None):
    """One normalised text embedding per class, averaged over prompt templates: `(C, D)`.

    Each class name is put into every template (`template.format(name)`); the
    `C x T` prompts are encoded and normalised, averaged over the templates of
    each class, and the mean is normalised again: CLIP's prompt ensembling.
    Averaging embeddings (rather than per-template probabilities) gives one
    direction per class, scored by one cosine; renormalising puts it back on
    the unit sphere, the scale the learned `logit_scale` and `logit_bias`
    were trained on. The probability is thus that of the averaged prompt, not
    the mean of the per-template probabilities.
    """
    if isinstance(templates, str):
        templates = (templates,)
    templates = tuple(templates)
    if not templates:
        raise ValueError("templates must name at least one template.")
    for template in templates:
        if "{}" not in template:
            raise ValueError(f"Template {template!r} has no '{{}}' for the class name.")
    class_names = list(class_names)
    if not class_names:
        raise ValueError("class_names is empty.")
    prompts = [t.format(name) for name in class_names for t in templates]
    embeddings = embed_texts(
        model, prompts, tokenizer=tokenizer, batch_size=batch_size, progress=progress
    )
    embeddings = embeddings.reshape(len(class_names), len(templates), -1).mean(axis=1)
    return _normalize(embeddings)


def _scale_and_bias(model):
    scale = float(np.exp(keras.ops.convert_to_numpy(model.logit_scale).reshape(-1)[0]))
    bias = float(keras.ops.convert_to_numpy(model.logit_bias).reshape(-1)[0])
    return scale, bias


def _sigmoid(x):
    # Stable for large |x|: exp of a non-positive number only.
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def zero_shot_classify(model, tokenizer, images, class_names, templates=("a photo of a {}.",), *,
                       image_embeddings=None, batch_size=64, top_k=1, progress=None):
    """Classify images by comparing them with text prompts of the class names.

    `probabilities[n, c] = sigmoid(exp(logit_scale) * <img_n, cls_c> + logit_bias)`
    with `img_n` the normalised image embedding and `cls_c` the template
    average of `class_embeddings`. Per-pair sigmoid, **not** a softmax: a row
    may sum to anything in `[0, C]`; the ranking is by cosine either way.

    Args:
        model: a `SigLIP`.
        tokenizer: the model's `keras_siglip.preprocessing.Tokenizer`.
        images: `(N, H, W, 3)` in `[-1, 1]` (see `preprocess_images`) or a
            NaFlex dict; None when `image_embeddings` are given.
        class_names: list of `C` str.
        templates: str or sequence of str with one `{}` for the class name.
        image_embeddings: optional `(N, D)` embeddings (normalised or not)
            instead of `images`, e.g. from `embed_images`.
        batch_size: int. Examples per forward pass.
        top_k: int. How many classes to return per image.
        progress: bool or None. Progress bars; None shows them on long runs.

    Returns:
        `ZeroShotResult(probabilities, top_k)`: float32 `(N, C)` and int
        `(N, top_k)` (most probable class first).

    Example:
    >>> result = zero_shot_classify(model, tokenizer, images, ["cat", "dog"])
    >>> result.probabilities.shape, result.top_k[:, 0]   # (N, 2), best class per image
    """
    if (images is None) == (image_embeddings is None):
        raise ValueError("Pass exactly one of `images` and `image_embeddings`.")
    if image_embeddings is None:
        image_embeddings = embed_images(model, images, batch_size=batch_size, progress=progress)
    image_embeddings = _normalize(image_embeddings)
    text_embeddings = class_embeddings(
        model, tokenizer, class_names, templates, batch_size=batch_size, progress=progress
    )
    num_classes = len(text_embeddings)
    if not 1 <= int(top_k) <= num_classes:
        raise ValueError(f"top_k must be in [1, {num_classes}]; received {top_k!r}.")
    scale, bias = _scale_and_bias(model)
    logits = scale * (image_embeddings.astype(np.float64) @ text_embeddings.T) + bias
    probabilities = _sigmoid(logits).astype(np.float32)
    order = np.argsort(-logits, axis=1, kind="stable")[:, : int(top_k)]
    return ZeroShotResult(probabilities, order)


def retrieval_recall(model, images=None, texts=None, *, tokenizer=None, image_embeddings=None,
                     text_embeddings=None, text_image_ids=None, ks=(1, 5), batch_size=64,
                     progress=None):
    """Recall@k of image->text and text->image retrieval on paired data.

    Text `j` describes image `text_image_ids[j]` (default: text `j` describes
    image `j`, one caption each); an image may have several captions.

    * image->text: an image counts as found at `k` when one of its captions
      is among the `k` texts most similar to it;
    * text->image: a text counts when its image is among the `k` images most
      similar to it.

    Ties count against the query: a caption's rank is the number of wrong
    texts scoring at least as high as the best right one, so a model that
    maps everything to one point scores 0, not 1.

    Args:
        model: a `SigLIP` (may be None when both embeddings are given).
        images: `(N, H, W, 3)` in `[-1, 1]` or a NaFlex dict; or None with
            `image_embeddings`.
        texts: list of str (with `tokenizer`) or int token ids `(T, L)`; or
            None with `text_embeddings`.
        tokenizer: a `Tokenizer`, for texts given as strings.
        image_embeddings, text_embeddings: optional `(N, D)`, `(T, D)`
            embeddings (normalised or not) instead of images / texts.
        text_image_ids: int `(T,)`, the image each text describes.
        ks: the k of recall@k.
        batch_size, progress: as for `zero_shot_classify`.

    Returns:
        `{"image_to_text": {k: recall}, "text_to_image": {k: recall}}`, each
        recall a float in `[0, 1]`.
    """
    if (images is None) == (image_embeddings is None):
        raise ValueError("Pass exactly one of `images` and `image_embeddings`.")
    if (texts is None) == (text_embeddings is None):
        raise ValueError("Pass exactly one of `texts` and `text_embeddings`.")
    if image_embeddings is None:
        image_embeddings = embed_images(model, images, batch_size=batch_size, progress=progress)
    if text_embeddings is None:
        text_embeddings = embed_texts(
            model, texts, tokenizer=tokenizer, batch_size=batch_size, progress=progress
        )
    image_embeddings = _normalize(image_embeddings)
    text_embeddings = _normalize(text_embeddings)
    num_images, num_texts = len(image_embeddings), len(text_embeddings)
    if text_image_ids is None:
        if num_texts != num_images:
            raise ValueError(
                f"{num_images} images and {num_texts} texts: without text_image_ids, text j "
                "must describe image j."
            )
        text_image_ids = np.arange(num_texts)
    text_image_ids = np.asarray(text_image_ids)
    if text_image_ids.shape != (num_texts,) or not np.issubdtype(text_image_ids.dtype, np.integer):
        raise ValueError(f"text_image_ids must be {num_texts} ints, one per text.")
    if text_image_ids.min() < 0 or text_image_ids.max() >= num_images:
        raise ValueError(f"text_image_ids must lie in [0, {num_images}).")
    if len(np.unique(text_image_ids)) != num_images:
        raise ValueError("Every image needs at least one caption in text_image_ids.")
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive ints; received {ks!r}.")

    similarity = image_embeddings.astype(np.float64) @ text_embeddings.astype(np.float64).T
    relevant = text_image_ids[None, :] == np.arange(num_images)[:, None]  # (N, T)

    # image -> text: wrong texts scoring >= the image's best caption.
    best_caption = np.where(relevant, similarity, -np.inf).max(axis=1, keepdims=True)
    image_rank = np.sum(~relevant & (similarity >= best_caption), axis=1)
    # text -> image: other images scoring >= the text's own image.
    own = similarity[text_image_ids, np.arange(num_texts)][None, :]
    text_rank = np.sum(~relevant & (similarity >= own), axis=0)
    return {
        "image_to_text": {k: float(np.mean(image_rank < k)) for k in ks},
        "text_to_image": {k: float(np.mean(text_rank < k)) for k in ks},
    }
