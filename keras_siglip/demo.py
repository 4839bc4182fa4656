"""The main job: train a small SigLIP from scratch on handwritten digits, then use it zero-shot.

`python -m keras_siglip demo` (or `run_demo()`), on the current Keras backend:

1. Images: scikit-learn's handwritten digits (`sklearn.datasets.load_digits`,
   1797 real 8x8 scans with values 0..16), upsampled to `image_size` with
   `preprocess_images`; a stratified 80/20 split holds images out.
2. Text: captions written from the labels in several phrasings ("a handwritten
   7.", "the number seven written by hand.", ...), tokenised with a tiny
   SentencePiece model that the demo trains on its own caption corpus.
3. Training: `SigLIP.compile()` + `fit` with the sigmoid loss.
4. Evaluation on the held-out images: zero-shot classification from prompts
   in phrasings never seen in training, and recall@1 of image<->text
   retrieval; a probability-matrix plot and the training curve.
"""

import json
import math
import time
from pathlib import Path

import keras
import numpy as np

from keras_siglip.models import SigLIP, SigLIPTextEncoder, SigLIPVisionEncoder
from keras_siglip.preprocessing import Tokenizer, preprocess_images
from keras_siglip import tasks

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

FLAVOR = "siglip2"
SEQUENCE_LENGTH = 16
MODEL_FILE = "siglip_digits.keras"
TOKENIZER_FILE = "tokenizer.model"
METADATA_FILE = "metadata.json"
MATRIX_FILE = "probabilities.png"
CURVE_FILE = "training_curve.png"

DEFAULTS = dict(
    epochs=30,
    steps=None,
    batch_size=20,
    image_size=16,
    patch_size=4,
    width=64,
    depth=2,
    num_heads=4,
    learning_rate=2e-3,
    seed=0,
    output="demo_output",
)


def caption(template, label):
    return template.format(word=DIGIT_WORDS[label], numeral=label)


# ----------------------------------------------------------------------------------------
# Data


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


def train_tokenizer(path, seed=0):
    """A tiny SentencePiece model on the caption corpus, in the Gemma id layout (SigLIP 2)."""
    import io

    import sentencepiece as spm

    corpus = [caption(t, label) for t in TRAIN_TEMPLATES for label in range(10)]
    # Lowercase like the tokenizer's "siglip2" normalisation, so pieces match what it feeds.
    corpus = [text.lower() for text in corpus] * 4
    np.random.default_rng(seed).shuffle(corpus)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=buffer,
        model_type="unigram",
        vocab_size=96,
        hard_vocab_limit=False,
        character_coverage=1.0,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )  # fmt: skip
    Path(path).write_bytes(buffer.getvalue())
    return Tokenizer(str(path), flavor=FLAVOR, sequence_length=SEQUENCE_LENGTH)


