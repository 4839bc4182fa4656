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
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_siglip import tasks
from keras_siglip.models import SigLIP, SigLIPTextEncoder, SigLIPVisionEncoder
from keras_siglip.preprocessing import Tokenizer, preprocess_images

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
MODEL_FILE = "siglip_digits.keras"
TOKENIZER_FILE = "tokenizer.model"
METADATA_FILE = "metadata.json"
MATRIX_FILE = "probabilities.png"
CURVE_FILE = "training_curve.png"

DEFAULTS = dict(
    epochs=10,
    steps=None,
    batch_size=10,
    image_size=16,
    patch_size=4,
    width=64,
    depth=2,
    num_heads=4,
    learning_rate=1e-3,
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
    """A tiny SentencePiece model on the caption corpus, in the T5 id layout (SigLIP 1).

    A word model: the corpus has ~40 distinct words, so every word, digit
    names and numerals included, is one piece and the text tower sees the
    digit as one token, not as a few shared letters.
    """
    import io

    import sentencepiece as spm

    from keras_siglip.preprocessing import canonicalize_text

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
    `1 / (sevens in the batch)` (measured after the same number of steps: a
    mean probability of ~0.35 for the right prompt with two of each digit per
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


# ----------------------------------------------------------------------------------------
# Model and training


def build_model(vocabulary_size, image_size, patch_size, width, depth, num_heads, batch_size):
    vision = SigLIPVisionEncoder(
        image_size, patch_size, width=width, depth=depth, mlp_dim=4 * width,
        num_heads=num_heads, name="vision_encoder",
    )  # fmt: skip
    text = SigLIPTextEncoder(
        vocabulary_size, SEQUENCE_LENGTH, width=width, depth=depth, mlp_dim=4 * width,
        num_heads=num_heads, name="text_encoder",
    )  # fmt: skip
    # The paper's logit_bias init of -10 suits batches of tens of thousands (a prior of one
    # positive in ~e^10 pairs). Adam moves the bias by about one learning rate per step, so
    # in a run of ~1000 steps it would hardly leave -10 and every probability would stay
    # below sigmoid(t - 10) ~ 0.7 (t reaches ~11). Start from this batch's prior instead:
    # sigmoid(b) = 1 / batch_size.
    bias = -math.log(max(batch_size - 1, 1))
    return SigLIP(vision, text, logit_bias_init=bias, name="siglip_digits")


class _History(keras.callbacks.Callback):
    """Per-step losses, the learned temperature and bias per epoch, and the progress bar.

    `fit` runs once per epoch (see `_run`), so Keras' own bar would count
    the epochs of each call; this one counts them out of the whole run.
    """

    def __init__(self, epochs, steps_per_epoch, verbose):
        super().__init__()
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        # A live bar on a terminal, one line per epoch in a log file.
        self.verbose = 0 if not verbose else (1 if sys.stdout.isatty() else 2)
        self.step_losses = []
        self.epoch_ends = []
        self.temperature = []
        self.bias = []

    def on_epoch_begin(self, epoch, logs=None):
        self._previous_mean = 0.0
        self._step = 0
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}")
        self._bar = keras.utils.Progbar(self.steps_per_epoch, verbose=self.verbose)

    def on_train_batch_end(self, batch, logs=None):
        # Keras logs the running mean of the epoch; recover this step's loss from it.
        mean = float(logs["loss"])
        self._step += 1
        self.step_losses.append(self._step * mean - (self._step - 1) * self._previous_mean)
        self._previous_mean = mean
        if self.verbose:
            self._bar.update(self._step, [("loss", self.step_losses[-1])])

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(len(self.step_losses))
        scale = keras.ops.convert_to_numpy(self.model.logit_scale)[0]
        self.temperature.append(float(np.exp(scale)))
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
    prompt_embeddings = tasks.embed_texts(
        model, prompts, tokenizer=tokenizer, batch_size=batch_size
    )
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
    left.set_yticks(range(10), [f"{c}: {w}" for c, w in enumerate(DIGIT_WORDS)])
    left.set_xlabel(f"held-out images ({len(labels)}), sorted by true digit")
    left.set_ylabel(
        f'class prompt: "{EVAL_TEMPLATES[0]}"\n'
        f"and {len(EVAL_TEMPLATES) - 1} more unseen phrasings, averaged",
        fontsize=9,
    )
    left.set_title(
        f"SigLIP on digits ({backend}): sigmoid(t·cos + b) per image-prompt pair; "
        f"zero-shot accuracy {accuracy:.1%}"
    )
    fig.colorbar(image, ax=left, label="probability", fraction=0.03)

    # Same orientation as the left panel: prompts down, true digits across.
    means = np.stack([probabilities[labels == c].mean(axis=0) for c in range(10)], axis=1)
    right.imshow(means, cmap="viridis", vmin=0.0, vmax=1.0)
    for i in range(10):
        for j in range(10):
            text = f"{means[i, j]:.2f}".lstrip("0") if means[i, j] < 0.995 else "1"
            right.text(j, i, text, ha="center", va="center", fontsize=6,
                       color="black" if means[i, j] > 0.5 else "white")  # fmt: skip
    right.set_xticks(range(10), range(10))
    right.set_yticks(range(10), range(10))
    right.set_xlabel("true digit")
    right.set_ylabel("class prompt")
    right.set_title("mean probability per digit")
    fig.savefig(path, dpi=110)


def plot_training_curve(path, history, backend):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, param_ax = fig.subplots(1, 2, width_ratios=[2, 1])
    steps = np.arange(1, len(history.step_losses) + 1)
    loss_ax.plot(steps, history.step_losses, linewidth=0.6, alpha=0.5, label="per step")
    starts = [0] + history.epoch_ends[:-1]
    epoch_means = [np.mean(history.step_losses[a:b]) for a, b in zip(starts, history.epoch_ends)]
    loss_ax.plot(history.epoch_ends, epoch_means, "o-", markersize=3, label="epoch mean")
    loss_ax.set_yscale("log")
    loss_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    loss_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    loss_ax.yaxis.set_minor_formatter(NullFormatter())
    loss_ax.set_xlabel("training step")
    loss_ax.set_ylabel("sigmoid loss")
    loss_ax.set_title(f"training loss ({backend})")
    loss_ax.legend()
    epochs = np.arange(1, len(history.temperature) + 1)
    param_ax.plot(epochs, history.temperature, "o-", markersize=3, label="t = exp(logit_scale)")
    param_ax.plot(epochs, history.bias, "s-", markersize=3, label="b = logit_bias")
    param_ax.axhline(0.0, color="gray", linewidth=0.5)
    param_ax.set_xlabel("epoch")
    param_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
             output=DEFAULTS["output"], verbose=1):  # fmt: skip
    """Train a small SigLIP on sklearn's digits, evaluate it zero-shot, write plots and model.

    Runs on the current Keras backend and is deterministic given `seed`.

    Args:
        epochs: passes over the training images (each pass draws a new
            caption phrasing per image).
        steps: int or None. Total training steps; overrides `epochs`.
        batch_size: images (and captions) per step; a multiple of 10 gives
            class-balanced batches, 10 batches without false negatives.
        image_size: int. The 8x8 digits are upsampled (bilinear) to this size.
        patch_size, width, depth, num_heads: both towers (MLP width `4 * width`).
        learning_rate: peak AdamW learning rate (linear warm-up, cosine decay).
        seed: int. Seeds the split, the schedule, the captions and Keras.
        output: folder for the plots, the `.keras` model, the tokenizer and
            `metadata.json` (what the examples load).
        verbose: 0 silent, 1 a progress bar per epoch and the summary table.

    Returns:
        dict: `backend`, `steps`, `epochs`, `train_seconds`,
        `zero_shot_accuracy`, `recall@1_image_to_text`,
        `recall@1_text_to_image`, `final_loss` and `paths` of what was written.
    """
    for name, value in dict(batch_size=batch_size, image_size=image_size, width=width,
                            depth=depth, epochs=epochs).items():  # fmt: skip
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive int; received {value!r}.")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"steps must be a positive int or None; received {steps!r}.")
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2: the sigmoid loss needs negatives.")
    with _few_threads():
        return _run(epochs, steps, batch_size, image_size, patch_size, width, depth, num_heads,
                    learning_rate, seed, Path(output), verbose)  # fmt: skip


