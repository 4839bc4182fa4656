"""The digits demo from start to end (`run_demo`), and reloading what it wrote (`load_trained`)."""

import json
from pathlib import Path

import keras
import numpy as np

from keras_siglip.apps.digits.data import (
    DIGIT_WORDS,
    EVAL_TEMPLATES,
    FLAVOR,
    SEQUENCE_LENGTH,
    TRAIN_TEMPLATES,
    caption_token_ids,
    load_digits_split,
    train_tokenizer,
    training_plan,
)
from keras_siglip.apps.digits.evaluate import evaluate
from keras_siglip.apps.digits.plots import plot_probabilities, plot_training_curve
from keras_siglip.apps.digits.train import build_model, compile_model, few_threads, train
from keras_siglip.preprocessing import Tokenizer, preprocess_images

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
    with few_threads():
        return _run(epochs, steps, batch_size, image_size, patch_size, width, depth, num_heads,
                    learning_rate, seed, Path(output), verbose)  # fmt: skip


def _run(epochs, steps, batch_size, image_size, patch_size, width, depth, num_heads,
         learning_rate, seed, output, verbose):  # fmt: skip
    backend = keras.backend.backend()
    output.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)

    pixels, labels, train_idx, test_idx = load_digits_split(seed)
    images = preprocess_images(pixels, image_size)  # bilinear upsampling, [-1, 1]
    tokenizer = train_tokenizer(output / TOKENIZER_FILE, seed)
    caption_ids = caption_token_ids(tokenizer)

    model = build_model(
        tokenizer.vocabulary_size, image_size, patch_size, width, depth, num_heads, batch_size
    )
    train_labels = labels[train_idx]
    schedule, phrasing, total_steps = training_plan(train_labels, batch_size, epochs, steps, rng)
    epochs = schedule.shape[0]
    compile_model(model, learning_rate, total_steps)
    if verbose:
        print(
            f"[demo] backend {backend}: {len(train_idx)} training digits, {len(test_idx)} held "
            f"out; {total_steps} steps of {batch_size} image-caption pairs "
            f"({epochs} epochs); model {model.count_params():,} parameters."
        )
    history, train_seconds = train(
        model, images[train_idx], caption_ids, train_labels, schedule, phrasing, total_steps,
        verbose,
    )  # fmt: skip

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

    results = {
        "backend": backend,
        "steps": total_steps,
        "epochs": epochs,
        "train_seconds": train_seconds,
        **metrics,
        "final_loss": float(np.mean(history.last_epoch_losses())),
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
