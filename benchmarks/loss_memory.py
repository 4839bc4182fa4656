"""Peak memory and time of the sigmoid loss + gradients versus global batch size (JAX, CPU).

Methods (each measured in a fresh process with 8 simulated CPU devices):
  dense     keras_siglip.losses.sigmoid_loss on one device: B x B logits.
  chunked   the same with chunk_size=C on one device: O(C x B).
  dense_dp  the dense loss under keras.distribution.DataParallel on D devices (what a plain
            model.fit does): XLA shards the logits by rows, O(b x B) per device.
  ring      keras_siglip.distributed.ring_sigmoid_loss on D devices: O(b^2) per device, b = B / D.
  bidir     its bidirectional variant.

Memory, two honest numbers:
  XLA MiB   per-device peak from the compiled executable's memory analysis (arguments + outputs +
            temporaries - aliased); for an SPMD program this is one device's share.
  RSS MiB   peak resident memory of the whole process (all simulated devices, plus the JAX runtime
            and the inputs), from getrusage, and its growth over the resident memory just before
            the inputs were created (after compiling). Shown for runs that were executed.
A configuration whose XLA estimate times its device count exceeds --max-run-mib is compiled but not
run (time and RSS "-").

Usage:
  python benchmarks/loss_memory.py                          # default sizes, a few minutes
  python benchmarks/loss_memory.py --batch-sizes 65536 --methods ring --reps 1
  python benchmarks/loss_memory.py --compile-only --batch-sizes 4096 16384 65536   # XLA only
  python benchmarks/loss_memory.py --plot loss_memory.png --json loss_memory.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("dense", "chunked", "dense_dp", "ring", "bidir")
MIB = 2**20


def _child(args):
    """Measure one (method, batch) in this process; prints one JSON line."""
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, ROOT)
    import resource

    import jax
    import jax.numpy as jnp
    import keras
    import numpy as np

    from keras_siglip.distributed import ring_sigmoid_loss
    from keras_siglip.losses import sigmoid_loss

    def current_rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB

    method, batch, width = args.method, args.batch, args.width
    sharded = method in ("dense_dp", "ring", "bidir")
    num_devices = args.devices if sharded else 1
    if sharded:
        dist = keras.distribution.DataParallel(devices=jax.devices()[:num_devices])
        keras.distribution.set_distribution(dist)
        emb_sharding = dist.get_data_layout((batch, width)).backend_layout
    else:
        emb_sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    scalar_sharding = jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.array(jax.devices()[:num_devices]), ("d",)), jax.sharding.PartitionSpec()
    )

    if method in ("ring", "bidir"):

        def loss_fn(x, y, t, b):
            return ring_sigmoid_loss(x, y, t, b, variant=method)

    else:
        chunk = args.chunk_size if method == "chunked" else None

        def loss_fn(x, y, t, b):
            return sigmoid_loss(x, y, t, b, chunk_size=chunk)

    step = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3)))

    @jax.jit
    def make_inputs(key):
        kx, ky = jax.random.split(key)
        x = jax.random.normal(kx, (batch, width), jnp.float32)
        y = x + 0.5 * jax.random.normal(ky, (batch, width), jnp.float32)
        x = x / jnp.linalg.norm(x, axis=1, keepdims=True)
        y = y / jnp.linalg.norm(y, axis=1, keepdims=True)
        return x, y

    emb = jax.ShapeDtypeStruct((batch, width), jnp.float32, sharding=emb_sharding)
    scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=scalar_sharding)
    t0 = time.perf_counter()
    compiled = step.lower(emb, emb, scalar, scalar).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    xla_bytes = (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        + mem.temp_size_in_bytes
        - mem.alias_size_in_bytes
    )
    result = dict(
        method=method,
        batch=batch,
        width=width,
        devices=num_devices,
        chunk_size=args.chunk_size if method == "chunked" else None,
        xla_mib=xla_bytes / MIB,
        xla_temp_mib=mem.temp_size_in_bytes / MIB,
        compile_s=compile_s,
        ms=None,
        rss_mib=None,
        rss_start_mib=current_rss_mib(),
        loss=None,
    )
    if not args.compile_only and xla_bytes * num_devices <= args.max_run_mib * MIB:
        x, y = jax.device_put(make_inputs(jax.random.key(0)), emb_sharding)
        t = jax.device_put(jnp.float32(np.log(10.0)), scalar_sharding)
        b = jax.device_put(jnp.float32(-10.0), scalar_sharding)
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            loss, _ = jax.block_until_ready(compiled(x, y, t, b))
            times.append(time.perf_counter() - t0)
        result.update(
            ms=float(np.median(times)) * 1e3,
            rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            loss=float(loss),
        )
    print("RESULT " + json.dumps(result), flush=True)


def _measure(args, method, batch):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--method",
        method,
        "--batch",
        str(batch),
        "--width",
        str(args.width),
        "--devices",
        str(args.devices),
        "--chunk-size",
        str(args.chunk_size),
        "--reps",
        str(args.reps),
        "--max-run-mib",
        str(args.max_run_mib),
    ] + (["--compile-only"] if args.compile_only else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = proc.stderr.strip().splitlines()[-3:]
    return dict(method=method, batch=batch, error=" | ".join(tail) or f"exit {proc.returncode}")


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _table(rows, args):
    lines = [
        f"width {args.width}, {args.devices} simulated CPU devices for dense_dp/ring/bidir, "
        f"chunk_size {args.chunk_size}, median of {args.reps} run(s)",
        "",
        "| B | method | devices | XLA MiB / device | peak RSS MiB (process) | RSS growth MiB | ms (loss + grads) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['batch']} | {r['method']} | | error: {r['error']} | | | |")
            continue
        growth = None if r["rss_mib"] is None else r["rss_mib"] - r["rss_start_mib"]
        lines.append(
            f"| {r['batch']} | {r['method']} | {r['devices']} | {r['xla_mib']:.1f} | "
            f"{_fmt(r['rss_mib'], '.0f')} | {_fmt(growth, '.0f')} | {_fmt(r['ms'], '.0f')} |"
        )
    return "\n".join(lines)


def _plot(rows, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    timed = any(r["ms"] is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if timed else 1, figsize=(11 if timed else 6, 4.2), squeeze=False)
    ax_mem = axes[0, 0]
    for method in METHODS:
        pts = sorted((r["batch"], r) for r in rows if r["method"] == method)
        if not pts:
            continue
        ax_mem.loglog([b for b, _ in pts], [r["xla_mib"] for _, r in pts], "o-", label=method)
        if timed:
            times = [(b, r["ms"]) for b, r in pts if r["ms"] is not None]
            if times:
                axes[0, 1].loglog(*zip(*times), "o-", label=method)
    ring = sorted((r["batch"], r["xla_mib"]) for r in rows if r["method"] == "ring")
    if len(ring) > 1:  # slope 2 through the largest ring point: b^2 = (B / D)^2 at fixed D
        (lo, _), (hi, top) = ring[0], ring[-1]
        ax_mem.loglog([lo, hi], [top * (lo / hi) ** 2, top], "k:", label="slope 2 (b²)")
    ax_mem.set(xlabel="global batch B", ylabel="per-device peak MiB (XLA estimate)", title="memory")
    if timed:
        axes[0, 1].set(xlabel="global batch B", ylabel="ms, loss + grads (whole machine)", title="time")
    for ax in axes[0]:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"SigLIP sigmoid loss + grads, width {args.width}; D = {args.devices} for dense_dp/ring/bidir")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--max-run-mib", type=float, default=16384, help="compile only above this total estimate"
    )
    parser.add_argument("--compile-only", action="store_true", help="XLA estimates only, run nothing")
    parser.add_argument("--plot", help="write a log-log plot to this PNG")
    parser.add_argument("--json", help="write the raw results to this JSON file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args)

    rows = []
    for batch in args.batch_sizes:
        for method in args.methods:
            if method in ("dense_dp", "ring", "bidir") and batch % args.devices:
                continue
            row = _measure(args, method, batch)
            rows.append(row)
            print(_table([row], args).splitlines()[-1], file=sys.stderr, flush=True)
    print(_table(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.plot:
        _plot(rows, args.plot, args)


if __name__ == "__main__":
    main()