class _few_threads:
    """One intra-op thread for torch while the demo runs (restored afterwards).

    The demo's matrices are tiny, so the cost of each op is its thread
    synchronisation: on a 2-core machine shared with other work, torch's
    default two threads spin against each other and a step took ~1.8 s,
    against ~50 ms on one thread. JAX and TensorFlow compile the step and
    are unaffected.
    """

    def __enter__(self):
        self._threads = None
        if keras.backend.backend() == "torch":
            import torch

            self._threads = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self._threads is not None:
            import torch

            torch.set_num_threads(self._threads)
        return False


def _run(epochs, steps, batch_size, image_size, patch_size, width, depth, num_heads,
         learning_rate, seed, output, verbose):  # fmt: skip
    backend = keras.backend.backend()
    output.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)

    pixels, labels, train_idx, test_idx = load_digits_split(seed)
    images = preprocess_images(pixels, image_size)  # bilinear upsampling, [-1, 1]
    tokenizer = train_tokenizer(output / TOKENIZER_FILE, seed)
    # Every (digit, phrasing) caption, tokenised once: row `label * T + phrasing`.
    caption_ids = tokenizer([caption(t, label) for label in range(10) for t in TRAIN_TEMPLATES])
    num_phrasings = len(TRAIN_TEMPLATES)

    model = build_model(
        tokenizer.vocabulary_size, image_size, patch_size, width, depth, num_heads, batch_size
    )
    train_labels = labels[train_idx]
    steps_per_epoch = batch_schedule(train_labels, batch_size, 1, np.random.default_rng(0)).shape[1]
    if steps is not None:
        epochs = math.ceil(steps / steps_per_epoch)
    total_steps = int(steps) if steps is not None else epochs * steps_per_epoch
    schedule = batch_schedule(train_labels, batch_size, epochs, rng)
    phrasing = rng.integers(0, num_phrasings, schedule.shape)

    warmup = max(1, total_steps // 20)
    learning_rate = keras.optimizers.schedules.CosineDecay(
        0.0, max(1, total_steps - warmup), warmup_target=learning_rate, warmup_steps=warmup
    )
    # beta_2 = 0.95 as in the SigLIP paper. With Adam's default 0.999 the second moment
    # remembers the large gradients of the first steps (while the towers' shared component
    # settles), the steps stay tiny for hundreds of steps afterwards, and training sits on
    # a plateau with every image mapped to one point: measured here, chance accuracy after
    # 6 epochs with 0.999, 89% with 0.95.
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=1e-4, beta_2=0.95)
    optimizer.exclude_from_weight_decay(var_names=["logit_scale", "logit_bias"])
    model.compile(optimizer=optimizer)

    if verbose:
        print(
            f"[demo] backend {backend}: {len(train_idx)} training digits, {len(test_idx)} held "
            f"out; {total_steps} steps of {batch_size} image-caption pairs "
            f"({epochs} epochs); model {model.count_params():,} parameters."
        )
    history = _History(epochs, steps_per_epoch, verbose)
    start = time.perf_counter()
    done = 0
    for epoch in range(epochs):
        n = min(steps_per_epoch, total_steps - done)
        batch = schedule[epoch, :n].reshape(-1)
        x = {
            "images": images[train_idx[batch]],
            "token_ids": caption_ids[
                train_labels[batch] * num_phrasings + phrasing[epoch, :n].reshape(-1)
            ],
        }
        # One fit() per epoch, in the schedule's order, because each epoch draws new
        # phrasings. The compiled train step is built once and reused by every call.
        model.fit(x, batch_size=batch_size, epochs=epoch + 1, initial_epoch=epoch,
                  shuffle=False, callbacks=[history], verbose=0)  # fmt: skip
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
    paths["metadata"].write_text(json.dumps(metadata, indent=1) + "\n")

    last_epoch = history.step_losses[-(history.epoch_ends[-1] - ([0] + history.epoch_ends)[-2]):]
    results = {
        "backend": backend,
        "steps": total_steps,
        "epochs": epochs,
        "train_seconds": train_seconds,
        **metrics,
        "final_loss": float(np.mean(last_epoch)),
        "paths": {k: str(v) for k, v in paths.items()},
    }
    if verbose:
        print_summary(results)
    return results


