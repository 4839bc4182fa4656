"""The digits demo's data: images, captions, the caption tokenizer and the batch schedule."""

import io
import math
from pathlib import Path

import numpy as np

from keras_siglip.preprocessing import Tokenizer, canonicalize_text, preprocess_images

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Training captions: `{word}` is "seven", `{numeral}` is "7".
TRAIN_TEMPLATES = (
    "a photo of the digit {word}.",
    "a handwritten {numeral}.",
    "the number {word} written by hand.",
    "a scanned handwritten digit: {numeral}.",
    "a small grey picture of a {word}.",
    "{word}, written by hand.",
    "an image showing the numeral {numeral}.",
)
# Held out: used only for evaluation. New sentences, but built from words the
# captions use, so the tokenizer and the text tower have seen every piece.
EVAL_TEMPLATES = (
    "a photo of the number {}.",
    "a handwritten digit {}.",
    "a picture of the digit {}.",
)

FLAVOR = "siglip"
SEQUENCE_LENGTH = 12


def caption(template, label):
    return template.format(word=DIGIT_WORDS[label], numeral=label)


def caption_token_ids(tokenizer):
    """Every (digit, training phrasing) caption tokenised: `(10, len(TRAIN_TEMPLATES), L)`."""
    ids = tokenizer([caption(t, label) for label in range(10) for t in TRAIN_TEMPLATES])
    return ids.reshape(10, len(TRAIN_TEMPLATES), -1)


def digits_to_pixels(digits):
    """sklearn's `(N, 8, 8)` digits (0..16, ink high) to uint8 RGB `(N, 8, 8, 3)`."""
    gray = np.round(np.asarray(digits, np.float64) * (255.0 / 16.0)).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def load_digits_split(seed=0, test_fraction=0.2):
    """The digits with a stratified train / held-out split.

    Returns `(pixels uint8 (N, 8, 8, 3), labels (N,), train_idx, test_idx)`.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in range(10):
        idx = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * len(idx)))
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    return digits_to_pixels(digits.images), labels, np.sort(train), np.sort(test)


def held_out_digits(metadata):
    """The demo's held-out digits: `(pixels uint8 (N, 8, 8, 3), images (N, S, S, 3), labels)`.

    `metadata` is what the demo wrote (`load_trained`); `images` are preprocessed as in
    training (`metadata["image_size"]`, bilinear, [-1, 1]).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = np.asarray(metadata["test_indices"])
    pixels = digits_to_pixels(digits.images[index])
    images = preprocess_images(pixels, metadata["image_size"], resize=metadata["resize"])
    return pixels, images, digits.target[index].astype(np.int64)


def train_tokenizer(path, seed=0):
    """A tiny SentencePiece model on the caption corpus, in the T5 id layout (SigLIP 1).

    A word model: the corpus has ~40 distinct words, so every word, digit
    names and numerals included, is one piece and the text tower sees the
    digit as one token, not as a few shared letters.
    """
    import sentencepiece as spm

    # Normalised as the "siglip" tokenizer will normalise them (lowercase, no punctuation).
    corpus = [canonicalize_text(caption(t, label)) for t in TRAIN_TEMPLATES for label in range(10)]
    np.random.default_rng(seed).shuffle(corpus)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buffer,
        model_type="word",
        vocab_size=len({w for c in corpus for w in c.split()}) + 3,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )  # fmt: skip
    Path(path).write_bytes(buffer.getvalue())
    return Tokenizer(str(path), flavor=FLAVOR, sequence_length=SEQUENCE_LENGTH)


def batch_schedule(train_labels, batch_size, epochs, rng):
    """Indices into the training set, `(epochs, steps_per_epoch, batch_size)`.

    The sigmoid loss treats every other caption in the batch as a negative.
    With ten classes, a batch holding two sevens makes the other seven's
    caption a negative of each seven: a false negative. That is inherent to
    contrastive training on labelled data; it barely changes which class
    scores highest, but it caps the learned probability of a right pair near
    `1 / (sevens in the batch)` (after the same number of steps, a mean
    probability of ~0.35 for the right prompt with two of each digit per
    batch, ~0.7 with one). So batches are class-balanced:
    each epoch deals the images round-robin over the classes (in a random
    class order each round) and a batch of `10 m` images holds exactly `m` of
    each digit. The default batch of 10 has none: each image's only positive
    is its own caption, and the nine negatives are the other nine digits.
    """
    per_class = [np.flatnonzero(train_labels == c) for c in range(10)]
    rounds = min(len(p) for p in per_class)
    steps_per_epoch = (rounds * 10) // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} is larger than an epoch ({rounds * 10}).")
    schedule = np.empty((epochs, steps_per_epoch, batch_size), np.int64)
    for epoch in range(epochs):
        shuffled = [rng.permutation(p)[:rounds] for p in per_class]
        order = np.stack([shuffled[c] for c in range(10)], axis=1)  # (rounds, 10)
        # A random class order within each round.
        within = rng.permuted(np.tile(np.arange(10), (rounds, 1)), axis=1)
        order = np.take_along_axis(order, within, axis=1)
        schedule[epoch] = order.reshape(-1)[: steps_per_epoch * batch_size].reshape(
            steps_per_epoch, batch_size
        )
    return schedule


def training_plan(train_labels, batch_size, epochs, steps, rng):
    """The whole run's batches: `(schedule, phrasing, total_steps)`.

    `schedule` is `batch_schedule`'s `(epochs, steps_per_epoch, batch_size)` indices, with
    as many epochs as `steps` needs when it is given (the last one possibly cut short);
    `phrasing` picks a training template for each of its images.
    """
    steps_per_epoch = batch_schedule(train_labels, batch_size, 1, np.random.default_rng(0)).shape[1]
    if steps is not None:
        epochs = math.ceil(steps / steps_per_epoch)
    total_steps = int(steps) if steps is not None else epochs * steps_per_epoch
    schedule = batch_schedule(train_labels, batch_size, epochs, rng)
    phrasing = rng.integers(0, len(TRAIN_TEMPLATES), schedule.shape)
    return schedule, phrasing, total_steps
