"""Training throughput: one optimizer step of a SigLIP B/16 two-tower, keras-siglip on every Keras
backend against a plain PyTorch loop over transformers' `SiglipModel`.

A step is: the forward pass of both towers on 16 images (224x224) and 16 texts (64 tokens), the
sigmoid loss, the backward pass and an AdamW update (lr 1e-4, weight decay 1e-4, betas (0.9,
0.999), eps 1e-8), timed from the numpy batch to the loss as a Python float (so the step has
finished).

Implementations (`--impls`; `--variants` adds the last two rows of each keras backend chosen):
  keras-jax, keras-tensorflow, keras-torch   keras-siglip as a user trains it: `model.compile(
                                             optimizer=keras.optimizers.AdamW(...), loss=
                                             keras_siglip.losses.SigmoidLoss())`, then
                                             `model.train_on_batch(x)`. `compile` wraps the
                                             optimizer in a NonFiniteStepGuard that skips steps
                                             with non-finite gradients.
  keras-<backend>-noguard                    the same without that wrapper: the cost of the guard.
  keras-<backend>-chunk4                     the same with `SigmoidLoss(chunk_size=4)`: the cost of
                                             the chunked loss.
  transformers                               `SiglipModel` (SDPA attention) holding the same weights
                                             (converted with keras_siglip.convert.transformers), the
                                             same loss in plain torch on its L2-normalised
                                             embeddings with its logit_scale / logit_bias,
                                             `torch.optim.AdamW`, in the torch worker.

How it measures (as speed.py does):
  * One worker process per Keras backend (a backend is fixed at import); the workers build their
    models in parallel, then run one step at a time: each round runs every implementation once,
    rotating the order, after `--pause` idle seconds. The first `--warmup` rounds (compilation on
    JAX and TensorFlow) are not timed. Medians over `--repeats` rounds; "vs transformers" is the
    median of the per-round ratios transformers time / keras time (> 1: keras is faster), with a
    distribution-free interval for that median (order statistics of the rounds).
  * Every implementation starts from the same weights and its step k trains on the same batch k,
    so the losses agree: step 1 (before any update) within 1e-4 relative, and the table shows how
    far later steps drift apart. The run exits with status 1 if step 1 does not agree.
  * "traces": runs of keras' Python `train_step` during the timed steps. JAX and TensorFlow run it
    only while they trace the step, so anything above 0 is a recompilation; torch runs it eagerly
    every step. On torch every step is also split into forward / loss / backward / optimizer.
  * AdamW: both apply the decoupled decay `w -= lr * wd * w` before the Adam update. They differ in
    where eps sits: Keras steps by `lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)`, torch
    by `lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`, i.e. Keras' eps acts as torch's
    `eps / sqrt(1 - b2^t)` (3.2e-7 at step 1, 1e-8 late in training). It changes an update only
    where |gradient| is below ~1e-6, but those updates are enough for the B/16 losses of step 2
    to differ by ~1e-4 relative (keras backends agree with each other to ~1e-7 there).
    `--keras-eps` sets torch's eps to Keras' value before every step: then transformers' step-2
    loss agrees with Keras' to ~1e-6, and later steps drift only by rounding, amplified by the
    training dynamics.

Memory: up to 9 GB per B/16 implementation (weights, gradients, two AdamW moments,
activations: 8.7 GB peak on JAX, 7.3 GB on torch); the run refuses to start when the machine
has less available (`--impls` runs fewer at a time). Time: 10-16 s per B/16 step per implementation on 2 idle cores (transformers:
forward ~4 s, backward ~6 s, AdamW ~0.5 s), so the default run takes about 12 minutes, with a
minute or two of compilation per JAX or TensorFlow model in the warm-up round (twice that on a
busy machine).

Usage:
  python benchmarks/train_step.py                          # 4 implementations, 11 rounds
  python benchmarks/train_step.py --impls keras-torch transformers --variants --repeats 5
  python benchmarks/train_step.py --json train_step.json --plot train_step.png --profile
  python benchmarks/train_step.py --tiny --repeats 2       # a tiny model, seconds (the test)
  python benchmarks/train_step.py --from-json benchmarks/train_step.json
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# This folder is on sys.path when a script here runs.
from gemm import machine_info
from speed import Worker
from speed_report import _fmt_ratio, _median_interval, _paired_ratio, _round_ratios
from train_workers import (ADAMW, BACKENDS, CHUNK_SIZE, CONFIGS, IMPLS, ROOT, VARIANTS,
                           impl_backend, impl_variant, worker)

DEFAULT_IMPLS = ("keras-jax", "keras-tensorflow", "keras-torch", "transformers")
FIRST_STEP_RTOL = 1e-4
GB_PER_IMPL = {"b16": 9.0, "tiny": 0.0}  # peak resident memory measured on JAX (8.7 GB)


class TrainWorker(Worker):
    """speed.py's worker protocol, running `train_workers.worker` for one backend."""

    def __init__(self, backend, impls, config, out_dir, threads, keras_eps):  # noqa: D107
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.backend = backend
        self.log_path = os.path.join(out_dir, f"worker_{backend}.log")
        self.log = open(self.log_path, "w")
        command = [sys.executable, os.path.abspath(__file__), "--worker", backend,
                   "--impls", *impls, "--config", config, "--threads", str(threads)]
        command += ["--keras-eps"] if keras_eps else []
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True, env=env, cwd=ROOT)


