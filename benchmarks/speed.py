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

Cases (`--cases`), float32, random weights:
  vision_b1, vision_b8, vision_b32   the B/16@224 image tower (196 tokens), `encode_images` at batch 1/8/32
  two_tower                          the full B/16@224 model: 8 images + 8 texts of 64 tokens -> logits
  fixed_256                          the fixed-resolution B/16 tower at 256x256 (256 tokens), batch 8
  naflex_256                         the SigLIP 2 NaFlex B/16 tower, 256-patch budget, batch 8 of mixed
                                     aspect ratios (1:1 ... 1:2; each grid fills the budget as NaFlex does)
  naflex_1024                        the same with a 1024-patch budget, batch 2

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
    block prints the speed goals of issue 7 with these numbers and a verdict for each.
  * Matmul peak: each framework's float32 matmul (2048^3 and the MLP's 1568x768x3072), measured in
    every round beside the models; the machine's peak is the best of numpy, torch (its `addmm`,
    and oneDNN's linear where torch has it), JAX and TensorFlow. GFLOP/s count the matmul FLOPs
    the case must do (2mnk for every dense layer, convolution and attention product, padded tokens
    included); elementwise work is not counted.

Usage:
  python benchmarks/speed.py                                  # all cases (~20 min on 2 cores)
  python benchmarks/speed.py --cases vision_b8 two_tower --repeats 3
  python benchmarks/speed.py --impls keras-jax transformers --json speed.json --plot speed.png
  python benchmarks/speed.py --from-json benchmarks/speed.json      # the recorded run's table
  python benchmarks/speed.py --from-json run1.json run2.json run3.json   # each run, then across runs
