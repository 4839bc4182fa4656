"""The `classify`, `embed` and `search` subcommands: a checkpoint and raw files to answers.

Each loads the model and its processor from `--model` (a transformers folder with its
tokenizer and image-processor files, a `.keras` file with its `.processor/` folder beside it,
a preset name, or a big_vision `.npz` with `--preset`), prints a table (or `--json`) on
stdout and its progress on stderr.
"""

import json
import sys
from pathlib import Path

import numpy as np

from keras_siglip.extras import MissingDependencyError


def _add_model(parser):
    parser.add_argument("--model", required=True,
                        help="transformers folder, .keras file, preset name or big_vision .npz")
    parser.add_argument("--preset", help="the preset of a big_vision .npz (its tokenizer, sizes)")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_images(parser):
    parser.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                        help="an unreadable image stops the run (default) or is skipped")


def add_subcommands(sub):
    """Register `classify`, `embed` and `search` on an argparse subparsers object."""
    p = sub.add_parser("classify", help="zero-shot labels for images",
                       description="Score every image against every label (sigmoid "
                       "probabilities: each pair on its own, rows need not sum to 1).")
    _add_model(p)
    _add_images(p)
    p.add_argument("--labels", required=True, help='comma-separated labels: "a cat,a dog"')
    p.add_argument("--template", action="append",
                   help="prompt with {} for the label (repeatable; averaged). Default: "
                   "'This is a photo of {}.', as transformers' pipeline")
    p.add_argument("images", nargs="+", help="image files")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("embed", help="embeddings of images or of a text file, to .npy",
                       description="Write L2-normalised embeddings to --out (.npy) and the "
                       "names of the rows beside it (OUT.json), which `search` reads.")
    _add_model(p)
    _add_images(p)
    p.add_argument("inputs", nargs="+", help="image files, or one .txt file (one text per line)")
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("search", help="best matches of a query in an index written by `embed`")
    _add_model(p)
    p.add_argument("--index", required=True, help="a .npy written by `embed`")
    p.add_argument("-k", type=int, default=5, help="results per query (default 5)")
    p.add_argument("query", nargs="+", help="query texts (an image index) or image files "
                   "(a text index)")
    p.set_defaults(func=_cmd_search)


def _pipeline(args):
    from keras_siglip.pipeline import SigLIPPipeline

    return SigLIPPipeline.from_preset(args.model, preset=args.preset, batch_size=args.batch_size)


def _table(header, rows):
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]  # fmt: skip
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _run(body):
    """Run `body()`; errors a user can fix are one line on stderr and exit status 1."""
    try:
        return body()
    except (ValueError, TypeError, OSError, MissingDependencyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _cmd_classify(args):
    def body():
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
        if not labels:
            raise ValueError('--labels is empty; pass comma-separated labels: "a cat,a dog".')
        pipe = _pipeline(args)
        on_error = "skip" if args.on_error == "skip" else "raise"
        images, kept = pipe.embed_images_kept(args.images, on_error=on_error)
        from keras_siglip import tasks

        texts = tasks.class_embeddings(pipe.model, pipe.processor.tokenizer, labels,
                                       args.template or ["This is a photo of {}."],
                                       batch_size=pipe.batch_size)  # fmt: skip
        probabilities = pipe.probabilities(images, texts)
        names = [str(args.images[i]) for i in kept]
        if args.json:
            print(json.dumps([
                {"image": name, "scores": {lab: float(p) for lab, p in zip(labels, row)},
                 "best": labels[int(np.argmax(row))]}
                for name, row in zip(names, probabilities)], indent=2))  # fmt: skip
        else:
            rows = [[name, labels[int(np.argmax(row))], *(f"{p:.4f}" for p in row)]
                    for name, row in zip(names, probabilities)]  # fmt: skip
            print(_table(["image", "best", *labels], rows))
        return 0

    return _run(body)


def _is_text_file(inputs):
    return len(inputs) == 1 and Path(inputs[0]).suffix.lower() == ".txt"


def _cmd_embed(args):
    def body():
        out = Path(args.out)
        if out.suffix.lower() != ".npy":
            raise ValueError(f"--out must be a .npy file, got {out}.")
        names_file = out.with_suffix(".json")
        for path in (out, names_file):
            if path.exists() and not args.overwrite:
                raise FileExistsError(f"{path} exists; pass --overwrite to replace it.")
        pipe = _pipeline(args)
        if _is_text_file(args.inputs):
            texts = [line.strip() for line in Path(args.inputs[0]).read_text().splitlines()]
            texts = [t for t in texts if t]
            embeddings, names, kind = pipe.embed_texts(texts), texts, "text"
        else:
            on_error = "skip" if args.on_error == "skip" else "raise"
            embeddings, kept = pipe.embed_images_kept(args.inputs, on_error=on_error)
            names, kind = [str(args.inputs[i]) for i in kept], "image"
        from keras_siglip.convert.safe_write import atomic_output

        with atomic_output(out, overwrite=args.overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, embeddings)
        with atomic_output(names_file, overwrite=args.overwrite) as tmp:
            tmp.write_text(json.dumps({"kind": kind, "model": str(args.model),
                                       "names": names}, indent=1))  # fmt: skip
        summary = {"out": str(out), "kind": kind, "count": len(names),
                   "dim": int(embeddings.shape[1])}  # fmt: skip
        if args.json:
            print(json.dumps(summary))
        else:
            print(f"wrote {len(names)} {kind} embeddings of width {embeddings.shape[1]} to {out} "
                  f"(names in {names_file})")
        return 0

    return _run(body)


def _cmd_search(args):
    def body():
        index_file = Path(args.index)
        names_file = index_file.with_suffix(".json")
        if not index_file.exists():
            raise FileNotFoundError(f"{index_file} does not exist; write it with `embed`.")
        index = np.load(index_file, allow_pickle=False)
        if names_file.exists():
            meta = json.loads(names_file.read_text())
        else:
            meta = {"kind": "image", "names": [str(i) for i in range(len(index))]}
        pipe = _pipeline(args)
        kind = "text" if meta["kind"] == "image" else "image"
        found = pipe.retrieve(args.query, index, k=args.k, kind=kind)
        results = [
            {"query": str(q), "results": [{"rank": r + 1, "name": meta["names"][i],
                                           "score": float(s)}
                                          for r, (i, s) in enumerate(zip(idx, sc))]}
            for q, idx, sc in zip(args.query, found.indices, found.scores)
        ]  # fmt: skip
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            rows = [[res["query"], hit["rank"], hit["name"], f"{hit['score']:.4f}"]
                    for res in results for hit in res["results"]]  # fmt: skip
            print(_table(["query", "rank", meta["kind"], "score"], rows))
        return 0

    return _run(body)
