"""Zero-shot classification of held-out handwritten digits with the model the demo trained.

The demo (`python -m keras_siglip demo`, or `bash scripts/run.sh`) trains a small SigLIP on
scikit-learn's digits and saves it, with its tokenizer, in `demo_output/`. This loads both and
classifies the digits the demo held out from prompts it never trained on, using
`keras_siglip.tasks.zero_shot_classify`: per-pair sigmoid probabilities (not a softmax), with
the text embeddings of several prompt templates averaged per class.

    python examples/zero_shot.py [--output demo_output] [--template "a picture of a {}."]

Runs on the backend in KERAS_BACKEND (any of them, whichever trained the model).
"""

import argparse
import sys

import numpy as np

from keras_siglip.apps.digits import DEFAULTS, held_out_digits, load_trained
from keras_siglip.tasks import zero_shot_classify


def ascii_digit(pixels):
    """An 8x8 digit as text, darkest ink as '#'."""
    shades = " .:-=+*#"
    gray = pixels[..., 0].astype(int) * len(shades) // 256
    return ["".join(shades[v] * 2 for v in row) for row in gray]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=DEFAULTS["output"], help="the demo's output folder")
    parser.add_argument("--template", action="append",
                        help="prompt template with '{}' for the class name (repeatable); "
                        "default: the demo's held-out phrasings")  # fmt: skip
    args = parser.parse_args()
    try:
        model, tokenizer, metadata = load_trained(args.output)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1

    pixels, images, labels = held_out_digits(metadata)
    class_names = metadata["class_names"]
    templates = args.template or metadata["eval_templates"]
    print(f"model trained on {metadata['backend']}; {len(labels)} held-out digits; prompts:")
    for template in templates:
        print(f"  {template!r}")

    result = zero_shot_classify(model, tokenizer, images, class_names, templates, top_k=3)
    predicted = result.top_k[:, 0]
    print(f"\nzero-shot accuracy: {np.mean(predicted == labels):.1%}")
    print("per digit:  " + "  ".join(
        f"{c}:{np.mean(predicted[labels == c] == c):.0%}" for c in range(len(class_names))
    ))  # fmt: skip

    # A few digits with their three most probable classes. Probabilities are
    # independent sigmoids: a row does not sum to 1.
    print("\nexamples (top 3 classes, sigmoid probability each):")
    rng = np.random.default_rng(0)
    for i in rng.choice(len(labels), 4, replace=False):
        top = ", ".join(
            f"{class_names[c]} {result.probabilities[i, c]:.3f}" for c in result.top_k[i]
        )
        print(f"\n  true: {class_names[labels[i]]}  ->  {top}")
        for line in ascii_digit(pixels[i]):
            print("    |" + line + "|")
    wrong = np.flatnonzero(predicted != labels)
    print(f"\n{len(wrong)} mistakes; e.g. " + ", ".join(
        f"{class_names[labels[i]]} read as {class_names[predicted[i]]}" for i in wrong[:5]
    ))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
