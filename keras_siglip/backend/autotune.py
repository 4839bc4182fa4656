"""Kernel choices decided by timing on this machine, once per process and shape.

Where a backend has two kernels for the same math, which one is faster depends on the CPU (an
AMD or an Intel core, AVX-512, AMX for bfloat16) and on the shapes, and no CPU flag tells it
reliably: oneDNN's float32 linear beat MKL's `addmm` by 10-17% on an AMD EPYC host and lost 28%
to it on a Sapphire Rapids one. So each choice is made by `choose`: it runs every candidate on
the shapes at hand, a few interleaved repetitions after a warm-up, and keeps the fastest. The
first candidate is the plain one (what Keras would run); another is taken only when it is faster
by more than `MARGIN`, so timing noise never trades the plain kernel for an equal one. The answer
is cached for the process; `kernel_choices()` lists every decision with its timings.

An environment variable overrides each kind of choice (e.g. `KERAS_SIGLIP_TORCH_CPU_GEMM=addmm`);
"auto" or unset means timing.
"""

import logging
import math
import os
import threading
import time

MARGIN = 0.03  # another kernel must be >3% faster than the plain one to be chosen
ROUNDS = 3

_LOG = logging.getLogger("keras_siglip.backend")
_LOCK = threading.Lock()
_DECISIONS = {}  # (kind, key) -> {"choice": name, "seconds": {name: best time}, "by": ...}


def override(env, names):
    """The kernel named by `$env`, or None for "auto"/unset; a ValueError for an unknown name."""
    value = os.environ.get(env, "auto").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in names:
        raise ValueError(
            f"{env}={os.environ[env]!r} is not a known kernel; set it to one of "
            f"{', '.join(names)} or 'auto' (timed on this machine), or unset it."
        )
    return value


def choose(kind, key, candidates, *, env=None):
    """The name of the fastest of `candidates` for `key`, timed once per process.

    Args:
        kind: what is chosen, e.g. `"torch_cpu_gemm"`; with `key` it names the decision.
        key: hashable description of the shapes and dtype, e.g. `(m, k, n, "float32")`.
        candidates: dict `{name: make}`, the plain kernel first. `make()` sets the kernel up
            (compiles it, allocates operands) and returns a zero-argument callable that runs it
            once and waits for its result. A candidate whose `make` or first run raises is left
            out, and the decision records why.
        env: optional environment variable that overrides the choice (see `override`).

    Returns:
        A key of `candidates`.
    """
    names = tuple(candidates)
    if env is not None:
        forced = override(env, names)
        if forced is not None:
            return forced
    with _LOCK:
        decided = _DECISIONS.get((kind, key))
        if decided is not None:
            return decided["choice"]
        runs, failed = {}, {}
        for name, make in candidates.items():
            try:
                run = make()
                run()  # warm-up: compilation, weight packing, first-touch of the memory
            except Exception as error:  # recorded in the decision, see kernel_choices()
                failed[name] = f"{type(error).__name__}: {error}"
                continue
            runs[name] = run
        if not runs:
            raise RuntimeError(f"No {kind} kernel ran for {key}: {failed}")
        best = dict.fromkeys(runs, math.inf)
        for _ in range(ROUNDS):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - start)
        plain = next(iter(runs))
        choice = min(best, key=best.get)
        if best[choice] > best[plain] * (1 - MARGIN):
            choice = plain
        _DECISIONS[kind, key] = {"choice": choice, "seconds": best, "failed": failed}
        _LOG.info("%s %s: %s (best times %s)", kind, key, choice, best)
        return choice


def cached(kind, key):
    """The decision already made for `(kind, key)`, or None."""
    decided = _DECISIONS.get((kind, key))
    return None if decided is None else decided["choice"]


def kernel_choices():
    """Every timed decision of this process: a list of dicts with `kind`, `key`, `choice`,
    `seconds` (the best time of each candidate) and `failed` (candidates that did not run)."""
    with _LOCK:
        return [
            {"kind": kind, "key": list(key) if isinstance(key, tuple) else key, **decision}
            for (kind, key), decision in _DECISIONS.items()
        ]


def forget():
    """Drop every cached decision (tests; a later call times again)."""
    with _LOCK:
        _DECISIONS.clear()
