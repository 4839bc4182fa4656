"""The `demo` subcommand's options, and the command line that runs the demo in a child process."""

from keras_siglip.apps.digits.run import DEFAULTS

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


def run_demo_kwargs(args):
    """`run_demo`'s keyword arguments from parsed `demo` arguments."""
    return dict(
        epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
        image_size=args.image_size, patch_size=args.patch_size, width=args.width,
        depth=args.depth, num_heads=args.heads, learning_rate=args.learning_rate,
        seed=args.seed, output=args.output,
    )  # fmt: skip


def _argv_for_child(args):
    """The `python -m keras_siglip` arguments that repeat `args`, less `--backend`."""
    argv = ["demo"]
    for option in ("epochs", "steps", "batch_size", "image_size", "patch_size", "width", "depth",
                   "heads", "learning_rate", "seed", "output"):  # fmt: skip
        value = getattr(args, option)
        if value is not None:
            argv += ["--" + option.replace("_", "-"), str(value)]
    return argv


def run_in_child(args):
    """Run the demo for `args` in a fresh interpreter on `args.backend`; returns its exit status.

    `import keras_siglip` has already imported Keras, whose backend is fixed at import, so
    another backend needs another process with KERAS_BACKEND set.
    """
    import os
    import subprocess
    import sys

    import keras

    print(f"[demo] Keras runs on {keras.backend.backend()} in this process; starting the demo "
          f"with KERAS_BACKEND={args.backend}.", file=sys.stderr, flush=True)  # fmt: skip
    env = dict(os.environ, KERAS_BACKEND=args.backend)
    command = [sys.executable, "-m", "keras_siglip", *_argv_for_child(args)]
    return subprocess.call(command, env=env)
