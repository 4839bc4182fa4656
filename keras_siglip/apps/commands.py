"""The `classify`, `embed` and `search` subcommands: a checkpoint and raw files to answers.

Each loads the model and its processor from `--model` (a transformers folder with its
tokenizer and image-processor files, a `.keras` file with its `.processor/` folder beside it,
a preset name, or a big_vision `.npz` with `--preset`), prints a table (or `--json`) on
stdout and what it is doing on stderr. Errors a user can fix (a missing tokenizer file, an
unreadable image, a missing package) are one line on stderr and exit status 1.
"""

import json
import sys
from pathlib import Path

import numpy as np

from keras_siglip.extras import MissingDependencyError, require
from keras_siglip.pipeline import DEFAULT_TEMPLATE


def _add_model(parser):
    parser.add_argument("--model", required=True,
                        help="transformers folder, .keras file, preset name or big_vision .npz")
    parser.add_argument("--preset", help="the preset of a big_vision .npz (its tokenizer, sizes)")
    parser.add_argument("--max-num-patches", type=int,
                        help="NaFlex patch budget (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_on_error(parser):
    parser.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                        help="an unreadable image stops the run (default) or is skipped with a "
                        "warning")


def add_subcommands(sub):
    """Register `classify`, `embed` and `search` on an argparse subparsers object."""
    p = sub.add_parser(
        "classify", help="zero-shot labels for image files",
        description="Score every image against every label: sigmoid probabilities, each pair "
        "on its own (a row need not sum to 1), as transformers' zero-shot pipeline gives them.")
    _add_model(p)
    _add_on_error(p)
    p.add_argument("--labels", required=True, help='comma-separated labels: "a cat,a dog"')
    p.add_argument("--template", action="append",
                   help="prompt with {} for the label (repeatable; the prompt embeddings are "
                   f"averaged). Default: {DEFAULT_TEMPLATE!r}, as transformers' pipeline")
    p.add_argument("images", nargs="+", help="image files")
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser(
        "embed", help="embeddings of image files or of a text file, to .npy",
        description="Write L2-normalised float32 embeddings (one row per input) to --out and "
        "the names of the rows beside it (OUT with .json), which `search` reads.")
    _add_model(p)
    _add_on_error(p)
    p.add_argument("inputs", nargs="+", help="image files, or one .txt file (one text a line)")
    p.add_argument("--out", required=True, help="output .npy file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (and its .json) written by `embed`")
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser(
        "search", help="best matches of queries in an index written by `embed`",
        description="Rank the rows of --index for each query: texts against an image index, "
        "image files against a text index. Scores are the sigmoid probabilities of the pairs.")
    _add_model(p)
    p.add_argument("--index", required=True, help="a .npy written by `embed`")
    p.add_argument("-k", type=int, default=5, help="results per query (default 5)")
    p.add_argument("query", nargs="+",
                   help="query texts (for an image index) or image files (for a text index)")
    p.set_defaults(func=_cmd_search)


def require_for_model(source):
    """Check the packages that reading `source` and its tokenizer need (before any work)."""
    require("text", "The tokenizer (SentencePiece)")
    suffix = Path(str(source)).suffix.lower()
    if suffix not in (".keras", ".npz") and Path(str(source)).is_dir():
        require("convert", f"Reading the transformers checkpoint {source}")


def _pipeline(args):
    from keras_siglip.pipeline import SigLIPPipeline

    options = {}
    if args.max_num_patches is not None:  # 0 too: the pipeline says what is allowed
        options["max_num_patches"] = args.max_num_patches
    pipe = SigLIPPipeline.from_preset(args.model, preset=args.preset,
                                      batch_size=args.batch_size, **options)  # fmt: skip
    import keras

    print(f"loaded {args.model}: {pipe.processor} on {keras.backend.backend()}",
          file=sys.stderr)
    return pipe


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


def _on_error(args):
    return "skip" if args.on_error == "skip" else "raise"


def _check_files(files, args):
    """With `--on-error stop`, name every missing image file before the model is loaded."""
    missing = [f"{f} ({'a folder' if Path(f).is_dir() else 'not found'})" for f in files
               if not Path(f).is_file()]  # fmt: skip
    if missing and args.on_error == "stop":
        raise FileNotFoundError(
            f"{len(missing)} of the {len(files)} image files cannot be read: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (--on-error skip "
            "leaves them out)."
        )


def _embed_files(pipe, files, args):
    """`(embeddings, names)` of image files, skipping unreadable ones with `--on-error skip`."""
    result = pipe.embed_images_kept(files, on_error=_on_error(args),
                                    progress=len(files) > pipe.batch_size)  # fmt: skip
    return result.embeddings, [str(files[i]) for i in result.kept]


