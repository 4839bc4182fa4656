"""`python -m keras_siglip <command>`: the command line."""

import argparse
import sys


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


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_siglip",
        description="SigLIP and SigLIP 2 in Keras 3 (set KERAS_BACKEND to jax, tensorflow or torch).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="compare the current backend with the NumPy oracle")
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.set_defaults(func=_cmd_check)
    p = sub.add_parser("presets", help="list the presets")
    p.set_defaults(func=_cmd_presets)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
