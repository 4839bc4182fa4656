"""`python -m keras_siglip <command>`: the command line."""

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from keras_siglip import registry
from keras_siglip.convert.io import (
    path_format,
    show_progress,
)
from keras_siglip.extras import MissingDependencyError, require
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


# The formats by how a user names them on the command line, for messages.
_DST_FORMS = ("a .keras file, a .npz (big_vision), a .safetensors file (open_clip) or a folder "
              "(transformers; a new KerasHub preset folder needs --to keras_hub)")


def _source_format(src, src_format):
    """SRC's format: given, else recognised from what is there (`registry.detect_format`)."""
    if src_format is not None:
        if src_format not in registry.format_names():
            raise ValueError(f"--from {src_format!r} is no format; known: "
                             f"{', '.join(registry.format_names())}.")
        return src_format
    try:
        return registry.detect_format(src)
    except ValueError:
        # Not recognisable as it is (a truncated file, a folder without its config): the
        # path's own kind, so that its reader says what is wrong with it.
        found = path_format(src)
        if found is None:
            raise
        return found


def _target_format(dst, dst_format):
    """DST's format: given, else named by the path (`registry.output_format`)."""
    writable = registry.format_names(writable=True)
    if dst_format is not None:
        if dst_format not in writable:
            raise ValueError(f"--to {dst_format!r} is no format this tool writes; writable: "
                             f"{', '.join(writable)}.")
        return dst_format
    try:
        return registry.output_format(dst)
    except ValueError:
        raise ValueError(
            f"{dst} names no checkpoint format this tool writes (its suffix is "
            f"{Path(dst).suffix!r}): DST is {_DST_FORMS}. Or name the format with --to "
            f"({', '.join(writable)})."
        ) from None


def convert(src, dst, *, image_size=None, preset=None, posemb_resize=None, overwrite=False,
            progress=None, src_format=None, dst_format=None, open_clip_config=None,
            tokenizer=None, processor=True, notes=None):
    """Convert a checkpoint between the formats keras-siglip reads and writes.

    The formats: a `.keras` file, a big_vision `.npz`, a transformers folder, a KerasHub
    `SigLIPBackbone` preset folder and an open_clip SigLIP `.safetensors` state dict (as SRC also
    an open_clip hub folder). SRC's format is recognised from what is there; DST's from the path
    (`.keras`, `.npz`, `.safetensors`, an existing KerasHub preset, otherwise a transformers
    folder); `src_format` / `dst_format` name them when that is not enough (a new KerasHub
    folder: `dst_format="keras_hub"`).

    Args:
        src, dst: the paths.
        image_size, preset, posemb_resize: for big_vision sources (see `load_big_vision`).
        overwrite: replace an existing DST, only if the tool wrote it (a file of DST's format,
            a folder of that format's files only); a DST that is or contains SRC is always
            refused.
        progress: optional tqdm-like callable shown over the tensors.
        src_format, dst_format: a registered format name (`keras`, `big_vision`, `keras_hub`,
            `open_clip`, `transformers`), when the path cannot tell.
        open_clip_config: the open_clip config name of an open_clip SRC (instead of inferring
            it from the shapes) or to record in an open_clip DST (checked against the tensors).
        tokenizer: SentencePiece model for a KerasHub DST (default: SRC's, when it is a KerasHub
            or transformers folder holding one).
        processor: carry SRC's processor (tokenizer and image settings, when SRC has them) over:
            into a transformers DST (its tokenizer and preprocessor files, written in the same
            atomic step), or beside a `.keras` DST as `NAME.processor/` (checked before anything
            is written). False writes the weights only.
        notes: optional list; what was not carried over, and why, is appended to it.

    Returns:
        DST as a `Path`. The output is written atomically: after an error nothing is at DST.
    """
    src, dst = Path(src), Path(dst)
    target = _target_format(dst, dst_format)
    source = _source_format(src, src_format)
    if any(o is not None for o in (image_size, preset, posemb_resize)) and source != "big_vision":
        raise ValueError(
            "--image-size, --preset and --posemb-resize apply to big_vision (.npz) sources only."
        )
    if open_clip_config is not None and "open_clip" not in (source, target):
        raise ValueError("--open-clip-config applies when SRC or DST is an open_clip checkpoint.")
    if tokenizer is not None and target != "keras_hub":
        raise ValueError("--tokenizer applies to a KerasHub DST (--to keras_hub) only.")
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise ValueError("SRC and DST are the same path.")
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist.")
    sources = (src,)
    registry.check_output(dst, target, overwrite=overwrite, sources=sources)
    notes = [] if notes is None else notes
    carried = _source_processor(src, preset, target, notes) if processor else None
    if carried is not None and target == "keras":
        from keras_siglip.convert.safe_write import check_destination
        from keras_siglip.processor import keras_sidecar
        from keras_siglip.processor.sources import PROCESSOR_FILES

        check_destination(keras_sidecar(dst), overwrite, folder=True, owned=PROCESSOR_FILES,
                          sources=sources)

    options = {}
    if source == "big_vision":
        options = {"image_size": None if image_size is None else tuple(image_size),
                   "preset": preset, "posemb_resize": posemb_resize}
    elif source == "open_clip" and open_clip_config is not None:
        options = {"config": open_clip_config}
    model = registry.load_path(src, format=source, progress=progress, **options)

    if target == "big_vision" and not isinstance(model, SigLIP):
        raise ValueError("big_vision checkpoints hold both towers; the source is a single tower.")
    write = {}
    if target == "open_clip" and open_clip_config is not None:
        write["config"] = open_clip_config
    if target == "keras_hub" and tokenizer is not None:
        write["tokenizer"] = tokenizer
    if target == "transformers" and carried is not None:
        write["processor"] = carried
    written = registry.save_path(model, dst, target, overwrite=overwrite, progress=progress,
                                 sources=sources, **write)
    if target == "keras" and carried is not None:
        from keras_siglip.processor import keras_sidecar

        carried.save(keras_sidecar(dst), overwrite=overwrite)
    return written


