"""Float32 GEMM speed of each framework on the matmul shapes of a B/16 tower at batch 8.

A B/16 encoder block at batch 8 (8 x 196 = 1568 tokens, no class token; width 768, MLP 3072)
spends ~94% of its time in four matmuls; this script times exactly those shapes, and a 2048^3
square, in every framework the benchmarks compare, interleaved in one process (each round runs
every shape on every kernel in turn, rotating who goes first), so the numbers are side by side on
the same machine state:

  numpy                 numpy's BLAS (OpenBLAS in the PyPI wheels)
  torch                 `torch.mm` (what transformers' `nn.Linear` runs, as `addmm`; MKL)
  torch-onednn          oneDNN's linear operator in torch, as keras-siglip runs float32 inference
                        on AVX-512 CPUs (`keras_siglip.backend.torch_cpu_gemm`)
  tensorflow            `tf.linalg.matmul`, eager (Eigen / oneDNN)
  tensorflow-xla        the same in `tf.function(jit_compile=True)`, as keras-siglip runs TensorFlow
  jax                   `jax.jit(jnp.matmul)` with the default XLA:CPU options (YNNPACK dot fusions)
  jax-eigen             the same compiled with YNNPACK's dot fusions off (XLA's Eigen dot), through
                        per-compilation `compiler_options`, so no global XLA flag is touched

It answers "how fast can each framework's GEMM go here", which bounds what a model built on it can
reach: keras-siglip on JAX can only beat transformers by as much as XLA's dots allow.

Usage:
  python benchmarks/gemm.py                      # 15 rounds, 2 threads each
  python benchmarks/gemm.py --repeats 31 --json gemm.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (m, k, n) of `(m, k) @ (k, n)`: q/k/v fused, attention output, MLP up, MLP down, square.
SHAPES = {
    "qkv 1568x768x2304": (1568, 768, 2304),
    "out 1568x768x768": (1568, 768, 768),
    "up 1568x768x3072": (1568, 768, 3072),
    "down 1568x3072x768": (1568, 3072, 768),
    "square 2048^3": (2048, 2048, 2048),
}
KERNELS = ("numpy", "torch", "torch-onednn", "tensorflow", "tensorflow-xla", "jax", "jax-eigen")


def _operands(m, k, n):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((m, k), dtype=np.float32),
            rng.standard_normal((k, n), dtype=np.float32))


# SIMD extensions that decide which GEMM kernels a framework can pick (the tables move with them:
# the same script ran at ~120 GFLOP/s on an AVX2 host and ~200 on an AVX-512 one).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def machine_info(cpuinfo="/proc/cpuinfo"):
    """CPU model, usable cores and SIMD extensions of this machine, recorded beside every table."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "simd": [f for f in SIMD_FLAGS if f in flags]}


def describe_machine(machine):
    """One line for a table's header, or "" for results recorded before the field existed."""
    if not machine:
        return ""
    return (f"machine: {machine['cpu']}, {machine['cores']} cores, "
            f"SIMD {' '.join(machine['simd']) or 'none listed'}")


def set_threads(backend, threads):
    """Intra-op threads of torch or TensorFlow (JAX and numpy use all cores); speed.py uses it too."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def make_kernel(name, a, b):
    """A no-argument function that computes `a @ b` with kernel `name` and waits for it.

    `a` and `b` are float32 numpy arrays; speed.py times its matmul peaks with these calls too.
    """
    if name == "numpy":
        return lambda: a @ b
    if name == "torch":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        return lambda: torch.mm(ta, tb)
    if name == "torch-onednn":
        import torch

        from keras_siglip.backend.torch_ops import _onednn_linear

        linear = _onednn_linear()
        if linear is None:
            raise RuntimeError("this torch build has no oneDNN linear operator")
        # The (n, k) view of b, as keras-siglip passes its (in, out) kernels.
        ta, tb_t = torch.from_numpy(a), torch.from_numpy(b).t()
        return lambda: linear(ta, tb_t, None, "none", [], "")
    if name.startswith("tensorflow"):
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # one tf.function per shape is intended, not retracing
        ta, tb = tf.constant(a), tf.constant(b)
        if name == "tensorflow":
            return lambda: tf.linalg.matmul(ta, tb).numpy()
        fn = tf.function(tf.linalg.matmul, jit_compile=True)
        return lambda: fn(ta, tb).numpy()
    import jax
    import jax.numpy as jnp

    ja, jb = jnp.asarray(a), jnp.asarray(b)
    options = {"xla_cpu_experimental_ynn_fusion_type": ""} if name == "jax-eigen" else {}
    compiled = jax.jit(jnp.matmul).lower(ja, jb).compile(compiler_options=options)
    return lambda: compiled(ja, jb).block_until_ready()


def run(kernels, repeats, warmup, threads, pause):
    for backend in ("torch", "tensorflow"):
        if any(kernel.startswith(backend) for kernel in kernels):
            set_threads(backend, threads)
    calls = {}
    for label, (m, k, n) in SHAPES.items():
        a, b = _operands(m, k, n)
        reference = a.astype(np.float64) @ b.astype(np.float64)
        for kernel in kernels:
            call = calls[label, kernel] = make_kernel(kernel, a, b)
            out = np.asarray(call())
            error = float(np.max(np.abs(out - reference)))
            if error > 1e-2:  # float32 sums of up to 3072 products of N(0, 1) values
                raise RuntimeError(
                    f"{kernel} computed a wrong {label} product (max |diff| {error:.2e})")
    times = {key: [] for key in calls}
    for round_index in range(warmup + repeats):
        shift = round_index % len(kernels)
        order = kernels[shift:] + kernels[:shift]
        for label in SHAPES:
            for kernel in order:
                time.sleep(pause)
                start = time.perf_counter()
                calls[label, kernel]()
                elapsed = time.perf_counter() - start
                if round_index >= warmup:
                    times[label, kernel].append(elapsed)
    return times


def summarise(times, kernels):
    """GFLOP/s per (shape, kernel): median over rounds, and the median per-round ratio to numpy."""
    rows = []
    for label, (m, k, n) in SHAPES.items():
        flops = 2 * m * k * n
        for kernel in kernels:
            ts = times[label, kernel]
            row = {"shape": label, "kernel": kernel, "median_ms": 1e3 * statistics.median(ts),
                   "gflops": flops / statistics.median(ts) / 1e9}
            if "numpy" in kernels:
                row["vs_numpy"] = statistics.median(
                    base / t for base, t in zip(times[label, "numpy"], ts))
            rows.append(row)
    return rows


def print_table(rows, repeats, threads, machine=None):
    print(f"float32 GEMM, {threads} threads, median of {repeats} interleaved rounds")
    if machine:
        print(describe_machine(machine))
    print("| shape | kernel | median ms | GFLOP/s | speed vs numpy (median per-round ratio) |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        ratio = f"{row['vs_numpy']:.2f}x" if "vs_numpy" in row else "-"
        print(f"| {row['shape']} | {row['kernel']} | {row['median_ms']:.1f} | "
              f"{row['gflops']:.1f} | {ratio} |")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="threads per framework (default 2)")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="idle seconds before each call (default 0.2)")
    parser.add_argument("--json", help="write every round's times and the table here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    times = run(args.kernels, args.repeats, args.warmup, args.threads, args.pause)
    rows = summarise(times, args.kernels)
    machine = machine_info()
    print_table(rows, args.repeats, args.threads, machine)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "machine": machine, "rows": rows,
                       "times": {f"{s}|{k}": v for (s, k), v in times.items()}}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
