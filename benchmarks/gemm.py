"""GEMM speed of each framework on the matmul shapes of a B/16 tower at batch 8, float32 or bfloat16.

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

With `--dtype bfloat16` the operands are bfloat16 and each kernel is the one a bfloat16 model
would run: torch's `addmm` and oneDNN linear (AMX where the CPU has it), TensorFlow's graph-mode
matmul (oneDNN), and under XLA the dot keras-siglip runs (`tensorflow-xla`, `jax` and
`jax-eigen`: bfloat16 operands multiplied into a float32 result, `BatchMatMulV3` with a float32
`Tout` on TensorFlow, `preferred_element_type` on JAX, then rounded) and `jax-plain`, the
bfloat16-result dot that `jnp.matmul` gives (2x-3.5x slower on XLA's CPU). These are the
ceilings of each backend's bfloat16 inference.

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
KERNELS = ("numpy", "torch", "torch-onednn", "tensorflow", "tensorflow-xla", "jax", "jax-eigen",
           "jax-plain")
BF16_KERNELS = tuple(k for k in KERNELS if k != "numpy")  # numpy has no bfloat16 GEMM


def _operands(m, k, n, dtype="float32"):
    """Operands as float32 NumPy arrays; for bfloat16 their values are bfloat16-representable."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    if dtype == "bfloat16":
        import ml_dtypes

        a, b = (x.astype(ml_dtypes.bfloat16).astype(np.float32) for x in (a, b))
    return a, b


# SIMD extensions that decide which GEMM kernels a framework can pick (the tables move with them:
# the same script ran at ~120 GFLOP/s on an AVX2 host and ~200 on an AVX-512 one).
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


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