def _source_processor(src, preset, target, notes):
    """SRC's processor when `target` can hold it (None, with a line in `notes`, otherwise)."""
    if target == "big_vision":
        notes.append("a big_vision .npz holds no tokenizer; pass --preset NAME when reading it "
                     "back.")
        return None
    if target not in ("keras", "transformers"):
        return None
    from keras_siglip.processor import SigLIPProcessor

    options = {"preset": preset} if preset else {}  # a big_vision SRC's preset
    try:
        processor = SigLIPProcessor.from_preset(src, **options)
        if target == "transformers":
            processor.transformers_files()  # raises for what transformers cannot express
    except (ValueError, OSError) as error:
        notes.append(f"no processor written (the source has none usable: {error})")
        return None
    return processor


def _cmd_convert(args):
    notes = []
    try:
        with _notes_on_stderr():
            target = _target_format(Path(args.dst), args.to)
            dst = convert(
                args.src,
                args.dst,
                image_size=args.image_size,
                preset=args.preset,
                posemb_resize=args.posemb_resize,
                overwrite=args.overwrite,
                progress=_progress(),
                src_format=args.from_format,
                dst_format=args.to,
                open_clip_config=args.open_clip_config,
                tokenizer=args.tokenizer,
                notes=notes,
            )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {dst}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if target == "keras":
        from keras_siglip.processor import keras_sidecar

        if keras_sidecar(dst).is_dir() and not notes:
            print(f"wrote {keras_sidecar(dst)}")
    elif target == "transformers" and not notes:
        print(f"wrote the processor files into {dst}")
    elif target == "keras_hub" and not (Path(dst) / "tokenizer.json").is_file():
        print("note: no tokenizer in the preset (the source has none); pass --tokenizer "
              "SPM to add one.", file=sys.stderr)
    elif target == "open_clip":
        print("note: an open_clip state dict holds no tokenizer; open_clip takes it from the "
              "config name.", file=sys.stderr)
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
        if args.against == "transformers":
            require("transformers", "verify --against transformers")
        report = run_verify(args.kit, against=args.against, backend=args.backend,
                            variant=args.variant)
    except (ValueError, OSError, MissingDependencyError) as error:
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
        help="convert a checkpoint between .keras, big_vision .npz, transformers, KerasHub and "
        "open_clip",
        description="Convert SRC to DST. SRC's format is recognised from what is there: a .keras "
        "file, a .npz file (big_vision), a transformers folder (config.json + safetensors), a "
        "KerasHub SigLIPBackbone preset folder (config.json + model.weights.h5), an open_clip "
        "SigLIP .safetensors file or hub folder. DST's comes from the path: .keras, .npz, "
        ".safetensors (open_clip), an existing KerasHub preset, otherwise a transformers folder; "
        "--to names it when the path cannot tell (a new KerasHub folder: --to keras_hub). DST is "
        "written atomically and an existing DST is refused unless --overwrite.",
    )
    p.add_argument("src", help="source checkpoint (.keras, .npz, .safetensors or folder)")
    p.add_argument("dst", help="destination (.keras, .npz, .safetensors or folder)")
    formats = ("keras", "big_vision", "transformers", "keras_hub", "open_clip")
    p.add_argument("--to", choices=formats,
                   help="DST's format, when its path cannot tell (a new folder is transformers "
                   "unless --to keras_hub)")
    p.add_argument("--from", dest="from_format", choices=formats,
                   help="SRC's format, when it cannot be recognised")
    p.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"),
                   help="input size for big_vision sources whose position table cannot tell it")
    p.add_argument("--preset", help="build this preset's architecture for a big_vision source")
    p.add_argument("--posemb-resize", choices=("big_vision", "transformers"),
                   help="resize a big_vision position table that does not fit --image-size "
                   "(or the preset's): big_vision's linear zoom or transformers' bicubic")
    p.add_argument("--open-clip-config", metavar="NAME",
                   help="open_clip config (e.g. ViT-SO400M-14-SigLIP-378) of an open_clip SRC, "
                   "instead of inferring it from the shapes, or to record in an open_clip DST")
    p.add_argument("--tokenizer", metavar="SPM",
                   help="SentencePiece model to put in a KerasHub DST (default: SRC's, when SRC "
                   "is a KerasHub preset or a transformers folder holding one)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing DST that this tool wrote (a file of DST's format, a "
                   "folder of that format's files only); never a folder with other files, never "
                   "SRC")
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
    from keras_siglip.apps import backends, commands

    commands.add_subcommands(sub)
    backends.add_subcommand(sub)
    args = parser.parse_args(argv)
    if args.command == "convert":
        try:  # the packages the formats need, before any work
            for path in (args.src, args.dst):
                if path_format(path) == "transformers":
                    require("convert", "Reading and writing transformers checkpoints")
        except MissingDependencyError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