def chosen_impls(impls, variants):
    """`impls` in `IMPLS` order, with the variants of each keras backend when `variants`."""
    chosen = set(impls)
    if variants:
        chosen |= {f"keras-{impl_backend(i)}{s}" for i in impls if i.startswith("keras-")
                   for s in VARIANTS}
    return [i for i in IMPLS if i in chosen]


def available_gb(meminfo="/proc/meminfo"):
    """MemAvailable in GB, or None where the system does not say."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return None


def check_memory(config, impls, available):
    """Refuse a run whose models would not fit in `available` GB (None: unknown, allowed)."""
    needed = GB_PER_IMPL[config] * len(impls)
    if available is not None and needed > available:
        raise SystemExit(
            f"train_step.py: {len(impls)} {config} implementations need about {needed:.0f} GB "
            f"of memory, this machine has {available:.1f} GB available. Run fewer at a time "
            "(e.g. --impls keras-torch transformers), or pass --no-memory-check to try anyway.")


def run_benchmark(args, impls):
    out_dir = tempfile.mkdtemp(prefix="keras_siglip_train_")
    backends = [b for b in BACKENDS if any(impl_backend(i) == b for i in impls)]
    print(f"[train] starting {len(backends)} workers ({', '.join(backends)}); logs in {out_dir}",
          flush=True)
    workers = {b: TrainWorker(b, [i for i in impls if impl_backend(i) == b], args.config,
                              out_dir, args.threads, args.keras_eps) for b in backends}
    steps = {impl: [] for impl in impls}
    profiles = {}
    try:
        start = time.perf_counter()
        versions, params = {}, {}
        for backend, w in workers.items():
            ready = w.receive()
            versions[backend], params[backend] = ready["info"], ready["params"]
        print(f"[train] workers ready after {time.perf_counter() - start:.0f} s", flush=True)
        for round_index in range(args.warmup + args.repeats):
            timed = round_index >= args.warmup
            label = f"round {round_index - args.warmup + 1}/{args.repeats}" if timed else "warm-up"
            round_start = time.perf_counter()
            shift = round_index % len(impls)
            for impl in impls[shift:] + impls[:shift]:  # rotate who goes first
                time.sleep(args.pause)  # let the previous worker's thread pools go idle
                reply = workers[impl_backend(impl)].request(op="step", impl=impl)
                steps[impl].append(dict(reply, timed=timed))
            print(f"[train] {label} done in {time.perf_counter() - round_start:.0f} s", flush=True)
        if args.profile:
            for impl in impls:
                if impl_backend(impl) == "torch":
                    profiles[impl] = workers["torch"].request(op="profile", impl=impl)["table"]
    finally:
        for w in workers.values():
            w.close()
    return summarise(args, impls, steps, versions, params, profiles)


def _phase_medians(records):
    phases = [r["phases"] for r in records if r.get("phases")]
    if not phases:
        return None
    return {name: statistics.median(p[name] for p in phases) for name in phases[0]}


def _relative(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def summarise(args, impls, steps, versions, params, profiles):
    """The result dict that `--json` writes and `print_report` prints."""
    reference = "transformers" if "transformers" in impls else impls[0]
    times = {impl: [r["seconds"] for r in steps[impl] if r["timed"]] for impl in impls}
    losses = {impl: [r["loss"] for r in steps[impl]] for impl in impls}
    rows = []
    for impl in impls:
        values = times[impl]
        median = statistics.median(values)
        row = dict(impl=impl, median_s=median, min_s=min(values), max_s=max(values),
                   times_s=values, examples_per_s=CONFIGS[args.config]["batch"] / median,
                   first_step_s=steps[impl][0]["seconds"], losses=losses[impl],
                   traces=None if steps[impl][0]["traces"] is None
                   else sum(r["traces"] for r in steps[impl] if r["timed"]),
                   phases_s=_phase_medians([r for r in steps[impl] if r["timed"]]))
        row["vs_transformers"] = row["vs_transformers_interval"] = None
        if impl != "transformers" and "transformers" in impls:
            ratios = _round_ratios(times["transformers"], values)
            row["vs_transformers"] = _paired_ratio(times["transformers"], values)
            row["vs_transformers_interval"] = _median_interval(ratios)
        theirs = losses[reference]
        row["loss_rel_diff"] = [_relative(a, b) for a, b in zip(losses[impl], theirs)]
        rows.append(row)
    costs = []
    for impl in impls:
        variant, base = impl_variant(impl), f"keras-{impl_backend(impl)}"
        if variant and base in impls:  # time with / time without, per round
            pair = (times[impl], times[base]) if variant == "-chunk4" else (times[base], times[impl])
            what = (f"SigmoidLoss(chunk_size={CHUNK_SIZE}) / dense loss" if variant == "-chunk4"
                    else "guarded / plain AdamW")
            costs.append(dict(impl=base, what=what, ratio=_paired_ratio(*pair),
                              interval=_median_interval(_round_ratios(*pair))))
    first = {r["impl"]: r["loss_rel_diff"][0] for r in rows}
    return dict(
        rows=rows, costs=costs, reference=reference, config=args.config,
        batch=CONFIGS[args.config]["batch"], image=CONFIGS[args.config]["image"],
        text_length=CONFIGS[args.config]["length"], adamw=ADAMW, params=params,
        repeats=args.repeats, warmup=args.warmup, threads=args.threads,
        keras_eps=args.keras_eps,
        first_step_rtol=FIRST_STEP_RTOL,
        first_step_agrees=all(d <= FIRST_STEP_RTOL for d in first.values()),
        versions=versions, machine=machine_info(), profiles=profiles,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join(["python", "benchmarks/train_step.py", *args.argv]),
    )


def print_report(result):
    """The result table, the cost of each variant, the torch phases and the loss agreement."""
    machine = result["machine"]
    print(f"\nSigLIP {result['config']} training step: batch {result['batch']}, images "
          f"{result['image']}x{result['image']}, texts of {result['text_length']} tokens, "
          f"AdamW {result['adamw']}"
          + (" (transformers: eps set to Keras' each step)" if result.get("keras_eps") else ""))
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, SIMD "
          f"{' '.join(machine['simd']) or 'none listed'}; {result['threads']} threads; "
          f"{result['date']}; {result['command']}")
    print("versions: " + "; ".join(
        f"{b}: " + ", ".join(f"{k} {v}" for k, v in info.items() if isinstance(v, str))
        for b, info in result["versions"].items()))
    steps = len(result["rows"][0]["losses"])
    print(f"\n| implementation | median s/step [min, max] | examples/s | vs transformers "
          f"[interval] | first step s | traces | loss step 1 | rel. diff step 1 "
          f"| max rel. diff, steps 1-{steps} |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        traces = "eager" if r["traces"] is None else str(r["traces"])
        print(f"| {r['impl']} | {r['median_s']:.3f} [{r['min_s']:.3f}, {r['max_s']:.3f}] "
              f"| {r['examples_per_s']:.2f} "
              f"| {_fmt_ratio(r['vs_transformers'], r['vs_transformers_interval'])} "
              f"| {r['first_step_s']:.1f} | {traces} | {r['losses'][0]:.6f} "
              f"| {r['loss_rel_diff'][0]:.1e} | {max(r['loss_rel_diff']):.1e} |")
    intervals = [r["vs_transformers_interval"] for r in result["rows"]
                 if r["vs_transformers_interval"]]
    if intervals:
        print(f"\nMedian of {result['repeats']} interleaved rounds ({result['warmup']} untimed "
              f"first). vs transformers: median of the per-round ratios transformers time / "
              f"keras time (> 1: keras is faster) [distribution-free interval for it, "
              f"{100 * intervals[0][2]:.0f}% coverage]. Rel. diffs: of each step's loss against "
              f"{result['reference']}'s.")
    for cost in result["costs"]:
        print(f"cost on {cost['impl']}: time {cost['what']} = "
              f"{_fmt_ratio(cost['ratio'], cost['interval'])} (median per-round ratio; > 1: "
              "slower with it)")
    phased = [r for r in result["rows"] if r.get("phases_s")]
    if phased:
        names = list(phased[0]["phases_s"])
        print("\nWhere a torch step goes (median seconds):")
        print("| implementation | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for r in phased:
            print(f"| {r['impl']} | " + " | ".join(f"{r['phases_s'][n]:.3f}" for n in names)
                  + " |")
    for impl, table in result.get("profiles", {}).items():
        print(f"\ntorch.profiler, one step of {impl}:\n{table}")
    verdict = "agree" if result["first_step_agrees"] else "DO NOT agree"
    print(f"\nStep-1 losses {verdict} within {result['first_step_rtol']:.0e} relative.")


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 3, 4))
    ax.bar(range(len(rows)), [r["examples_per_s"] for r in rows],
           yerr=[[r["examples_per_s"] - result["batch"] / r["max_s"] for r in rows],
                 [result["batch"] / r["min_s"] - r["examples_per_s"] for r in rows]])
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["impl"] for r in rows], rotation=20)
    ax.set_ylabel("training examples / s (median; bars: fastest and slowest round)")
    ax.set_title(f"SigLIP {result['config']} training step, batch {result['batch']}, "
                 f"{result['threads']} threads, {result['repeats']} rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"[train] wrote {path}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(DEFAULT_IMPLS))
    parser.add_argument("--variants", action="store_true",
                        help="add the -noguard and -chunk4 rows of each keras backend chosen")
    parser.add_argument("--repeats", type=int, default=11, help="timed rounds (default 11)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads per framework (default: all cores)")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds of idle time before each step (default 0.5)")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny two-tower model instead of B/16 (seconds; for the tests)")
    parser.add_argument("--profile", action="store_true",
                        help="after the rounds, one more step of each torch implementation under "
                             "torch.profiler: its most expensive ops")
    parser.add_argument("--keras-eps", action="store_true",
                        help="set torch's AdamW eps every step so that its update is Keras' "
                             "(see 'AdamW' above), so the losses differ only by rounding")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="start even if the models look too big for the available memory")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--plot", help="write a bar chart to this PNG file")
    parser.add_argument("--from-json", metavar="JSON", help="print (and plot) a saved run")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--config", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.impls, args.config, args.threads, args.keras_eps)
    if args.from_json:
        with open(args.from_json) as f:
            result = json.load(f)
    else:
        if args.repeats < 1 or args.warmup < 0:
            parser.error("--repeats must be at least 1 and --warmup at least 0")
        args.config, args.argv = ("tiny" if args.tiny else "b16"), argv
        impls = chosen_impls(args.impls, args.variants)
        if not args.no_memory_check:
            check_memory(args.config, impls, available_gb())
        result = run_benchmark(args, impls)
    print_report(result)
    if args.json and not args.from_json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(result, args.plot)
    if not result["first_step_agrees"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
