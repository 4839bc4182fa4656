"""The digits demo: train a small SigLIP from scratch on handwritten digits, then use it zero-shot.

`python -m keras_siglip demo` (or `run_demo()`), on the current Keras backend:

1. Images: scikit-learn's handwritten digits (`sklearn.datasets.load_digits`,
   1797 real 8x8 scans with values 0..16), upsampled to `image_size` with
   `preprocess_images`; a stratified 80/20 split holds images out (`data`).
2. Text: captions written from the labels in several phrasings ("a handwritten
   7.", "the number seven written by hand.", ...), tokenised with a tiny
   SentencePiece model that the demo trains on its own caption corpus (`data`).
3. Training: `SigLIP.compile()` + `fit` with the sigmoid loss (`train`).
4. Evaluation on the held-out images: zero-shot classification from prompts
   in phrasings never seen in training, and recall@1 of image<->text
   retrieval (`evaluate`); a probability-matrix plot and the training curve (`plots`).

`run` ties these together and reloads what a run wrote; `cli` holds the subcommand's options.
Needs scikit-learn, sentencepiece and matplotlib (the `demo` extra), which the library itself
does not; `main_from_args` checks for them before any work starts.
"""

import sys

import keras

from keras_siglip.apps.digits.cli import (
    BACKENDS,
    _argv_for_child,  # noqa: F401  the child's command line, checked by tests/test_demo.py
    add_arguments,
    run_demo_kwargs,
    run_in_child,
)
from keras_siglip.apps.digits.data import (
    DIGIT_WORDS,
    EVAL_TEMPLATES,
    TRAIN_TEMPLATES,
    batch_schedule,
    held_out_digits,
    load_digits_split,
    train_tokenizer,
)
from keras_siglip.apps.digits.evaluate import evaluate, retrieval_groups
from keras_siglip.apps.digits.run import (
    CURVE_FILE,
    DEFAULTS,
    MATRIX_FILE,
    METADATA_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    load_trained,
    print_summary,
    run_demo,
)
from keras_siglip.apps.digits.train import build_model
from keras_siglip.extras import MissingDependencyError, require


def main_from_args(args):
    """Run the demo for parsed `demo` arguments (`add_arguments`); returns the exit status.

    Calls this package's `run_demo`, so that replacing it here also changes what the
    command runs.
    """
    try:
        require("demo", "python -m keras_siglip demo")
    except MissingDependencyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.backend is not None and args.backend != keras.backend.backend():
        return run_in_child(args)
    try:
        run_demo(**run_demo_kwargs(args))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "BACKENDS",
    "CURVE_FILE",
    "DEFAULTS",
    "DIGIT_WORDS",
    "EVAL_TEMPLATES",
    "MATRIX_FILE",
    "METADATA_FILE",
    "MODEL_FILE",
    "TOKENIZER_FILE",
    "TRAIN_TEMPLATES",
    "add_arguments",
    "batch_schedule",
    "build_model",
    "evaluate",
    "held_out_digits",
    "load_digits_split",
    "load_trained",
    "main_from_args",
    "print_summary",
    "retrieval_groups",
    "run_demo",
    "train_tokenizer",
]