def print_summary(results):
    """The demo's results as a two-column table."""
    rows = [
        ("backend", results["backend"]),
        ("steps (epochs)", f"{results['steps']} ({results['epochs']})"),
        ("train time", f"{results['train_seconds']:.1f} s"),
        ("final loss (last epoch)", f"{results['final_loss']:.4f}"),
        ("zero-shot accuracy (held-out)", f"{results['zero_shot_accuracy']:.1%}"),
        ("recall@1 image->text", f"{results['recall@1_image_to_text']:.1%}"),
        ("recall@1 text->image", f"{results['recall@1_text_to_image']:.1%}"),
    ] + [(name, path) for name, path in results["paths"].items()]
    width = max(len(name) for name, _ in rows)
    rule = "-" * (width + 2 + max(len(str(value)) for _, value in rows))
    print(rule)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    print(rule)


# ----------------------------------------------------------------------------------------
# Reloading what the demo wrote (used by examples/zero_shot.py and examples/retrieval.py)


def load_trained(output=DEFAULTS["output"]):
    """The model, tokenizer and metadata that `run_demo` wrote to `output`.

    Returns `(model, tokenizer, metadata)`. Raises `FileNotFoundError` saying
    to run the demo first when something is missing.
    """
    output = Path(output)
    paths = [output / MODEL_FILE, output / TOKENIZER_FILE, output / METADATA_FILE]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"No trained demo model in {output}/ (missing {', '.join(missing)}). Run the demo "
            f"first: `python -m keras_siglip demo --output {output}` (or `bash scripts/run.sh`)."
        )
    metadata = json.loads(paths[2].read_text())
    # compile=False: the model is for inference; SigLIP.compile's own arguments are
    # not part of the saved config.
    model = keras.saving.load_model(paths[0], compile=False)
    tokenizer = Tokenizer(
        str(paths[1]), flavor=metadata["flavor"], sequence_length=metadata["sequence_length"]
    )
    return model, tokenizer, metadata


