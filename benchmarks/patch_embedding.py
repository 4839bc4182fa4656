"""Patch embedding: the strided convolution against one matmul of flattened patches, per backend.

`keras_siglip.layers.PatchEmbedding` computes its `p x p`, stride-`p` convolution as a matmul of the
flattened patches on the backends where that is faster (JAX and torch) and as a convolution on the
others. This script is the measurement behind that choice: both forms of the same layer (same
weights), compiled as the library compiles them (JAX: `jax.jit`; TensorFlow: `tf.function` with XLA;
torch: eager ATen calls), interleaved over the rounds, at 224x224 with 16x16 patches.

Usage:
  python benchmarks/patch_embedding.py                  # all three backends, batch 1 and 8
  python benchmarks/patch_embedding.py --repeats 41 --batches 8
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("jax", "tensorflow", "torch")


def worker(backend, batches, repeats, threads):
    os.environ["KERAS_BACKEND"] = backend
    import numpy as np
    import keras

    from keras_siglip.layers import PatchEmbedding

    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    layer = PatchEmbedding(patch_size=16, hidden_dim=768)
    layer.build((None, 224, 224, 3))

    def conv(x):
        return layer.conv(x)

    def matmul(x):
        return layer.patch_matmul(x)

    forms = {"conv": conv, "matmul": matmul}
    if backend == "jax":
        import jax

        forms = {name: jax.jit(f) for name, f in forms.items()}
    elif backend == "tensorflow":
        import tensorflow as tf

        forms = {name: tf.function(f, jit_compile=True) for name, f in forms.items()}
    for batch in batches:
        x = keras.ops.convert_to_tensor(
            np.random.default_rng(0).uniform(-1, 1, (batch, 224, 224, 3)).astype("float32"))
        outputs = {name: keras.ops.convert_to_numpy(f(x)) for name, f in forms.items()}
        diff = float(np.abs(outputs["conv"] - outputs["matmul"]).max())
        times = {name: [] for name in forms}
        for r in range(repeats):
            order = list(forms.items())
            for name, f in order[r % 2:] + order[: r % 2]:
                start = time.perf_counter()
                keras.ops.convert_to_numpy(f(x))
                times[name].append(time.perf_counter() - start)
        conv_ms, matmul_ms = (statistics.median(times[n]) * 1e3 for n in ("conv", "matmul"))
        speedup = statistics.median(a / b for a, b in zip(times["conv"], times["matmul"]))
        print(f"| {backend} | {batch} | {conv_ms:.1f} | {matmul_ms:.1f} | {speedup:.2f}x "
              f"| {diff:.1e} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.batches, args.repeats, args.threads)
    print("| backend | batch | conv ms | patch matmul ms | conv / matmul (paired median) "
          "| max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for backend in args.backends:
        cmd = [sys.executable, __file__, "--worker", backend, "--repeats", str(args.repeats),
               "--threads", str(args.threads), "--batches", *map(str, args.batches)]
        env = dict(os.environ, KERAS_BACKEND=backend)
        subprocess.run(cmd, check=True, env=env, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
