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

Arguments are checked before anything is encoded (`keras_siglip.arguments`: a `TypeError` for a
wrong type, a `ValueError` for a wrong value, each naming the argument). Empty inputs and
embeddings that hold NaN or inf (given, or produced by the model) raise a `ValueError` naming
the rows: a NaN similarity would otherwise rank as a tie and report a meaningless recall.
"""

import collections
import string

import keras
import numpy as np

from keras_siglip import arguments, backend
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
    batch_size = arguments.check_int("batch_size", batch_size)
    if num_examples(inputs) == 0:
        raise ValueError(f"Nothing to encode ({desc}): the inputs hold 0 examples; pass at least one.")
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
    return _finite(np.concatenate(parts, axis=0).astype(np.float32), desc,
                   "the model produced them: check the inputs and the weights")


def _finite(embeddings, name, origin):
    """`embeddings`, or a ValueError naming the first rows that hold NaN or inf."""
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=-1)) if embeddings.size else []
    if len(bad):
        raise ValueError(
            f"{name}: {len(bad)} of {len(embeddings)} rows hold NaN or inf (rows "
            f"{bad[:5].tolist()}{' ...' if len(bad) > 5 else ''}); {origin}. Similarities of "
            "non-finite embeddings rank nothing, so no result is returned."
        )
    return embeddings


def _embeddings(name, x, other=None):
    """Given embeddings as float `(N, D)` (N >= 1, finite), checked against `other`'s D."""
    array = np.asarray(x)
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating)
                               or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(
            f"{name} must be a float array of shape (count, embed_dim); received "
            f"{array.dtype} of shape {array.shape}."
        )
    if len(array) == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}); pass at least one row.")
    if other is not None and array.shape[1] != other.shape[1]:
        raise ValueError(
            f"{name} have width {array.shape[1]} but the other side has {other.shape[1]}: both "
            "must come from the same model."
        )
    return _finite(array.astype(np.float32), name, "fix or drop those rows")


def _check_common(batch_size, progress):
    arguments.check_int("batch_size", batch_size)
    arguments.check_optional_bool("progress", progress)


def _need_model(model, what):
    if model is None or not hasattr(model, "encode_images"):
        raise TypeError(
            f"Encoding {what} needs a SigLIP model as `model`; received {model!r}. Pass the "
            f"model, or precomputed {what[:-1]} embeddings."
        )


def _normalize(x):
    # big_vision's form, as in the model: x / (||x|| + 1e-8).
    x = np.asarray(x, np.float32)
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def _token_ids(texts, tokenizer):
    if isinstance(texts, str):
        raise TypeError(
            f"texts must be a list of str (or int token ids); received the str {texts!r}. "
            f"Pass a list, e.g. [{texts!r}]."
        )
    if isinstance(texts, (list, tuple)) and not texts:
        raise ValueError("texts is empty; pass at least one text.")
    if isinstance(texts, (list, tuple)) and any(isinstance(t, str) for t in texts):
        texts = arguments.check_str_list("texts", texts)
        if tokenizer is None or not callable(tokenizer):
            raise TypeError(
                f"Texts given as strings need a `tokenizer` (a keras_siglip Tokenizer); "
                f"received tokenizer={tokenizer!r}."
            )
        return tokenizer(texts)
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
    _need_model(model, "images")
    _check_common(batch_size, progress)
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
    _need_model(model, "texts")
    _check_common(batch_size, progress)
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
    templates = _check_templates(templates)
    class_names = _check_class_names(class_names)
    prompts = [t.format(name) for name in class_names for t in templates]
    embeddings = embed_texts(
        model, prompts, tokenizer=tokenizer, batch_size=batch_size, progress=progress
    )
    embeddings = embeddings.reshape(len(class_names), len(templates), -1).mean(axis=1)
    return _normalize(embeddings)


def _check_templates(templates):
    if isinstance(templates, str):
        templates = (templates,)
    if not isinstance(templates, (list, tuple)):
        raise TypeError(
            f"templates must be a str or a list of str; received {type(templates).__name__}."
        )
    if not templates:
        raise ValueError("templates is empty; pass at least one, e.g. 'a photo of a {}.'.")
    for template in templates:
        if not isinstance(template, str):
            raise TypeError(f"Each template must be a str; received {template!r}.")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as e:  # a lone "{" or "}"
            raise ValueError(
                f"Template {template!r} is not a format string ({e}); write literal braces "
                "as '{{' and '}}'."
            ) from None
        if not fields:
            raise ValueError(
                f"Template {template!r} has no '{{}}' for the class name; write e.g. "
                "'a photo of a {}.'."
            )
        if fields != [""]:
            raise ValueError(
                f"Template {template!r} must hold exactly one '{{}}' for the class name (no "
                f"names, no indices); it holds {len(fields)} field(s) {fields}. Write literal "
                "braces as '{{' and '}}'."
            )
    return tuple(templates)


