"""`python -m keras_siglip backends`: one model on JAX, TensorFlow and torch, side by side.

Keras fixes its backend when it is imported, so each backend runs in its own child process
(`backends_worker`) on the same weights and inputs. Per backend the table shows whether it
is installed, the largest difference of its normalised float32 embeddings from the float64
NumPy oracle and from the other backends, and the median time to encode a batch of images
and texts at batch 1 and 8 in float32 and bfloat16 (compilation excluded); one line
recommends a backend for this machine.

The default model is a tiny configuration (seconds per backend); `--preset NAME` times a
released architecture with random weights, `--model SRC` a checkpoint (a transformers
folder, a `.keras` file, a big_vision `.npz` with `--preset`).
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BACKENDS = ("jax", "tensorflow", "torch")
# float32 embeddings (unit norm) that differ from the oracle by more than this are not
# recommended. The tiny models agree within 1e-5 on every backend (the conformance tests); this
# command also runs real-size checkpoints, whose float32 rounding grows with depth and width
# (different GEMM blockings sum in different orders), so the bar is one decade looser: a wrong
# port or kernel differs by 1e-2 or more and still fails it.
AGREEMENT = 1e-4
DEFAULT_TINY = "fixture_like"


def add_subcommand(sub):
    p = sub.add_parser(
        "backends", help="run one model on jax, tensorflow and torch: agreement and speed",
        description="Run one model in a child process per backend, on the same weights and "
        "inputs: whether each backend is installed, how far its embeddings are from the NumPy "
        "oracle and from the other backends, and the median encode time at batch 1 and 8 in "
        "float32 and bfloat16 (compilation excluded); then recommend one for this machine.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--tiny", default=None,
                        help=f"a tiny test configuration (default {DEFAULT_TINY!r}; or naflex)")
    source.add_argument("--model", help="a checkpoint: transformers folder, .keras, big_vision "
                        ".npz (with --preset)")
    p.add_argument("--preset", help="a preset: its architecture with random weights (alone), "
                   "or the preset of a big_vision --model")
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help="comma-separated subset of jax,tensorflow,torch (default: all three)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per measurement (median)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per backend")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main_from_args)


def installed(backend):
    """Whether the backend's package can be imported here (without importing it)."""
    return importlib.util.find_spec(backend) is not None


def _spec(args):
    """The model every child builds, and its big_vision tree and input size for the oracle."""
    from keras_siglip.apps.backends_worker import model_tree

    if args.model:
        if args.tiny:
            raise ValueError("--tiny and --model exclude each other.")
        spec = {"kind": "checkpoint", "source": str(Path(args.model).resolve()),
                "preset": args.preset, "label": str(args.model)}  # fmt: skip
    elif args.preset:
        if args.tiny:
            raise ValueError("--tiny and --preset exclude each other.")
        from keras_siglip.presets import architecture_kwargs

        info, vision, text = architecture_kwargs(args.preset)
        config = {"naflex": info["naflex"], "vision": vision, "text": text}
        spec = {"kind": "preset", "config": _json_ready(config),
                "label": f"preset {args.preset} (random weights)"}  # fmt: skip
    else:
        from keras_siglip.conformance import kit_config

        name = args.tiny or DEFAULT_TINY
        spec = {"kind": "tiny", "config": kit_config(name),
                "label": f"tiny config {name!r} (random weights)"}  # fmt: skip
    spec.update(seed=args.seed, rounds=args.rounds)
    tree, image_size = model_tree(spec)
    return spec, tree, image_size


def _json_ready(config):
    return json.loads(json.dumps(config, default=lambda x: list(x) if isinstance(x, tuple)
                                 else int(x)))  # fmt: skip