def _cmd_classify(args):
    def body():
        labels = [label.strip() for label in args.labels.split(",") if label.strip()]
        if not labels:
            raise ValueError('--labels is empty; pass comma-separated labels: "a cat,a dog".')
        require_for_model(args.model)
        require("images", "Reading image files")
        _check_files(args.images, args)
        pipe = _pipeline(args)
        texts = pipe.label_embeddings(labels, args.template or [DEFAULT_TEMPLATE])
        images, names = _embed_files(pipe, args.images, args)
        probabilities = pipe.probabilities(images, texts)
        best = [labels[int(i)] for i in np.argmax(probabilities, axis=1)]
        if args.json:
            print(json.dumps([
                {"image": name, "best": top,
                 "scores": {label: float(p) for label, p in zip(labels, row)}}
                for name, top, row in zip(names, best, probabilities)], indent=2))  # fmt: skip
        else:
            rows = [[name, top, *(f"{p:.4f}" for p in row)]
                    for name, top, row in zip(names, best, probabilities)]  # fmt: skip
            print(_table(["image", "best", *labels], rows))
        return 0

    return _run(body)


def _is_text_file(inputs):
    return len(inputs) == 1 and Path(inputs[0]).suffix.lower() == ".txt"


def _read_texts(path):
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: {error}") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"{path} holds no text; write one text a line.")
    return texts


EMBED_MARK = "keras_siglip embed"


def _check_written_by_embed(path):
    """An existing --out or its .json may be replaced (with --overwrite) only if `embed` wrote it."""
    path = Path(path)
    if not path.exists():
        return
    ours = False
    try:
        if path.suffix.lower() == ".npy":
            with open(path, "rb") as f:
                ours = f.read(6) == b"\x93NUMPY"
        else:
            meta = json.loads(path.read_text(encoding="utf-8"))
            ours = isinstance(meta, dict) and {"kind", "names"} <= set(meta)
    except (OSError, UnicodeDecodeError, ValueError):
        ours = False
    if not ours:
        raise FileExistsError(
            f"{path} exists and is not a file `embed` wrote; it is never replaced, with or "
            "without --overwrite. Choose another --out."
        )


def _cmd_embed(args):
    def body():
        from keras_siglip.convert.safe_write import atomic_output, check_destination

        out = Path(args.out)
        if out.suffix.lower() != ".npy":
            raise ValueError(f"--out must be a .npy file, got {out}.")
        names_file = out.with_suffix(".json")
        for path in (out, names_file):
            check_destination(path, args.overwrite, folder=False)
            _check_written_by_embed(path)
        texts = _read_texts(args.inputs[0]) if _is_text_file(args.inputs) else None
        require_for_model(args.model)
        if texts is None:
            require("images", "Reading image files")
            _check_files(args.inputs, args)
        pipe = _pipeline(args)
        if texts is not None:
            embeddings = pipe.embed_texts(texts, progress=len(texts) > pipe.batch_size)
            names, kind = texts, "text"
        else:
            embeddings, names = _embed_files(pipe, args.inputs, args)
            kind = "image"
        meta = {"written_by": EMBED_MARK, "kind": kind, "model": str(args.model), "names": names}
        # Both written under temporary names first, then renamed one after the other: an error
        # in either leaves neither new file (and the old pair, if any, as it was).
        with atomic_output(names_file, overwrite=args.overwrite) as tmp_names:
            with atomic_output(out, overwrite=args.overwrite) as tmp:
                np.save(tmp, embeddings.astype(np.float32))
                tmp_names.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
        if args.json:
            print(json.dumps({"out": str(out), "names_file": str(names_file), "kind": kind,
                              "count": len(names), "dim": int(embeddings.shape[1])}))
        else:
            print(f"wrote {len(names)} {kind} embeddings of width {embeddings.shape[1]} to "
                  f"{out} (names in {names_file})")
        return 0

    return _run(body)


def _read_index(path):
    index_file = Path(path)
    if index_file.suffix.lower() != ".npy" or not index_file.is_file():
        raise FileNotFoundError(
            f"{index_file} is not an index file: pass the .npy that `embed --out` wrote."
        )
    index = np.load(index_file, allow_pickle=False)
    names_file = index_file.with_suffix(".json")
    if not names_file.is_file():
        raise FileNotFoundError(
            f"{names_file} is missing: `embed` writes it beside {index_file.name} (the kind and "
            "names of the rows); run `embed` again."
        )
    meta = json.loads(names_file.read_text(encoding="utf-8"))
    if meta.get("kind") not in ("image", "text") or len(meta.get("names", ())) != len(index):
        raise ValueError(
            f"{names_file} does not describe {index_file.name} ({len(index)} rows); run "
            "`embed` again."
        )
    return index, meta


def _cmd_search(args):
    def body():
        index, meta = _read_index(args.index)
        require_for_model(args.model)
        if meta["kind"] == "text":
            require("images", "Reading image files")
        if meta.get("model") not in (None, str(args.model)):
            print(f"warning: {args.index} was written with --model {meta['model']}; the "
                  f"queries use {args.model}. Embeddings of different models do not compare.",
                  file=sys.stderr)
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
            print(json.dumps(results, indent=2, ensure_ascii=False))
        else:
            rows = [[res["query"], hit["rank"], hit["name"], f"{hit['score']:.4f}"]
                    for res in results for hit in res["results"]]  # fmt: skip
            print(_table(["query", "rank", meta["kind"], "score"], rows))
        return 0

    return _run(body)