def worker_protocol(backend, threads):
    """Set up a worker process of speed.py or train_step.py; return its `reply(**message)`.

    The coordinator reads one JSON line per reply from the worker's stdout, so the real stdout
    becomes the protocol and anything the libraries print goes to stderr (the worker's log).
    Then the framework's threads are set and Keras is checked to run on `backend`.
    """
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    set_threads(backend, threads)
    import keras

    assert keras.backend.backend() == backend

    def reply(**message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    return reply


def set_threads(backend, threads):
    """Intra-op threads of torch or TensorFlow (JAX and numpy use all cores); speed.py uses it too."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def make_kernel(name, a, b, dtype="float32"):
    """A no-argument function that computes `a @ b` with kernel `name` in `dtype` and waits.

    `a` and `b` are float32 numpy arrays (converted to `dtype` once, here); the call returns the
    product. speed.py times its float32 matmul peaks with these calls too.
    """
    if name == "numpy":
        if dtype != "float32":
            raise ValueError("numpy has no bfloat16 GEMM")
        return lambda: a @ b
    if name.startswith("torch"):
        import torch

        ta, tb = (torch.from_numpy(x).to(getattr(torch, dtype)) for x in (a, b))
        if name == "torch":
            return lambda: torch.mm(ta, tb)
        from keras_siglip.backend.torch_ops import _onednn_linear

        linear = _onednn_linear()
        if linear is None:
            raise RuntimeError("this torch build has no oneDNN linear operator")
        tb_t = tb.t()  # the (n, k) view of b, as keras-siglip passes its (in, out) kernels

        def onednn():
            with torch.inference_mode():
                return linear(ta, tb_t, None, "none", [], "")

        return onednn
    if name.startswith("tensorflow"):
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # one tf.function per shape is intended, not retracing
        ta, tb = (tf.cast(tf.constant(x), dtype) for x in (a, b))
        if name == "tensorflow":
            return lambda: tf.linalg.matmul(ta, tb).numpy()
        if dtype == "float32":
            fn = tf.function(tf.linalg.matmul, jit_compile=True)
        else:  # what keras-siglip's bfloat16 affine runs under XLA (keras_siglip.backend.tf_ops)

            @tf.function(jit_compile=True)
            def fn(x, y):
                return tf.cast(tf.raw_ops.BatchMatMulV3(x=x, y=y, Tout=tf.float32), x.dtype)

        return lambda: fn(ta, tb).numpy()
    import jax
    import jax.numpy as jnp

    ja, jb = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
    options = {"xla_cpu_experimental_ynn_fusion_type": ""} if name == "jax-eigen" else {}
    if dtype == "float32" or name == "jax-plain":
        fn = jnp.matmul
    else:  # what keras-siglip's bfloat16 affine runs (keras_siglip.backend.jax_ops)

        def fn(x, y):
            return jnp.matmul(x, y, preferred_element_type=jnp.float32).astype(x.dtype)

    compiled = jax.jit(fn).lower(ja, jb).compile(compiler_options=options)
    return lambda: compiled(ja, jb).block_until_ready()


def _as_float64(out):
    if hasattr(out, "float"):  # a torch tensor (bfloat16 has no NumPy view)
        out = out.float()
    return np.asarray(out).astype(np.float64)


def run(kernels, repeats, warmup, threads, pause, dtype="float32"):
    for backend in ("torch", "tensorflow"):
        if any(kernel.startswith(backend) for kernel in kernels):
            set_threads(backend, threads)
    calls = {}
    for label, (m, k, n) in SHAPES.items():
        a, b = _operands(m, k, n, dtype)
        reference = a.astype(np.float64) @ b.astype(np.float64)
        # Sums of up to 3072 products of N(0, 1) values (|sum| up to ~250): float32 rounding,
        # or a bfloat16 result's (8 bits).
        limit = 1e-2 if dtype == "float32" else 2.0
        for kernel in kernels:
            call = calls[label, kernel] = make_kernel(kernel, a, b, dtype)
            error = float(np.max(np.abs(_as_float64(call()) - reference)))
            if error > limit:
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
    """GFLOP/s per (shape, kernel): median over rounds, and the median per-round ratio to the
    first kernel (numpy in float32)."""
    rows = []
    for label, (m, k, n) in SHAPES.items():
        flops = 2 * m * k * n
        for kernel in kernels:
            ts = times[label, kernel]
            row = {"shape": label, "kernel": kernel, "median_ms": 1e3 * statistics.median(ts),
                   "gflops": flops / statistics.median(ts) / 1e9}
            row[f"vs_{kernels[0]}"] = statistics.median(
                base / t for base, t in zip(times[label, kernels[0]], ts))
            rows.append(row)
    return rows


def print_table(rows, repeats, threads, machine=None, dtype="float32"):
    print(f"{dtype} GEMM, {threads} threads, median of {repeats} interleaved rounds")
    if machine:
        print(describe_machine(machine))
    first = rows[0]["kernel"] if rows else "numpy"
    print(f"| shape | kernel | median ms | GFLOP/s | speed vs {first} (median per-round ratio) |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        ratio = f"{row[f'vs_{first}']:.2f}x" if f"vs_{first}" in row else "-"
        print(f"| {row['shape']} | {row['kernel']} | {row['median_ms']:.1f} | "
              f"{row['gflops']:.1f} | {ratio} |")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", nargs="+", choices=KERNELS,
                        help="default: all (all but numpy for bfloat16)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="threads per framework (default 2)")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="idle seconds before each call (default 0.2)")
    parser.add_argument("--json", help="write every round's times and the table here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.kernels is None:
        args.kernels = list(KERNELS if args.dtype == "float32" else BF16_KERNELS)
    if args.dtype != "float32" and "numpy" in args.kernels:
        parser.error("numpy has no bfloat16 GEMM; leave it out of --kernels")
    times = run(args.kernels, args.repeats, args.warmup, args.threads, args.pause, args.dtype)
    rows = summarise(times, args.kernels)
    machine = machine_info()
    print_table(rows, args.repeats, args.threads, machine, args.dtype)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "machine": machine, "rows": rows,
                       "times": {f"{s}|{k}": v for (s, k), v in times.items()}}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