def make_inputs(tree, image_size, seed, batch=8):
    """Random images (or NaFlex patches) in [-1, 1] and token ids for `batch` examples."""
    from keras_siglip.convert import infer_architecture

    naflex, vision, text = infer_architecture(tree, image_size)
    rng = np.random.default_rng([seed, 21])
    inputs = {"token_ids": rng.integers(0, text["vocabulary_size"],
                                        (batch, text["sequence_length"])).astype(np.int32)}
    if not naflex:
        inputs["images"] = rng.uniform(-1, 1, (batch, *vision["image_size"], 3)).astype(np.float32)
        return inputs
    p, grid = vision["patch_size"], vision["position_grid_size"]
    budget = grid * grid  # the pretraining budget: one patch per position-table entry
    patches = np.zeros((batch, budget, p * p * 3), np.float32)
    mask = np.zeros((batch, budget), np.int32)
    shapes = np.zeros((batch, 2), np.int32)
    for i in range(batch):  # grids of several aspect ratios, some with padding
        h = max(1, grid - i % 3)
        w = max(1, min(budget // h, grid + i % 4))
        patches[i, : h * w] = rng.uniform(-1, 1, (h * w, p * p * 3))
        mask[i, : h * w], shapes[i] = 1, (h, w)
    inputs.update(patches=patches, patch_mask=mask, spatial_shapes=shapes)
    return inputs


def oracle_embeddings(tree, inputs, rows):
    """The float64 NumPy oracle's normalised `(zimg, ztxt)` of the first `rows` examples."""
    import keras_siglip_reference as reference

    naflex = None
    if "patches" in inputs:
        naflex = {k: inputs[k][:rows] for k in ("patches", "patch_mask", "spatial_shapes")}
    images = None if naflex else inputs["images"][:rows]
    params = {k: np.asarray(v, np.float64) for k, v in tree.items()}
    out = reference.two_tower(params, images=images, token_ids=inputs["token_ids"][:rows],
                              naflex=naflex)  # fmt: skip
    return out["zimg"], out["ztxt"]


class _Child:
    """A worker process for one backend: started, then told to time once it is ready."""

    def __init__(self, backend, spec_file, folder):
        self.backend, self.folder = backend, folder
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.log = open(folder / "stderr.txt", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keras_siglip.apps.backends_worker", str(spec_file),
             str(folder)], env=env, stdout=subprocess.DEVNULL, stderr=self.log)  # fmt: skip

    def wait_for(self, name, deadline):
        """Wait until the child writes `name` (or exits, or the deadline passes)."""
        while not (self.folder / name).exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def finish(self, deadline):
        """Let the child time, wait for it, and return its result dict.

        The child is killed and its log closed whatever happens here (a timeout, Ctrl-C)."""
        try:
            if self.wait_for("ready", deadline):
                (self.folder / "go").touch()
                self.wait_for("result.json", deadline)
            if self.process.poll() is None and time.monotonic() > deadline:
                return {"status": "timed out (--timeout)"}
            self.process.wait()
            self.log.seek(0)
            lines = [line for line in self.log.read().splitlines() if line.strip()]
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.log.close()
        if self.process.returncode != 0 or not (self.folder / "result.json").exists():
            return {"status": "failed: " + (lines[-1] if lines else
                                            f"exit {self.process.returncode}")}  # fmt: skip
        result = json.loads((self.folder / "result.json").read_text())
        with np.load(self.folder / "embeddings.npz") as data:
            result["embeddings"] = {k: data[k] for k in data.files}
        result["status"] = "ok"
        return result


def run_backends(chosen, folder, timeout):
    """Each chosen backend's result, one child after another.

    The children never run at the same time: besides keeping the timings apart, several
    processes' thread pools on a few cores slow each other down by far more than their share
    (spinning workers), so setting them up together is no faster.
    """
    results = {}
    for backend in chosen:
        if not installed(backend):
            results[backend] = {"status": "not installed"}
            continue
        print(f"running {backend} ...", file=sys.stderr)
        (folder / backend).mkdir()
        child = _Child(backend, folder / "spec.json", folder / backend)
        results[backend] = child.finish(time.monotonic() + timeout)
    return results


def _diff(a, b):
    return float(max(np.max(np.abs(x - y)) for x, y in zip(a, b)))


def compare(results, oracle):
    """Fill each result's `oracle_diff` (float32 and bfloat16) and `others_diff` (float32)."""
    ok = {b: r for b, r in results.items() if r["status"] == "ok"}
    for backend, result in ok.items():
        emb = result["embeddings"]
        result["oracle_diff"] = {
            dtype: _diff((emb[f"{dtype}/zimg"], emb[f"{dtype}/ztxt"]), oracle)
            for dtype in ("float32", "bfloat16") if f"{dtype}/zimg" in emb
        }
        mine = (emb.get("float32/zimg"), emb.get("float32/ztxt"))
        others = [(o["embeddings"].get("float32/zimg"), o["embeddings"].get("float32/ztxt"))
                  for b, o in ok.items() if b != backend]  # fmt: skip
        diffs = [_diff(mine, other) for other in others
                 if mine[0] is not None and other[0] is not None]  # fmt: skip
        result["others_diff"] = max(diffs) if diffs else None


def recommend(results):
    """One line: the fastest backend at batch 8 in float32 among those agreeing with the
    oracle, and whether bfloat16 pays off on it."""
    candidates = []
    for backend, r in results.items():
        seconds = r.get("seconds", {}).get("float32", {}).get("8")
        if r["status"] == "ok" and seconds and r["oracle_diff"].get("float32", 1) <= AGREEMENT:
            candidates.append((seconds, backend))
    if not candidates:
        return ("No backend both ran and agreed with the oracle within "
                f"{AGREEMENT:g}: see the table.")
    seconds, best = min(candidates)
    line = (f"Recommendation for this machine: KERAS_BACKEND={best} (fastest at batch 8 in "
            f"float32, {seconds * 1e3:.1f} ms per batch")
    if len(candidates) > 1:
        runner_up = sorted(candidates)[1]
        line += f", {runner_up[0] / seconds:.1f}x faster than {runner_up[1]}"
    bf16 = results[best].get("seconds", {}).get("bfloat16", {}).get("8")
    if bf16 and bf16 < seconds / 1.2:
        line += (f"; bfloat16 is {seconds / bf16:.1f}x faster on it, with embeddings "
                 f"{results[best]['oracle_diff'].get('bfloat16', math.nan):.1e} from the oracle")
    return line + ")."


def _ms(value):
    return "-" if value is None else f"{value * 1e3:.1f}"


def table(results):
    header = ["backend", "status", "max|d| oracle f32", "max|d| others", "max|d| oracle bf16",
              "f32 b1 ms", "f32 b8 ms", "bf16 b1 ms", "bf16 b8 ms"]  # fmt: skip
    rows = []
    for backend, r in results.items():
        diff = r.get("oracle_diff", {})
        seconds = r.get("seconds", {})
        fmt = lambda v: "-" if v is None else f"{v:.1e}"  # noqa: E731
        rows.append([backend, r["status"], fmt(diff.get("float32")), fmt(r.get("others_diff")),
                     fmt(diff.get("bfloat16")),
                     *(_ms(seconds.get(d, {}).get(b)) for d in ("float32", "bfloat16")
                       for b in ("1", "8"))])  # fmt: skip
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]  # fmt: skip
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    notes = [f"  {b} {d}: {e}" for b, r in results.items() for d, e in r.get("errors", {}).items()]
    return "\n".join(lines + (["errors:"] + notes if notes else []))


