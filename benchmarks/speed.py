"""Inference speed of keras-siglip beside transformers and KerasHub, side by side in one run.

Implementations (`--impls`):
  keras-jax, keras-tensorflow, keras-torch   keras-siglip on each Keras backend, through its
                                             compiled inference paths: `encode_images` (JAX jit,
                                             tf.function with XLA, a recorded torch graph) and
                                             `predict_on_batch` for the two-tower forward.
  transformers                               `SiglipModel` / `SiglipVisionModel` /
                                             `Siglip2VisionModel`, SDPA attention, `torch.no_grad`.
  kerashub-jax, kerashub-tensorflow,         KerasHub's `SigLIPBackbone` (and its vision encoder)
  kerashub-torch                             through `predict_on_batch`, when keras_hub is installed.

Cases (`--cases`), random weights, float32 unless named `_bf16`:
  vision_b1, vision_b8, vision_b32   the B/16@224 image tower (196 tokens), `encode_images` at batch 1/8/32
  two_tower                          the full B/16@224 model: 8 images + 8 texts of 64 tokens -> logits
  fixed_256                          the fixed-resolution B/16 tower at 256x256 (256 tokens), batch 8
  naflex_256                         the SigLIP 2 NaFlex B/16 tower, 256-patch budget, batch 8 of mixed
                                     aspect ratios (1:1 ... 1:2; each grid fills the budget as NaFlex does)
  naflex_1024                        the same with a 1024-patch budget, batch 2
  vision_b1_bf16, vision_b8_bf16,    bfloat16: keras-siglip built under the "bfloat16" dtype policy,
  two_tower_bf16, naflex_256_bf16    transformers `.to(torch.bfloat16)`, the same weights rounded
The default runs the goal cases in both dtypes and the NaFlex pair (`speed_cases.DEFAULT_CASES`).

On a machine with a CUDA GPU the workers run there (JAX, TensorFlow and torch as their builds
find it, transformers moved to "cuda"); no code change is needed. The float32 matmul peaks are
the CPU's and are left out there.

How it measures:
  * Each Keras backend runs in its own worker process (a backend is fixed at import); transformers
    runs in the torch worker. Workers build every model once. keras-siglip and transformers get the
    same random weights (one big_vision tree, converted with keras_siglip.convert), so their outputs
    are compared too (max |diff| column; KerasHub has its own random weights).
  * Workers are set up in parallel, then timed one call at a time: each round runs every case on
    every implementation in turn, rotating the order, so a busy machine slows them all alike. The
    first `--warmup` rounds (compilation, allocator warm-up) are not recorded. Medians over
    `--repeats` rounds; a call is timed from numpy inputs to numpy outputs. Ratios ("vs
    transformers", NaFlex over fixed) are medians of per-round ratios: the two calls of a ratio
    run seconds apart in the same round, so the machine's slow drift in speed cancels. Each call starts after
    `--pause` idle seconds, so thread pools still spinning after the previous call (OpenMP keeps
    its threads busy for a while) do not slow it.
  * Each ratio comes with a distribution-free interval for its median, from the order statistics of
    the per-round ratios (95% coverage from 6 rounds on; with 5 rounds [min, max], 94%). The last
    block prints the speed goals with these numbers and a verdict for each.
  * Matmul peak: each framework's float32 matmul (2048^3 and the MLP's 1568x768x3072), measured in
    every round beside the models; the machine's peak is the best of numpy, torch (its `addmm`,
    and oneDNN's linear where torch has it), JAX and TensorFlow. GFLOP/s count the matmul FLOPs
    the case must do (2mnk for every dense layer, convolution and attention product, padded tokens
    included); elementwise work is not counted.

Every JSON records the host (CPU model, cores, SIMD extensions), the date, the command, the
devices and each worker's timed kernel choices; `--from-json` with several files refuses runs of
different hosts.

Usage:
  python benchmarks/speed.py                                  # the default cases, 11 rounds
  python benchmarks/speed.py --cases vision_b8 two_tower --repeats 3
  python benchmarks/speed.py --impls keras-jax transformers --json speed.json --plot speed.png
  python benchmarks/speed.py --from-json benchmarks/speed.json      # the recorded run's table
  python benchmarks/speed.py --from-json run1.json run2.json run3.json   # each run, then across runs
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# This folder is on sys.path when a script here runs.
from gemm import machine_info
from speed_cases import (
    BACKENDS,
    CASES,
    DEFAULT_CASES,
    IMPLS,
    ROOT,
    _impl_backend,
    case_dtype,
    case_flops,
)
# `_median_interval`, `goal_target`, `pool_runs` and `_matmul_kernels` are not used here: they are
# imported so that `speed.X` reaches them (tests/test_benchmarks.py).
from speed_report import (
    _median_interval,  # noqa: F401
    _paired_ratio,
    add_intervals,
    goal_target,  # noqa: F401
    plot,
    pool_runs,  # noqa: F401
    print_goals,
    print_naflex_ratio,
    print_pooled,
    print_table,
)
from speed_workers import _matmul_kernels, _matmul_timer, worker  # noqa: F401


class Worker:
    """A worker process of one Keras backend, and the JSON-line protocol spoken with it."""

    def __init__(self, backend, impls, cases, out_dir, threads):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.backend = backend
        self.log_path = os.path.join(out_dir, f"worker_{backend}.log")
        self.log = open(self.log_path, "w")
        command = [sys.executable, os.path.abspath(__file__), "--worker", backend,
                   "--impls", *impls, "--cases", *cases, "--out-dir", out_dir,
                   "--threads", str(threads)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True, env=env, cwd=ROOT)

    def receive(self):
        line = self.process.stdout.readline()
        if not line:
            self.log.flush()
            with open(self.log_path) as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"The {self.backend} worker stopped. Its log ends:\n{tail}")
        message = json.loads(line)
        if "error" in message:
            raise RuntimeError(f"The {self.backend} worker failed: {message['error']}")
        return message

    def request(self, **message):
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write('{"op": "quit"}\n')
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
        self.log.close()


def _available_impls(impls):
    import importlib.util

    kept = []
    for impl in impls:
        if impl.startswith("kerashub") and importlib.util.find_spec("keras_hub") is None:
            print(f"[speed] skipping {impl}: keras_hub is not installed")
            continue
        kept.append(impl)
    return kept


def run_benchmark(args):
    impls = _available_impls(args.impls)
    out_dir = tempfile.mkdtemp(prefix="keras_siglip_speed_")
    backends = [b for b in BACKENDS if any(_impl_backend(i) == b for i in impls)]
    print(f"[speed] starting {len(backends)} workers ({', '.join(backends)}); logs in {out_dir}")
    workers = {b: Worker(b, [i for i in impls if _impl_backend(i) == b], args.cases, out_dir,
                         args.threads) for b in backends}
    try:
        start = time.perf_counter()
        jobs, info = [], {}
        for backend, w in workers.items():
            ready = w.receive()
            info[backend] = ready["info"]
            for key in ready["ready"]:
                impl, case = key.split("|")
                jobs.append((case, impl))
        print(f"[speed] workers ready after {time.perf_counter() - start:.0f} s")
        numpy_matmul = _matmul_timer(["numpy"])
        times = {job: [] for job in jobs}
        outputs = {}
        peaks = {}
        order = sorted(jobs, key=lambda j: (args.cases.index(j[0]), impls.index(j[1])))
        for round_index in range(args.warmup + args.repeats):
            timed = round_index >= args.warmup
            label = f"round {round_index - args.warmup + 1}/{args.repeats}" if timed else "warm-up"
            round_start = time.perf_counter()
            gflops = numpy_matmul()
            for w in workers.values():
                gflops.update(w.request(op="matmul")["gflops"])
            for case in args.cases:
                case_jobs = [j for j in order if j[0] == case]
                shift = round_index % max(len(case_jobs), 1)
                for job in case_jobs[shift:] + case_jobs[:shift]:  # rotate who goes first
                    # Let the previous worker's thread pools (OpenMP, Eigen, OpenBLAS) stop
                    # spinning, so they cannot steal cycles from this call.
                    time.sleep(args.pause)
                    reply = workers[_impl_backend(job[1])].request(op="run", impl=job[1], case=case)
                    if timed:
                        times[job].append(reply["seconds"])
                    outputs[job] = reply["output"]
            if timed:
                for name, value in gflops.items():
                    peaks.setdefault(name, []).append(value)
            print(f"[speed] {label} done in {time.perf_counter() - round_start:.0f} s", flush=True)
        for backend, w in workers.items():
            info[backend]["kernel_choices"] = w.request(op="choices")["choices"]
    finally:
        for w in workers.values():
            w.close()
    return _summarise(args, impls, times, outputs, peaks, info)


def _summarise(args, impls, times, outputs, peaks, info):
    peak_by_framework = {name: statistics.median(v) for name, v in peaks.items() if v}
    machine_peak = max(peak_by_framework.values()) if peak_by_framework else None
    rows = []
    for (case, impl), values in times.items():
        median = statistics.median(values)
        flops = case_flops(case)
        batch = CASES[case]["batch"]
        row = dict(case=case, impl=impl, dtype=case_dtype(case), batch=batch, median_s=median,
                   min_s=min(values), max_s=max(values), repeats=len(values),
                   times_s=values, per_s=batch / median, gflops=flops / median / 1e9)
        # The peaks are float32 GEMMs on the CPU: no share of them for bfloat16 cases.
        float32 = row["dtype"] == "float32" and machine_peak
        row["of_machine_peak"] = row["gflops"] / machine_peak if float32 else None
        own = max((peak_by_framework.get(k, 0) for k in _own_kernels(impl)), default=0)
        row["of_framework_peak"] = row["gflops"] / own if float32 and own else None
        reference = times.get((case, "transformers"))
        row["vs_transformers"] = _paired_ratio(reference, values) if reference else None
        row["max_abs_diff"] = None
        if impl.startswith("keras-") and (case, "transformers") in outputs:
            mine = np.load(outputs[case, impl])
            theirs = np.load(outputs[case, "transformers"])
            row["max_abs_diff"] = float(np.max(np.abs(mine.astype(np.float64) - theirs)))
        rows.append(row)
    rows.sort(key=lambda r: (args.cases.index(r["case"]), impls.index(r["impl"])))
    naflex_over_fixed = {
        impl: _paired_ratio(times["naflex_256", impl], times[case, impl])
        for case, impl in times
        if case == "fixed_256" and ("naflex_256", impl) in times
    }
    devices = {v.get("device", "cpu") for v in info.values()}
    return dict(rows=rows, matmul_gflops=peak_by_framework, machine_peak_gflops=machine_peak,
                naflex_over_fixed=naflex_over_fixed, versions=info, threads=args.threads,
                repeats=args.repeats, warmup=args.warmup, machine=machine_info(),
                devices=sorted(devices), date=time.strftime("%Y-%m-%d %H:%M %Z"),
                command="python benchmarks/speed.py " + " ".join(args.argv))


def _own_kernels(impl):
    """The matmul kernels an implementation may run, for its "% own peak" (the fastest counts):
    transformers runs torch's `addmm`; keras-torch `addmm` or oneDNN's linear, whichever times
    faster per shape (`keras_siglip.backend.torch_cpu_gemm`); the others their framework's."""
    if impl == "transformers":
        return ["torch"]
    backend = _impl_backend(impl)
    return ["torch", "torch-onednn"] if backend == "torch" else [backend]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(DEFAULT_CASES),
                        help="default: the float32 and bfloat16 goal cases and NaFlex")
    parser.add_argument("--repeats", type=int, default=11, help="timed rounds (default 11)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads per framework (default: all cores)")
    parser.add_argument("--pause", type=float, default=0.5,
                        help="seconds of idle time before each timed call (default 0.5)")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--plot", help="write a bar chart to this PNG file")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--from-json", nargs="+", metavar="JSON",
                        help="print (and plot) saved results instead of running; with several "
                             "files, also each ratio across the runs (--plot draws the first)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.worker:
        return worker(args.worker, args.impls, args.cases, args.out_dir, args.threads)
    if args.from_json:
        paths, results = args.from_json, []
        for path in paths:
            with open(path) as f:
                results.append(json.load(f))
        args.json = None
    else:
        paths, results = [args.json], [run_benchmark(args)]
    for path, result in zip(paths, results):
        if len(results) > 1:
            print(f"\n== {path}")
        add_intervals(result)
        print_table(result)
        print_naflex_ratio(result)
        print_goals(result)
    if len(results) > 1:
        try:
            print_pooled(results, [os.path.basename(p) for p in paths])
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results[0], f, indent=1)
    if args.plot:
        plot(results[0], args.plot)


if __name__ == "__main__":
    main()