def held_out_digits(metadata):
    """The demo's held-out digits: `(pixels uint8 (N, 8, 8, 3), images (N, S, S, 3), labels)`.

    `images` are preprocessed as in training (`metadata["image_size"]`, bilinear, [-1, 1]).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    index = np.asarray(metadata["test_indices"])
    pixels = digits_to_pixels(digits.images[index])
    images = preprocess_images(pixels, metadata["image_size"], resize=metadata["resize"])
    return pixels, images, digits.target[index].astype(np.int64)


# ----------------------------------------------------------------------------------------
# Command line (`python -m keras_siglip demo`)

BACKENDS = ("jax", "tensorflow", "torch")


def add_arguments(parser):
    """The `demo` subcommand's options."""
    d = DEFAULTS
    parser.add_argument("--epochs", type=int, default=d["epochs"],
                        help=f"passes over the training digits (default {d['epochs']})")
    parser.add_argument("--steps", type=int, default=None,
                        help="total training steps; overrides --epochs")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"],
                        help=f"image-caption pairs per step (default {d['batch_size']}; a "
                        "multiple of 10 keeps batches class-balanced)")
    parser.add_argument("--image-size", type=int, default=d["image_size"],
                        help="the 8x8 digits are upsampled to this size "
                        f"(default {d['image_size']})")
    parser.add_argument("--patch-size", type=int, default=d["patch_size"],
                        help=f"ViT patch size (default {d['patch_size']})")
    parser.add_argument("--width", type=int, default=d["width"],
                        help=f"width of both towers (default {d['width']})")
    parser.add_argument("--depth", type=int, default=d["depth"],
                        help=f"encoder blocks per tower (default {d['depth']})")
    parser.add_argument("--heads", type=int, default=d["num_heads"],
                        help=f"attention heads (default {d['num_heads']})")
    parser.add_argument("--learning-rate", type=float, default=d["learning_rate"],
                        help=f"peak learning rate (default {d['learning_rate']})")
    parser.add_argument("--backend", choices=BACKENDS, default=None,
                        help="Keras backend (default: KERAS_BACKEND, else Keras' default)")
    parser.add_argument("--seed", type=int, default=d["seed"], help="random seed (default 0)")
    parser.add_argument("--output", default=d["output"],
                        help="folder for plots, model and tokenizer "
                        f"(default {d['output']}/)")  # fmt: skip


def _argv_for_child(args):
    argv = ["demo"]
    for option in ("epochs", "steps", "batch_size", "image_size", "patch_size", "width", "depth",
                   "heads", "learning_rate", "seed", "output"):  # fmt: skip
        value = getattr(args, option)
        if value is not None:
            argv += ["--" + option.replace("_", "-"), str(value)]
    return argv


def main_from_args(args):
    """Run the demo for parsed `demo` arguments; returns the exit status."""
    import os
    import subprocess

    current = keras.backend.backend()
    if args.backend is not None and args.backend != current:
        # `import keras_siglip` has already imported Keras, whose backend is fixed at
        # import: run the demo in a fresh interpreter with KERAS_BACKEND set.
        print(f"[demo] Keras runs on {current} in this process; starting the demo with "
              f"KERAS_BACKEND={args.backend}.", file=sys.stderr, flush=True)  # fmt: skip
        env = dict(os.environ, KERAS_BACKEND=args.backend)
        command = [sys.executable, "-m", "keras_siglip", *_argv_for_child(args)]
        return subprocess.call(command, env=env)
    try:
        results = run_demo(
            epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
            image_size=args.image_size, patch_size=args.patch_size, width=args.width,
            depth=args.depth, num_heads=args.heads, learning_rate=args.learning_rate,
            seed=args.seed, output=args.output,
        )  # fmt: skip
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