"""

import argparse
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# This folder is on sys.path when a script here runs.
from gemm import describe_machine, machine_info, make_kernel, set_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "tensorflow", "torch")
IMPLS = (
    "keras-jax",
    "keras-tensorflow",
    "keras-torch",
    "transformers",
    "kerashub-jax",
    "kerashub-tensorflow",
    "kerashub-torch",
)
B16 = dict(patch=16, width=768, depth=12, mlp=3072, heads=12)
TEXT = dict(vocab=32000, length=64, width=768, depth=12, mlp=3072, heads=12)
CASES = {
    "vision_b1": dict(kind="vision", batch=1, image=224),
    "vision_b8": dict(kind="vision", batch=8, image=224),
    "vision_b32": dict(kind="vision", batch=32, image=224),
    "two_tower": dict(kind="two_tower", batch=8, image=224),
    "fixed_256": dict(kind="vision", batch=8, image=256),
    "naflex_256": dict(kind="naflex", batch=8, budget=256),
    "naflex_1024": dict(kind="naflex", batch=2, budget=1024),
}
# Image sizes (height, width) whose NaFlex grids make the mixed batches.
NAFLEX_IMAGES = [(512, 512), (480, 640), (640, 480), (360, 640), (640, 360), (400, 800),
                 (800, 400), (427, 640)]
MATMUL_SHAPES = ((2048, 2048, 2048), (1568, 768, 3072))


# ----------------------------------------------------------------------------------------
# FLOP counts (matmul FLOPs only: 2 * m * n * k per product).


def _encoder_flops(batch, tokens, width, depth, mlp):
    projections = 2 * batch * tokens * (4 * width * width + 2 * width * mlp)
    attention = 2 * 2 * batch * tokens * tokens * width  # q k^T and weights @ v
    return depth * (projections + attention)


def _map_head_flops(batch, tokens, width, mlp):
    kv = 2 * 2 * batch * tokens * width * width
    probe = 2 * batch * (2 * width * width + 2 * tokens * width + 2 * width * mlp)  # q, out, attn, MLP
    return kv + probe + 2 * width * width  # + the probe's query projection


def _vision_flops(batch, tokens):
    w, p = B16["width"], B16["patch"]
    return (
        2 * batch * tokens * (p * p * 3) * w
        + _encoder_flops(batch, tokens, w, B16["depth"], B16["mlp"])
        + _map_head_flops(batch, tokens, w, B16["mlp"])
    )


def case_flops(case):
    spec = CASES[case]
    batch = spec["batch"]
    if spec["kind"] == "naflex":
        return _vision_flops(batch, spec["budget"])
    tokens = (spec["image"] // B16["patch"]) ** 2
    flops = _vision_flops(batch, tokens)
    if spec["kind"] == "two_tower":
        t = TEXT
        flops += _encoder_flops(batch, t["length"], t["width"], t["depth"], t["mlp"])
        flops += 2 * batch * t["width"] * t["width"]  # text head
        flops += 2 * batch * batch * t["width"]  # logits
    return flops


# ----------------------------------------------------------------------------------------
# Worker side: one process per Keras backend.


def _case_inputs(case):
    """Numpy inputs of a case, the same in every worker."""
    spec = CASES[case]
    rng = np.random.default_rng(0)
    batch = spec["batch"]
    if spec["kind"] == "naflex":
        from keras_siglip.preprocessing import naflex_size
        from keras_siglip.testing import random_naflex_inputs

        p, budget = B16["patch"], spec["budget"]
        grids = []
        for h, w in itertools.islice(itertools.cycle(NAFLEX_IMAGES), batch):
            th, tw = naflex_size(h, w, p, budget)
            grids.append((th // p, tw // p))
        return random_naflex_inputs(grids, budget, patch_size=p, seed=0)
    size = spec["image"]
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    if spec["kind"] == "vision":
        return {"images": images}
    token_ids = rng.integers(1, TEXT["vocab"], (batch, TEXT["length"])).astype(np.int32)
    return {"images": images, "token_ids": token_ids}


def _model_key(case):
    """Which of the models built once serves a case: "base" (B/16@224), "fixed_256" or "naflex"."""
    spec = CASES[case]
    if spec["kind"] == "naflex":
        return "naflex"
    return "fixed_256" if spec["image"] == 256 else "base"


class KerasSigLIP:
    """keras-siglip on the worker's backend, weights from `keras_siglip.testing.randomize_weights`.

    `Transformers` copies these weights, so both compute the same function.
    """

    def __init__(self):
        from keras_siglip import SigLIP
        from keras_siglip.models import SigLIPNaFlexVisionEncoder, SigLIPVisionEncoder
        from keras_siglip.testing import randomize_weights

        vision = dict(patch_size=B16["patch"], width=B16["width"], depth=B16["depth"],
                      mlp_dim=B16["mlp"], num_heads=B16["heads"])
        self.base = SigLIP.from_preset("siglip_base_patch16_224", load_weights=False)
        randomize_weights(self.base, seed=0)
        # The other image towers share the base text tower (only their images are timed).
        fixed = SigLIPVisionEncoder(image_size=256, **vision, name="vision_encoder")
        naflex = SigLIPNaFlexVisionEncoder(**vision, position_grid_size=16, name="vision_encoder")
        self.models = {"base": self.base}
        for key, tower, seed in (("fixed_256", fixed, 1), ("naflex", naflex, 2)):
            randomize_weights(tower, seed=seed)
            self.models[key] = SigLIP(tower, self.base.text_encoder, name=f"siglip_{key}")

    def runner(self, case, inputs):
        spec = CASES[case]
        if spec["kind"] == "two_tower":
            model = self.base

            def run():
                out = model.predict_on_batch(inputs)
                return np.concatenate([np.asarray(out["image_embeddings"]),
                                       np.asarray(out["text_embeddings"])])

            return run
        model = self.models[_model_key(case)]
        images = inputs if spec["kind"] == "naflex" else inputs["images"]
        return lambda: np.asarray(model.encode_images(images))


class Transformers:
    """transformers models holding the same weights as `KerasSigLIP` (torch worker only)."""

    def __init__(self, keras_impl):
        import torch
        import transformers

        from keras_siglip.convert.transformers import checkpoint_state_dict, transformers_config

        self.torch = torch
        self.models = {}
        for key, cls in (("base", transformers.SiglipModel),
                         ("fixed_256", transformers.SiglipVisionModel),
                         ("naflex", transformers.Siglip2VisionModel)):
            keras_model = keras_impl.models[key]
            target = keras_model if key == "base" else keras_model.vision_encoder
            state = checkpoint_state_dict(target)
            config = cls.config_class.from_dict(transformers_config(target))
            model = cls._from_config(config, attn_implementation="sdpa").eval()
            missing, unexpected = model.load_state_dict(
                {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
            )
            if unexpected or [m for m in missing if "position_ids" not in m]:
                raise RuntimeError(f"transformers {key}: missing {missing}, unexpected {unexpected}")
            self.models[key] = model

    def runner(self, case, inputs):
        torch, spec = self.torch, CASES[case]
        if spec["kind"] == "naflex":
            model = self.models["naflex"]
            patches = torch.from_numpy(inputs["patches"])
            mask = torch.from_numpy(inputs["patch_mask"])
            shapes = torch.from_numpy(inputs["spatial_shapes"]).long()

            def run():
                with torch.no_grad():
                    out = model(pixel_values=patches, pixel_attention_mask=mask,
                                spatial_shapes=shapes)
                return out.pooler_output.numpy()

            return run
        pixels = torch.from_numpy(inputs["images"].transpose(0, 3, 1, 2).copy())
        if spec["kind"] == "two_tower":
            model = self.models["base"]
            ids = torch.from_numpy(inputs["token_ids"]).long()

            def run():
                with torch.no_grad():
                    out = model(input_ids=ids, pixel_values=pixels)
                return torch.cat([out.image_embeds, out.text_embeds]).numpy()

            return run
        model = self.models[_model_key(case)]
        model = model.vision_model if _model_key(case) == "base" else model

        def run():
            with torch.no_grad():
                return model(pixel_values=pixels).pooler_output.numpy()

        return run


class KerasHub:
    """KerasHub's SigLIPBackbone with its own random initialisation."""

    def __init__(self):
        import keras_hub

        models = keras_hub.models
        vision = models.SigLIPVisionEncoder(
            patch_size=B16["patch"], hidden_dim=B16["width"], num_layers=B16["depth"],
            num_heads=B16["heads"], intermediate_dim=B16["mlp"], image_shape=(224, 224, 3),
        )
        text = models.SigLIPTextEncoder(
            vocabulary_size=TEXT["vocab"], embedding_dim=TEXT["width"], hidden_dim=TEXT["width"],
            num_layers=TEXT["depth"], num_heads=TEXT["heads"], intermediate_dim=TEXT["mlp"],
            max_sequence_length=TEXT["length"],
        )
        self.backbone = models.SigLIPBackbone(vision, text)
        self.vision = vision

    def runner(self, case, inputs):
        spec = CASES[case]
        if spec["kind"] == "naflex" or spec["image"] != 224:
            return None  # KerasHub has no NaFlex tower; its towers are built for one size
        if spec["kind"] == "two_tower":
            backbone = self.backbone
            return lambda: np.asarray(backbone.predict_on_batch(inputs)["vision_logits"])
        images = inputs["images"]
        return lambda: np.asarray(self.vision.predict_on_batch(images))