def _check_class_names(class_names):
    """A list of unique str. Duplicates are refused: their columns would be identical and
    top-k would always pick the first, so labels pointing at a later copy could never match."""
    class_names = arguments.check_str_list("class_names", class_names)
    seen, duplicates = set(), []
    for name in class_names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        raise ValueError(
            f"class_names holds duplicates {duplicates[:5]}: each class must be named once "
            "(e.g. list(dict.fromkeys(class_names)) keeps the first of each)."
        )
    return class_names


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
        class_names: list of `C` distinct str. A bare str is refused (it is not a list of
            its characters), and so are duplicates (identical columns, so top-k could never
            pick the second copy).
        templates: str or list of str, each with exactly one `{}` for the class name.
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
    _need_model(model, "class names")
    _check_common(batch_size, progress)
    templates = _check_templates(templates)
    class_names = _check_class_names(class_names)
    top_k = arguments.check_int("top_k", top_k)
    if top_k > len(class_names):
        raise ValueError(
            f"top_k must be in [1, {len(class_names)}] (the number of classes); received {top_k}."
        )
    if image_embeddings is None:
        image_embeddings = embed_images(model, images, batch_size=batch_size, progress=progress)
    image_embeddings = _normalize(_embeddings("image_embeddings", image_embeddings))
    text_embeddings = class_embeddings(
        model, tokenizer, class_names, templates, batch_size=batch_size, progress=progress
    )
    _embeddings("image_embeddings", image_embeddings, text_embeddings)
    scale, bias = _scale_and_bias(model)
    logits = scale * (image_embeddings.astype(np.float64) @ text_embeddings.T) + bias
    probabilities = _sigmoid(logits).astype(np.float32)
    order = np.argsort(-logits, axis=1, kind="stable")[:, :top_k]
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
    _check_common(batch_size, progress)
    ks = _check_ks(ks)
    if image_embeddings is None:
        image_embeddings = embed_images(model, images, batch_size=batch_size, progress=progress)
    if text_embeddings is None:
        text_embeddings = embed_texts(
            model, texts, tokenizer=tokenizer, batch_size=batch_size, progress=progress
        )
    image_embeddings = _normalize(_embeddings("image_embeddings", image_embeddings))
    text_embeddings = _normalize(_embeddings("text_embeddings", text_embeddings, image_embeddings))
    num_images, num_texts = len(image_embeddings), len(text_embeddings)
    text_image_ids = _check_text_image_ids(text_image_ids, num_images, num_texts)

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


def _check_ks(ks):
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (ks,)
    if not isinstance(ks, (list, tuple)) or not ks:
        raise TypeError(f"ks must be a non-empty list of positive ints, e.g. (1, 5); received {ks!r}.")
    return tuple(arguments.check_int(f"ks[{i}]", k) for i, k in enumerate(ks))


def _check_text_image_ids(text_image_ids, num_images, num_texts):
    if text_image_ids is None:
        if num_texts != num_images:
            raise ValueError(
                f"{num_images} images and {num_texts} texts: without text_image_ids, text j "
                "must describe image j. Pass text_image_ids (the image of each text) for "
                "several captions per image."
            )
        return np.arange(num_texts)
    ids = np.asarray(text_image_ids)
    if ids.shape != (num_texts,) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"text_image_ids must be {num_texts} ints, one per text; received {ids.dtype} of "
            f"shape {ids.shape}."
        )
    if ids.min() < 0 or ids.max() >= num_images:
        raise ValueError(
            f"text_image_ids must lie in [0, {num_images}) (there are {num_images} images); "
            f"received values in [{ids.min()}, {ids.max()}]."
        )
    if len(np.unique(ids)) != num_images:
        raise ValueError(
            "Every image needs at least one caption in text_image_ids; images "
            f"{np.setdiff1d(np.arange(num_images), ids)[:5].tolist()} have none."
        )
    return ids
