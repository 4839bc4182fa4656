"""`python -m keras_siglip <command>`: the command line."""

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from keras_siglip.convert import (
    load_big_vision,
    load_transformers,
    save_big_vision,
    save_transformers,
)
from keras_siglip.convert.io import (
    atomic_output,
    check_destination,
    load_keras_file,
    path_format,
    show_progress,
    unknown_format_message,
)
from keras_siglip.models import SigLIP


def _cmd_presets(args):
    from keras_siglip.presets import PRESETS

    columns = ("name", "image", "text", "patch", "resolution", "L", "vocab", "tokenizer", "hf_id")
    rows = []
    for name, info in PRESETS.items():
        rows.append(
            (
                name,
                info["image_variant"],
                info["text_variant"],
                str(info["patch_size"]),
                str(info["image_size"]),
                str(info["sequence_length"]),
                str(info["vocabulary_size"]),
                info["tokenizer"],
                info["hf_id"],
            )
        )
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    return 0


def _cmd_check(args):
    from keras_siglip.check import run_check

    return run_check(tolerance=args.tolerance)


def _cmd_demo(args):
    from keras_siglip.apps.digits import main_from_args

    return main_from_args(args)


def _progress():
    """tqdm if installed, else a plain counter on stderr: `progress(iterable, total=, desc=)`."""
    return show_progress


def _counter(items, total, desc):
    """The plain counter `_progress` falls back to without tqdm."""
    return show_progress(items, total, desc, use_tqdm=False)


def _format(path):
    """'keras', 'big_vision' or 'transformers', from the path alone."""
    found = path_format(path)
    if found is None:
        raise ValueError(unknown_format_message(path))
    return found


@contextlib.contextmanager
def _notes_on_stderr():
    """Show the converters' notes (what was taken from config.json on trust) as `note:` lines."""
    logger = logging.getLogger("keras_siglip.convert")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("note: %(message)s"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def convert(src, dst, *, image_size=None, preset=None, posemb_resize=None, overwrite=False,
            progress=None):
    """Convert a checkpoint between the .keras, big_vision .npz and transformers formats.

    Formats come from the paths: a `.keras` file, a `.npz` file, otherwise a
    transformers folder. `image_size`, `preset` and `posemb_resize` apply to
    big_vision sources (see `load_big_vision`). The output is written
    atomically: after an error nothing is at `dst`. An existing `dst` is
    replaced only with `overwrite=True`, and then only if the tool wrote it (a
    file of DST's format, a folder of checkpoint files only); a DST that is or
    contains SRC is always refused. `progress` is an optional tqdm-like
    callable shown over the tensors.
    """
    src, dst = Path(src), Path(dst)
    source, target = _format(src), _format(dst)
    big_vision_options = (image_size, preset, posemb_resize)
    if any(o is not None for o in big_vision_options) and source != "big_vision":
        raise ValueError(
            "--image-size, --preset and --posemb-resize apply to big_vision (.npz) sources only."
        )
    if src.resolve() == dst.resolve():
        raise ValueError("SRC and DST are the same path.")
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist.")
    sources = (src,)
    check_destination(dst, overwrite, folder=target == "transformers", sources=sources)

    if source == "keras":
        model = load_keras_file(src)
    elif source == "big_vision":
        if image_size is not None:
            image_size = tuple(image_size)
        model = load_big_vision(src, image_size=image_size, preset=preset,
                                posemb_resize=posemb_resize, progress=progress)
    else:
        model = load_transformers(src, progress=progress)

    if target == "keras":
        with atomic_output(dst, overwrite=overwrite, sources=sources) as tmp:
            model.save(tmp)
    elif target == "big_vision":
        if not isinstance(model, SigLIP):
            raise ValueError(
                "big_vision checkpoints hold both towers; the source is a single tower."
            )
        save_big_vision(model, dst, progress=progress, overwrite=overwrite, sources=sources)
    else:
        save_transformers(model, dst, overwrite=overwrite, progress=progress, sources=sources)
    return dst


def _cmd_convert(args):
    try:
        with _notes_on_stderr():
            dst = convert(
                args.src,
                args.dst,
                image_size=args.image_size,
                preset=args.preset,
                posemb_resize=args.posemb_resize,
                overwrite=args.overwrite,
                progress=_progress(),
            )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {dst}")
    return 0


def _cmd_vectors(args):
    from keras_siglip.conformance import run_vectors

    try:
        written = run_vectors(args.out_dir, tiny=args.tiny, preset=args.preset, seed=args.seed,
                              overwrite=args.overwrite)
    except (ValueError, OSError, NotImplementedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for folder in written:
        print(f"wrote {folder}")
    return 0


def _cmd_verify(args):
    from keras_siglip.conformance import run_verify

    try:
        report = run_verify(args.kit, against=args.against, backend=args.backend,
                            variant=args.variant)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0 if report.ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_siglip",
        description="SigLIP and SigLIP 2 in Keras 3 (set KERAS_BACKEND to jax, tensorflow or torch).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "demo",
        help="train a small SigLIP on handwritten digits, then classify them zero-shot",
        description="The main job: train a small SigLIP from scratch with the sigmoid loss on "
        "scikit-learn's handwritten digits and captions written from their labels, on the "
        "current backend; report zero-shot accuracy and retrieval recall@1 on held-out digits; "
        "write plots, the model and the tokenizer to --output.",
    )
    from keras_siglip.apps.digits import add_arguments as _demo_arguments

    _demo_arguments(p)
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("check", help="compare the current backend with the NumPy oracle")
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=_cmd_presets)
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint between .keras, big_vision .npz and a transformers folder",
        description="Convert SRC to DST. Formats come from the paths: a .keras file, a .npz "
        "file (big_vision), otherwise a folder (transformers: config.json + safetensors). "
        "DST is written atomically and an existing DST is refused unless --overwrite.",
    )
    p.add_argument("src", help="source checkpoint (.keras, .npz or folder)")
    p.add_argument("dst", help="destination (.keras, .npz or folder)")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"),
                   help="input size for big_vision sources whose position table cannot tell it")
    p.add_argument("--preset", help="build this preset's architecture for a big_vision source")
    p.add_argument("--posemb-resize", choices=("big_vision", "transformers"),
                   help="resize a big_vision position table that does not fit --image-size "
                   "(or the preset's): big_vision's linear zoom or transformers' bicubic")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing DST that this tool wrote (a .keras/.npz file, a "
                   "folder of checkpoint files only); never a folder with other files, never SRC")
    p.set_defaults(func=_cmd_convert)
    p = sub.add_parser("vectors", help="write a conformance kit computed by the NumPy oracle")
    p.add_argument("out_dir", help="output folder (one sub-folder per kit without --tiny)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tiny", help="a tiny config: a TINY_CONFIGS name or 'naflex'")
    group.add_argument("--preset", help="a preset (needs its weights locally)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing kits (folders holding only a kit's files)")
    p.set_defaults(func=_cmd_vectors)
    p = sub.add_parser("verify", help="check an implementation against a conformance kit")
    p.add_argument("kit", help="a kit folder written by `vectors`, or a folder of kit folders "
                   "(`vectors OUT_DIR` without --tiny): each is verified")
    p.add_argument("--against", choices=("keras", "transformers"), default="keras")
    p.add_argument("--backend", choices=("jax", "tensorflow", "torch"),
                   help="Keras backend (for --against keras); default: KERAS_BACKEND")
    p.add_argument("--variant", help="a deliberately broken variant, to see the locator work: "
                   "gelu_erf, ln_eps, map_residual, map_unscaled")
    p.set_defaults(func=_cmd_verify)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