def _matmul_kernels(backend):
    """The `gemm.make_kernel` names whose matmul peak a `backend` worker measures: the framework's
    matmul, and on torch also oneDNN's linear where torch has it (keras-siglip's float32 inference
    kernel on AVX-512 CPUs, `keras_siglip.layers.linear.torch_cpu_gemm`), so that the machine's
    peak is the fastest GEMM any of them reaches."""
    if backend != "torch":
        return [backend]
    from keras_siglip.layers.linear import available_torch_cpu_gemms

    return ["torch"] + (["torch-onednn"] if "onednn" in available_torch_cpu_gemms() else [])


def _matmul_timer(kernels):
    """A function measuring each kernel's best float32 matmul rate (GFLOP/s) over `MATMUL_SHAPES`.

    The calls are `gemm.make_kernel`'s (TensorFlow eager), on all-ones operands.
    """
    calls = {
        (kernel, (m, k, n)): make_kernel(
            kernel, np.ones((m, k), np.float32), np.ones((k, n), np.float32))
        for kernel in kernels
        for m, k, n in MATMUL_SHAPES
    }

    def measure(reps=5):
        best = dict.fromkeys(kernels, 0.0)
        for (kernel, (m, k, n)), call in calls.items():
            call()
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
            best[kernel] = max(best[kernel], 2 * m * k * n / statistics.median(times) / 1e9)
        return best

    return measure