def main_from_args(args):
    """Run the comparison for parsed `backends` arguments; returns the exit status."""
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    wrong = [b for b in chosen if b not in BACKENDS]
    if wrong or not chosen:
        print(f"error: --backends takes a comma-separated subset of {','.join(BACKENDS)}; "
              f"got {args.backends!r}.", file=sys.stderr)  # fmt: skip
        return 1
    if args.rounds < 1:
        print("error: --rounds must be at least 1.", file=sys.stderr)
        return 1
    try:
        spec, tree, image_size = _spec(args)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from keras_siglip.apps.backends_worker import ORACLE_ROWS

    inputs = make_inputs(tree, image_size, args.seed)
    print(f"model: {spec['label']}", file=sys.stderr)
    start = time.perf_counter()
    oracle = oracle_embeddings(tree, inputs, ORACLE_ROWS)
    print(f"oracle (NumPy, float64): {time.perf_counter() - start:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="keras_siglip_backends_") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "inputs.npz", **inputs)
        (tmp / "spec.json").write_text(json.dumps(spec))
        results = run_backends(chosen, tmp, args.timeout)
    compare(results, oracle)
    advice = recommend(results)
    if args.json:
        for r in results.values():
            r.pop("embeddings", None)
        print(json.dumps({"model": spec["label"], "backends": results,
                          "recommendation": advice}, indent=2))  # fmt: skip
    else:
        print(f"model: {spec['label']}; inputs: {len(inputs['token_ids'])} images and texts")
        print(table(results))
        print(advice)
    return 0 if any(r["status"] == "ok" for r in results.values()) else 1