def batch_schedule(train_labels, batch_size, epochs, rng):
    """Indices into the training set, `(epochs, steps_per_epoch, batch_size)`.

    The sigmoid loss treats every other caption in the batch as a negative.
    With ten classes, a batch holding two sevens makes "a handwritten 7." a
    negative of a seven: a false negative. That is inherent to training a
    contrastive model on labelled data; it does not change which class scores
    highest, but it caps the learned probability of a right pair near
    `1 / (sevens in the batch)`. So batches are class-balanced: each epoch
    deals the images round-robin over the classes (in a random class order
    each round), and a batch of `10 m` images holds exactly `m` of each digit.
    A moderate `m` keeps the probabilities readable and the batch big enough
    for the negatives to teach something.
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
        order = np.take_along_axis(order, rng.permuted(np.tile(np.arange(10), (rounds, 1)), axis=1), 1)
        schedule[epoch] = order.reshape(-1)[: steps_per_epoch * batch_size].reshape(
            steps_per_epoch, batch_size
        )
    return schedule


# ----------------------------------------------------------------------------------------
# Model and training


def build_model(vocabulary_size, image_size, patch_size, width, depth, num_heads):
    vision = SigLIPVisionEncoder(
        image_size, patch_size, width=width, depth=depth, mlp_dim=4 * width,
        num_heads=num_heads, name="vision_encoder",
    )  # fmt: skip
    text = SigLIPTextEncoder(
        vocabulary_size, SEQUENCE_LENGTH, width=width, depth=depth, mlp_dim=4 * width,
        num_heads=num_heads, name="text_encoder",
    )  # fmt: skip
    return SigLIP(vision, text, name="siglip_digits")


class _History(keras.callbacks.Callback):
    """Per-step losses and the learned temperature and bias after each epoch."""

    def __init__(self):
        super().__init__()
        self.step_losses = []
        self.epoch_ends = []
        self.temperature = []
        self.bias = []
        self._previous_mean = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._previous_mean = 0.0
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the running mean of the epoch; recover this step's loss from it.
        mean = float(logs["loss"])
        self._step += 1
        self.step_losses.append(self._step * mean - (self._step - 1) * self._previous_mean)
        self._previous_mean = mean

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(len(self.step_losses))
        self.temperature.append(float(np.exp(keras.ops.convert_to_numpy(self.model.logit_scale)[0])))
        self.bias.append(float(keras.ops.convert_to_numpy(self.model.logit_bias)[0]))


# ----------------------------------------------------------------------------------------
# Evaluation


def retrieval_groups(test_labels, rng):
    """Held-out images in galleries of ten, one per digit: `(num_groups, 10)` indices.

    Captions say only which digit is shown, so in a gallery with two sevens
    both sevens' captions would be right for either; recall over the whole
    held-out set would measure chance among same-class images. One image of
    each digit per gallery makes every caption's image unique.
    """
    per_class = [rng.permutation(np.flatnonzero(test_labels == c)) for c in range(10)]
    groups = min(len(p) for p in per_class)
    return np.stack([p[:groups] for p in per_class], axis=1)


def evaluate(model, tokenizer, images, labels, rng, batch_size=128):
    """Zero-shot accuracy, probabilities and retrieval recall@1 on held-out images."""
    image_embeddings = tasks.embed_images(model, images, batch_size=batch_size)
    result = tasks.zero_shot_classify(
        model, tokenizer, None, DIGIT_WORDS, EVAL_TEMPLATES,
        image_embeddings=image_embeddings, batch_size=batch_size,
    )  # fmt: skip
    accuracy = float(np.mean(result.top_k[:, 0] == labels))

    # Every image of a gallery gets one caption per held-out phrasing.
    prompts = [t.format(word) for word in DIGIT_WORDS for t in EVAL_TEMPLATES]
    prompt_embeddings = tasks.embed_texts(model, prompts, tokenizer=tokenizer, batch_size=batch_size)
    prompt_embeddings = prompt_embeddings.reshape(10, len(EVAL_TEMPLATES), -1)
    recalls = {"image_to_text": [], "text_to_image": []}
    for group in retrieval_groups(labels, rng):
        texts = prompt_embeddings[labels[group]].reshape(-1, prompt_embeddings.shape[-1])
        recall = tasks.retrieval_recall(
            None, image_embeddings=image_embeddings[group], text_embeddings=texts,
            text_image_ids=np.repeat(np.arange(len(group)), len(EVAL_TEMPLATES)), ks=(1,),
        )  # fmt: skip
        for key in recalls:
            recalls[key].append(recall[key][1])
    return {
        "zero_shot_accuracy": accuracy,
        "recall@1_image_to_text": float(np.mean(recalls["image_to_text"])),
        "recall@1_text_to_image": float(np.mean(recalls["text_to_image"])),
        "probabilities": result.probabilities,
    }


# ----------------------------------------------------------------------------------------
# Plots (matplotlib's object API: no global pyplot state, no display needed)


def plot_probabilities(path, probabilities, labels, accuracy, backend):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    matrix = probabilities[order].T  # (10 prompts, N images)
    fig = Figure(figsize=(13, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=[3.2, 1])
    image = left.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis",
                        vmin=0.0, vmax=1.0)  # fmt: skip
    bounds = np.flatnonzero(np.diff(sorted_labels)) + 0.5
    for x in bounds:
        left.axvline(x, color="white", linewidth=0.6, alpha=0.7)
    edges = np.concatenate([[-0.5], bounds, [len(labels) - 0.5]])
    left.set_xticks((edges[:-1] + edges[1:]) / 2, [str(c) for c in range(10)])
    left.set_yticks(range(10), [EVAL_TEMPLATES[0].format(w) for w in DIGIT_WORDS], fontsize=8)
    left.set_xlabel(f"held-out images ({len(labels)}), sorted by true digit")
    left.set_ylabel("class prompt (averaged over held-out phrasings)")
    left.set_title(
        f"SigLIP on digits ({backend}): sigmoid(t·cos + b) per image-prompt pair; "
        f"zero-shot accuracy {accuracy:.1%}"
    )
    fig.colorbar(image, ax=left, label="probability", fraction=0.03)

    means = np.stack([probabilities[labels == c].mean(axis=0) for c in range(10)])
    right.imshow(means, cmap="viridis", vmin=0.0, vmax=1.0)
    for i in range(10):
        for j in range(10):
            right.text(j, i, f"{means[i, j]:.2f}"[1:] if means[i, j] < 1 else "1", ha="center",
                       va="center", fontsize=6, color="black" if means[i, j] > 0.5 else "white")  # fmt: skip
    right.set_xticks(range(10), range(10))
    right.set_yticks(range(10), range(10))
    right.set_xlabel("class prompt")
    right.set_ylabel("true digit")
    right.set_title("mean probability")
    fig.savefig(path, dpi=110)


def plot_training_curve(path, history, backend):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, param_ax = fig.subplots(1, 2, width_ratios=[2, 1])
    steps = np.arange(1, len(history.step_losses) + 1)
    loss_ax.plot(steps, history.step_losses, linewidth=0.6, alpha=0.5, label="per step")
    starts = [0] + history.epoch_ends[:-1]
    epoch_means = [np.mean(history.step_losses[a:b]) for a, b in zip(starts, history.epoch_ends)]
    loss_ax.plot(history.epoch_ends, epoch_means, "o-", markersize=3, label="epoch mean")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("training step")
    loss_ax.set_ylabel("sigmoid loss")
    loss_ax.set_title(f"training loss ({backend})")
    loss_ax.legend()
    epochs = np.arange(1, len(history.temperature) + 1)
    param_ax.plot(epochs, history.temperature, "o-", markersize=3, label="t = exp(logit_scale)")
    param_ax.plot(epochs, history.bias, "s-", markersize=3, label="b = logit_bias")
    param_ax.axhline(0.0, color="gray", linewidth=0.5)
    param_ax.set_xlabel("epoch")
    param_ax.set_title("learned temperature and bias")
    param_ax.legend()
    fig.savefig(path, dpi=110)


# ----------------------------------------------------------------------------------------
# The demo


def run_demo(epochs=DEFAULTS["epochs"], steps=DEFAULTS["steps"],
             batch_size=DEFAULTS["batch_size"], image_size=DEFAULTS["image_size"],
             patch_size=DEFAULTS["patch_size"], width=DEFAULTS["width"],
             depth=DEFAULTS["depth"], num_heads=DEFAULTS["num_heads"],
             learning_rate=DEFAULTS["learning_rate"], seed=DEFAULTS["seed"],
             output=DEFAULTS["output"], verbose=1):
    """Train a small SigLIP on sklearn's digits, evaluate it zero-shot, write plots and model.

    Args:
        epochs: passes over the training images (each pass draws a new
            caption phrasing per image).
        steps: int or None. Total training steps; overrides `epochs`.
        batch_size: images (and captions) per step; a multiple of 10 gives
            class-balanced batches.
        image_size: int. The 8x8 digits are upsampled to this size.
        patch_size, width, depth, num_heads: the towers (both the same size;
            MLP width `4 * width`).
        learning_rate: peak AdamW learning rate (linear warm-up, cosine decay).
        seed: int. Seeds the split, the schedule, the captions and Keras.
        output: folder for the plots, the `.keras` model, the tokenizer and
            `metadata.json`.
        verbose: 0 silent, 1 progress bars and the summary.

    Returns:
        dict with the backend, steps, train time (s), zero-shot accuracy,
        recall@1 both ways and the written paths.
    """
    backend = keras.backend.backend()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)

    pixels, labels, train_idx, test_idx = load_digits_split(seed)
    images = preprocess_images(pixels, image_size)  # bilinear upsampling, [-1, 1]
    tokenizer = train_tokenizer(output / TOKENIZER_FILE, seed)
    # Every (digit, phrasing) caption, tokenised once: row label * T + template.
    caption_ids = tokenizer(
        [caption(t, label) for label in range(10) for t in TRAIN_TEMPLATES]
    )

    model = build_model(tokenizer.vocabulary_size, image_size, patch_size, width, depth, num_heads)
    train_labels = labels[train_idx]
    spe = batch_schedule(train_labels, batch_size, 1, np.random.default_rng(0)).shape[1]
    if steps is not None:
        epochs = math.ceil(steps / spe)
    total_steps = steps if steps is not None else epochs * spe
    schedule = batch_schedule(train_labels, batch_size, epochs, rng)
    phrasing = rng.integers(0, len(TRAIN_TEMPLATES), schedule.shape)

    warmup = max(1, total_steps // 20)
    lr = keras.optimizers.schedules.CosineDecay(
        0.0, total_steps - warmup, warmup_target=learning_rate, warmup_steps=warmup,
    )
    optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=1e-4)
    optimizer.exclude_from_weight_decay(var_names=["logit_scale", "logit_bias"])
    model.compile(optimizer=optimizer)

    history = _History()
    start = time.perf_counter()
    done = 0
    for epoch in range(epochs):
        n = min(spe, total_steps - done)
        batch = schedule[epoch, :n].reshape(-1)
        x = {
            "images": images[train_idx[batch]],
            "token_ids": caption_ids[train_labels[batch] * len(TRAIN_TEMPLATES)
                                     + phrasing[epoch, :n].reshape(-1)],
        }  # fmt: skip
        # One fit() per epoch: the captions change between epochs. The compiled train
        # step is built once and reused by every call.
        model.fit(x, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch,
                  shuffle=False, callbacks=[history], verbose=verbose)  # fmt: skip
        done += n
    train_seconds = time.perf_counter() - start

    metrics = evaluate(model, tokenizer, images[test_idx], labels[test_idx], rng)
    probabilities = metrics.pop("probabilities")
    paths = {
        "probabilities": output / MATRIX_FILE,
        "training_curve": output / CURVE_FILE,
        "model": output / MODEL_FILE,
        "tokenizer": output / TOKENIZER_FILE,
        "metadata": output / METADATA_FILE,
    }
    plot_probabilities(paths["probabilities"], probabilities, labels[test_idx],
                       metrics["zero_shot_accuracy"], backend)  # fmt: skip
    plot_training_curve(paths["training_curve"], history, backend)
    model.save(paths["model"])
    metadata = {
        "backend": backend,
        "seed": seed,
        "image_size": image_size,
        "resize": "bilinear",
        "flavor": FLAVOR,
        "sequence_length": SEQUENCE_LENGTH,
        "class_names": list(DIGIT_WORDS),
        "train_templates": list(TRAIN_TEMPLATES),
        "eval_templates": list(EVAL_TEMPLATES),
        "test_indices": [int(i) for i in test_idx],
        **metrics,
    }
    paths["metadata"].write_text(json.dumps(metadata, indent=1))

    results = {
        "backend": backend,
        "steps": total_steps,
        "epochs": epochs,
        "train_seconds": train_seconds,
        **metrics,
        "final_loss": float(np.mean(history.step_losses[-max(1, spe // 2):])),
        "paths": {k: str(v) for k, v in paths.items()},
    }
    if verbose:
        print_summary(results)
    return results


def print_summary(results):
    rows = [
        ("backend", results["backend"]),
        ("steps (epochs)", f"{results['steps']} ({results['epochs']})"),
        ("train time", f"{results['train_seconds']:.1f} s"),
        ("final loss", f"{results['final_loss']:.4f}"),
        ("zero-shot accuracy (held-out)", f"{results['zero_shot_accuracy']:.1%}"),
        ("recall@1 image->text", f"{results['recall@1_image_to_text']:.1%}"),
        ("recall@1 text->image", f"{results['recall@1_text_to_image']:.1%}"),
    ] + [(name, path) for name, path in results["paths"].items()]
    width = max(len(name) for name, _ in rows)
    print()
    print("=" * (width + 40))
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    print("=" * (width + 40))