def _own_kernel(impl, info):
    """The matmul kernel an implementation runs, for its "% own peak": transformers runs torch's
    `addmm`; keras-torch the kernel its worker reported (`torch_cpu_gemm`)."""
    if impl == "transformers":
        return "torch"
    backend = _impl_backend(impl)
    if backend == "torch" and info.get("torch", {}).get("torch_cpu_gemm") == "onednn":
        return "torch-onednn"
    return backend


def worker(backend, impls, cases, out_dir, threads):
    """Serve `{"op": ...}` requests from the coordinator, one JSON line per reply."""
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything the libraries print goes to the log, not into the protocol
    sys.path.insert(0, ROOT)
    set_threads(backend, threads)
    import keras

    assert keras.backend.backend() == backend

    def reply(**message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    built, runners = {}, {}
    try:
        keras_impl = KerasSigLIP()
        if f"keras-{backend}" in impls:
            built[f"keras-{backend}"] = keras_impl
        if "transformers" in impls:
            built["transformers"] = Transformers(keras_impl)
        if f"kerashub-{backend}" in impls:
            built[f"kerashub-{backend}"] = KerasHub()
        for case in cases:
            inputs = _case_inputs(case)
            for impl, obj in built.items():
                run = obj.runner(case, inputs)
                if run is not None:
                    runners[impl, case] = run
        matmul = _matmul_timer(_matmul_kernels(backend))
        info = {"keras": keras.__version__}
        if backend == "torch":
            from keras_siglip.layers.linear import torch_cpu_gemm

            info["torch_cpu_gemm"] = torch_cpu_gemm()
            if "transformers" in built:
                import transformers

                info["transformers"] = transformers.__version__
        reply(ready=sorted(f"{i}|{c}" for i, c in runners), info=info)
    except Exception as error:  # reported by the coordinator with the log's tail
        reply(error=f"{type(error).__name__}: {error}")
        raise

    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        if request["op"] == "matmul":
            reply(gflops=matmul())
            continue
        impl, case = request["impl"], request["case"]
        start = time.perf_counter()
        output = runners[impl, case]()
        seconds = time.perf_counter() - start
        path = os.path.join(out_dir, f"{impl}__{case}.npy")
        np.save(path, output)
        reply(seconds=seconds, output=path)


# ----------------------------------------------------------------------------------------
# Coordinator side.


class Worker:
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


def _impl_backend(impl):
    return "torch" if impl == "transformers" else impl.split("-", 1)[1]


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
    finally:
        for w in workers.values():
            w.close()
    return _summarise(args, impls, times, outputs, peaks, info)


def _summarise(args, impls, times, outputs, peaks, info):
    peak_by_framework = {name: statistics.median(v) for name, v in peaks.items() if v}
    machine_peak = max(peak_by_framework.values())
    rows = []
    for (case, impl), values in times.items():
        median = statistics.median(values)
        flops = case_flops(case)
        batch = CASES[case]["batch"]
        row = dict(case=case, impl=impl, batch=batch, median_s=median,
                   min_s=min(values), max_s=max(values), repeats=len(values),
                   times_s=values, per_s=batch / median, gflops=flops / median / 1e9)
        row["of_machine_peak"] = row["gflops"] / machine_peak
        own = peak_by_framework.get(_own_kernel(impl, info))
        row["of_framework_peak"] = row["gflops"] / own if own else None
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
    return dict(rows=rows, matmul_gflops=peak_by_framework, machine_peak_gflops=machine_peak,
                naflex_over_fixed=naflex_over_fixed, versions=info, threads=args.threads,
                repeats=args.repeats, warmup=args.warmup, machine=machine_info())


def _paired_ratio(numerators, denominators):
    """Median over rounds of `numerator / denominator` from the same round.

    The two calls of a round run seconds apart, so the machine's slow drift in speed (±20% over
    minutes on a shared host) cancels in each ratio; a ratio of medians would mix rounds.
    """
    return statistics.median(_round_ratios(numerators, denominators))


def _round_ratios(numerators, denominators):
    """`numerator / denominator` per round, for the median and its interval."""
    return [a / b for a, b in zip(numerators, denominators)]


def _median_interval(values, level=0.95):
    """Distribution-free interval for the median of `values`, from their order statistics.

    With n independent values, [x_(j+1), x_(n-j)] (sorted, 1-based) holds the true median with
    probability 1 - 2 P(Binomial(n, 1/2) <= j). Takes the narrowest such interval whose coverage
    is at least `level`; with too few values for that (n <= 5 at 95%) it is [min, max] and its
    coverage is lower. Returns (low, high, coverage).
    """
    xs = sorted(values)
    n = len(xs)

    def coverage(j):
        return 1 - 2 * sum(math.comb(n, i) for i in range(j + 1)) / 2**n

    j = 0
    while j + 1 < n / 2 and coverage(j + 1) >= level:
        j += 1
    return xs[j], xs[n - 1 - j], coverage(j)


def _round_times(result):
    """`(case, impl) -> per-round seconds` of a result's rows that recorded them."""
    return {(r["case"], r["impl"]): r["times_s"] for r in result["rows"] if r.get("times_s")}


def add_intervals(result):
    """Adds the median interval of every per-round ratio in `result` (also to older JSON files)."""
    times = _round_times(result)
    for row in result["rows"]:
        reference = times.get((row["case"], "transformers"))
        mine = times.get((row["case"], row["impl"]))
        row["vs_transformers_interval"] = None
        if reference and mine and row["impl"] != "transformers":
            row["vs_transformers_interval"] = _median_interval(_round_ratios(reference, mine))
    result["naflex_over_fixed_interval"] = {
        impl: _median_interval(_round_ratios(times["naflex_256", impl], times["fixed_256", impl]))
        for impl in result.get("naflex_over_fixed", {})
        if ("naflex_256", impl) in times and ("fixed_256", impl) in times
    }
    return result


def _fmt(value, spec):
    if value is None:
        return "-"
    return format(value, spec) + ("x" if spec == ".2f" else "")


def _fmt_ratio(value, interval):
    """`1.09x [1.03, 1.12]`: a median ratio and its interval."""
    if value is None:
        return "-"
    if not interval:
        return f"{value:.2f}x"
    return f"{value:.2f}x [{interval[0]:.2f}, {interval[1]:.2f}]"


def print_table(result):
    peaks = result["matmul_gflops"]
    if result.get("machine"):
        print("\n" + describe_machine(result["machine"]), end="")
    print("\nfloat32 matmul peak (GFLOP/s, median over rounds): "
          + ", ".join(f"{k} {v:.1f}" for k, v in peaks.items())
          + f"; machine peak {result['machine_peak_gflops']:.1f}")
    header = ("| case | implementation | batch | median ms | per s | GFLOP/s | % machine peak "
              "| % own peak | vs transformers [interval] | max abs diff vs transformers |")
    print(header)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["rows"]:
        print(f"| {r['case']} | {r['impl']} | {r['batch']} | {r['median_s'] * 1e3:.0f} "
              f"| {r['per_s']:.2f} | {r['gflops']:.1f} | {100 * r['of_machine_peak']:.0f}% "
              f"| {_fmt(r['of_framework_peak'] and 100 * r['of_framework_peak'], '.0f')}% "
              f"| {_fmt_ratio(r['vs_transformers'], r.get('vs_transformers_interval'))} "
              f"| {_fmt(r['max_abs_diff'], '.1e')} |")
    coverages = {round(100 * r["vs_transformers_interval"][2]) for r in result["rows"]
                 if r.get("vs_transformers_interval")}
    if coverages:
        coverage = "/".join(map(str, sorted(coverages)))
        print(f"\n[low, high]: distribution-free interval for the median of the per-round ratios "
              f"(order statistics; covers it with probability {coverage}% over "
              f"{result['repeats']} rounds).")


def print_naflex_ratio(result):
    """NaFlex at a 256-patch budget against the fixed tower at 256 tokens, per implementation."""
    ratios = result.get("naflex_over_fixed")
    if ratios:
        intervals = result.get("naflex_over_fixed_interval", {})
        print("\nNaFlex@256 time / fixed@256 time (median of per-round ratios): " + ", ".join(
            f"{impl} {_fmt_ratio(ratio, intervals.get(impl))}" for impl, ratio in ratios.items()))


def goal_target(case, impl):
    """The speed ratio over transformers that issue 7 asks of `impl` on `case`, or None.

    keras-jax: 1.15x on the B/16@224 tower; every keras backend: not slower (1.0x) on the tower
    and on the two-tower forward.
    """
    if not impl.startswith("keras-") or case not in CASES:
        return None
    spec = CASES[case]
    if spec["kind"] == "vision" and spec["image"] == 224:
        return 1.15 if impl == "keras-jax" else 1.0
    return 1.0 if spec["kind"] == "two_tower" else None


def print_goals(result):
    """The speed goals of issue 7, one line each: the median ratio, its interval and a verdict."""
    rows = {(r["case"], r["impl"]): r for r in result["rows"]}
    lines = []

    def ratio_line(case, impl):
        row = rows.get((case, impl))
        target = goal_target(case, impl)
        if not row or row.get("vs_transformers") is None or target is None:
            return
        median, interval = row["vs_transformers"], row.get("vs_transformers_interval")
        if median >= target:
            verdict = "met"
        elif target == 1.0 and interval and interval[1] >= 1.0:
            verdict = "not shown slower: below 1.00x, but the interval includes 1.00x"
        else:
            verdict = "NOT met"
        what = "not slower than" if target == 1.0 else f">= {target:.2f}x"
        lines.append(f"{impl} {case} {what} transformers: "
                     f"{_fmt_ratio(median, interval)} -> {verdict}")

    vision_cases = [c for c in CASES if CASES[c]["kind"] == "vision" and CASES[c]["image"] == 224]
    for case in vision_cases:
        ratio_line(case, "keras-jax")
        row = rows.get((case, "keras-jax"))
        if row:
            lines.append(f"keras-jax {case} share of the machine's matmul peak (aim 85%): "
                         f"{100 * row['of_machine_peak']:.0f}%")
    for impl in ("keras-tensorflow", "keras-torch"):
        for case in vision_cases:
            ratio_line(case, impl)
    for impl in ("keras-jax", "keras-tensorflow", "keras-torch"):
        ratio_line("two_tower", impl)
    intervals = result.get("naflex_over_fixed_interval", {})
    for impl, ratio in result.get("naflex_over_fixed", {}).items():
        if impl.startswith("keras-"):
            verdict = "met" if ratio <= 1.1 else "NOT met"
            lines.append(f"{impl} NaFlex@256 / fixed@256 <= 1.10x: "
                         f"{_fmt_ratio(ratio, intervals.get(impl))} -> {verdict}")
    if lines:
        print("\nGoals of issue 7 (median of per-round ratios [interval]):")
        for line in lines:
            print("  " + line)


def pool_runs(results):
    """Each ratio to transformers across several recorded runs of the same cases.

    For every (case, implementation) timed beside transformers in at least one run: each run's
    median of per-round ratios, how many runs reach the goal of issue 7, the median of all the
    runs' per-round ratios with its interval, and the ratio of the fastest rounds of each run
    (transformers' fastest time over the implementation's). Rounds of different runs are not
    exchangeable (a run's state of the machine moves its ratio as a whole), so the per-run count
    is the figure to judge by; the pooled interval assumes they are and is narrower than it
    should be.

    Returns a list of dicts, in the order the rows first appear.
    """
    pooled = {}
    for result in results:
        times = _round_times(result)
        for (case, impl), mine in times.items():
            reference = times.get((case, "transformers"))
            if impl == "transformers" or not reference:
                continue
            ratios = _round_ratios(reference, mine)
            entry = pooled.setdefault((case, impl), dict(case=case, impl=impl, runs=[],
                                                         ratios=[], fastest=[]))
            entry["runs"].append(statistics.median(ratios))
            entry["ratios"].extend(ratios)
            entry["fastest"].append(min(reference) / min(mine))
    summary = []
    for (case, impl), entry in pooled.items():
        target = goal_target(case, impl)
        low, high, coverage = _median_interval(entry["ratios"])
        summary.append(dict(
            case=case, impl=impl, target=target, run_medians=entry["runs"],
            runs_meeting=None if target is None else sum(m >= target for m in entry["runs"]),
            pooled_median=statistics.median(entry["ratios"]), pooled_interval=(low, high, coverage),
            rounds=len(entry["ratios"]), fastest_ratios=entry["fastest"]))
    return summary


def print_pooled(results, names):
    """Prints `pool_runs` as a table, after naming the runs and the machines that ran them."""
    machines = {describe_machine(r.get("machine")) or "machine: not recorded" for r in results}
    print(f"\nAcross {len(results)} runs ({', '.join(names)}):")
    for machine in sorted(machines):
        print("  " + machine)
    if len(machines) > 1:
        print("  WARNING: these runs come from different machines; their ratios do not pool.")
    print("| case | implementation | goal | median per run | runs meeting it "
          "| pooled median [interval] (rounds) | fastest-round ratio per run |")
    print("|---|---|---:|---|---:|---:|---|")
    for entry in pool_runs(results):
        target = entry["target"]
        low, high, _ = entry["pooled_interval"]
        meeting = "-" if target is None else f"{entry['runs_meeting']} of {len(entry['run_medians'])}"
        print(f"| {entry['case']} | {entry['impl']} | {_fmt(target, '.2f')} "
              f"| {' / '.join(f'{m:.2f}x' for m in entry['run_medians'])} | {meeting} "
              f"| {entry['pooled_median']:.2f}x [{low:.2f}, {high:.2f}] ({entry['rounds']}) "
              f"| {' / '.join(f'{m:.2f}x' for m in entry['fastest_ratios'])} |")
    print("Rounds of different runs are not exchangeable (each run's machine state moves its "
          "ratio as a whole): judge by the runs, not by the pooled interval.")


def plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    width = 0.8 / len(impls)
    for i, impl in enumerate(impls):
        by_case = {r["case"]: r for r in rows if r["impl"] == impl}
        xs = [c + (i - (len(impls) - 1) / 2) * width for c in range(len(cases))]
        gflops = [by_case[c]["gflops"] if c in by_case else 0 for c in cases]
        ratio = [by_case[c]["vs_transformers"] or 0 if c in by_case else 0 for c in cases]
        axes[0].bar(xs, gflops, width, label=impl)
        axes[1].bar(xs, ratio, width, label=impl)
    axes[0].axhline(result["machine_peak_gflops"], color="k", ls="--", lw=1,
                    label="machine matmul peak")
    axes[0].set_ylabel("GFLOP/s (matmul FLOPs / median time)")
    axes[1].axhline(1.0, color="k", ls="--", lw=1)
    axes[1].set_ylabel("speed relative to transformers (higher is faster)")
    for ax in axes:
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases, rotation=20)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"SigLIP B/16 float32 inference, {result['threads']} CPU threads, median of "
                 f"{result['repeats']} interleaved rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"[speed] wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
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
        print_pooled(results, [os.path.basename(p) for p in paths])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results[0], f, indent=1)
    if args.plot:
        plot(results[0], args.plot)


if __name__ == "__main__":
    main()
