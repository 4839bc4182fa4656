"""The worker side of `speed.py`: one process per Keras backend builds every model once, then
times the calls the coordinator asks for, one JSON line per reply on its stdout."""

import itertools
import json
import os
import statistics
import sys
import time

import numpy as np

# This folder is on sys.path when a script here runs.
from gemm import make_kernel, worker_protocol
from speed_cases import (
    B16,
    CASES,
    MATMUL_SHAPES,
    NAFLEX_IMAGES,
    ROOT,
    TEXT,
    case_dtype,
    torch_dtype_name,
)


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


def _to_numpy(x):
    """Any backend's tensor (CPU or GPU, any float dtype) as a float32 NumPy array."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


class KerasSigLIP:
    """keras-siglip on the worker's backend, weights from `keras_siglip.testing.randomize_weights`.

    `Transformers` copies these weights, so both compute the same function. `dtypes` lists the
    compute dtypes the cases need: each gets its own models (built under that dtype policy) with
    the float32 models' weights.
    """

    def __init__(self, dtypes=("float32",)):
        import keras

        from keras_siglip.testing import randomize_weights

        self.models = {}
        f32 = self.models["float32"] = self._build(randomize_weights)
        for dtype in dtypes:
            if dtype == "float32":
                continue
            previous = keras.config.dtype_policy()
            keras.config.set_dtype_policy(dtype)
            try:
                built = self.models[dtype] = self._build(None)
            finally:
                keras.config.set_dtype_policy(previous)
            for key, model in built.items():
                model.set_weights(f32[key].get_weights())
        self.base = f32["base"]

    @staticmethod
    def _build(randomize):
        from keras_siglip import SigLIP
        from keras_siglip.models import SigLIPNaFlexVisionEncoder, SigLIPVisionEncoder

        vision = dict(patch_size=B16["patch"], width=B16["width"], depth=B16["depth"],
                      mlp_dim=B16["mlp"], num_heads=B16["heads"])
        base = SigLIP.from_preset("siglip_base_patch16_224", load_weights=False)
        # The other image towers share the base text tower (only their images are timed).
        fixed = SigLIPVisionEncoder(image_size=256, **vision, name="vision_encoder")
        naflex = SigLIPNaFlexVisionEncoder(**vision, position_grid_size=16, name="vision_encoder")
        if randomize:
            randomize(base, seed=0)
            randomize(fixed, seed=1)
            randomize(naflex, seed=2)
        models = {"base": base}
        for key, tower in (("fixed_256", fixed), ("naflex", naflex)):
            models[key] = SigLIP(tower, base.text_encoder, name=f"siglip_{key}")
        return models

    def runner(self, case, inputs):
        spec, models = CASES[case], self.models[case_dtype(case)]
        if spec["kind"] == "two_tower":
            model = models["base"]

            def run():
                out = model.predict_on_batch(inputs)
                return np.concatenate([_to_numpy(out["image_embeddings"]),
                                       _to_numpy(out["text_embeddings"])])

            return run
        model = models[_model_key(case)]
        images = inputs if spec["kind"] == "naflex" else inputs["images"]
        return lambda: _to_numpy(model.encode_images(images))


class Transformers:
    """transformers models holding the same weights as `KerasSigLIP` (torch worker only); on a
    CUDA machine they run on the GPU. bfloat16 cases run bfloat16 copies (`.to(torch.bfloat16)`)."""

    def __init__(self, keras_impl, dtypes=("float32",)):
        import copy

        import torch
        import transformers

        from keras_siglip.convert.transformers import checkpoint_state_dict, transformers_config

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.models = {}
        f32 = self.models["float32"] = {}
        for key, cls in (("base", transformers.SiglipModel),
                         ("fixed_256", transformers.SiglipVisionModel),
                         ("naflex", transformers.Siglip2VisionModel)):
            keras_model = keras_impl.models["float32"][key]
            target = keras_model if key == "base" else keras_model.vision_encoder
            state = checkpoint_state_dict(target)
            config = cls.config_class.from_dict(transformers_config(target))
            model = cls._from_config(config, attn_implementation="sdpa").eval()
            missing, unexpected = model.load_state_dict(
                {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
            )
            if unexpected or [m for m in missing if "position_ids" not in m]:
                raise RuntimeError(f"transformers {key}: missing {missing}, unexpected {unexpected}")
            f32[key] = model.to(self.device)
        if any(dtype != "float32" for dtype in dtypes):  # both bfloat16 policies: one copy
            self.models["bfloat16"] = {k: copy.deepcopy(m).to(torch.bfloat16)
                                       for k, m in f32.items()}  # fmt: skip

    def runner(self, case, inputs):
        torch, spec = self.torch, CASES[case]
        dtype = getattr(torch, torch_dtype_name(case))
        models = self.models[torch_dtype_name(case)]

        def tensor(x, cast=True):
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
            return t.to(dtype) if cast else t

        def result(t):
            return t.float().cpu().numpy()

        if spec["kind"] == "naflex":
            model = models["naflex"]
            patches = tensor(inputs["patches"])
            mask = tensor(inputs["patch_mask"], cast=False)
            shapes = tensor(inputs["spatial_shapes"], cast=False).long()

            def run():
                with torch.no_grad():
                    out = model(pixel_values=patches, pixel_attention_mask=mask,
                                spatial_shapes=shapes)
                return result(out.pooler_output)

            return run
        pixels = tensor(inputs["images"].transpose(0, 3, 1, 2))
        if spec["kind"] == "two_tower":
            model = models["base"]
            ids = tensor(inputs["token_ids"], cast=False).long()

            def run():
                with torch.no_grad():
                    out = model(input_ids=ids, pixel_values=pixels)
                return result(torch.cat([out.image_embeds, out.text_embeds]))

            return run
        model = models[_model_key(case)]
        model = model.vision_model if _model_key(case) == "base" else model

        def run():
            with torch.no_grad():
                return result(model(pixel_values=pixels).pooler_output)

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
        if spec["kind"] == "naflex" or spec["image"] != 224 or case_dtype(case) != "float32":
            return None  # no NaFlex tower in KerasHub; its towers are built for one size and dtype
        if spec["kind"] == "two_tower":
            backbone = self.backbone
            return lambda: _to_numpy(backbone.predict_on_batch(inputs)["vision_logits"])
        images = inputs["images"]
        return lambda: _to_numpy(self.vision.predict_on_batch(images))


def _matmul_kernels(backend):
    """The `gemm.make_kernel` names whose matmul peak a `backend` worker measures: the framework's
    matmul, and on torch also oneDNN's linear where torch has it (keras-siglip's float32 inference
    kernel where it times faster, `keras_siglip.backend.torch_cpu_gemm`), so that the machine's
    peak is the fastest GEMM any of them reaches."""
    if backend != "torch":
        return [backend]
    from keras_siglip.backend import available_torch_cpu_gemms

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


def accelerator(backend):
    """"cuda" (or another accelerator's platform name) when the backend runs on one, else None."""
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else None
    if backend == "jax":
        import jax

        return None if jax.default_backend() == "cpu" else jax.default_backend()
    import tensorflow as tf

    return "cuda" if tf.config.list_logical_devices("GPU") else None


def worker(backend, impls, cases, out_dir, threads):
    """Serve `{"op": ...}` requests from the coordinator, one JSON line per reply."""
    sys.path.insert(0, ROOT)
    reply = worker_protocol(backend, threads)
    import keras  # imported (and checked) by worker_protocol

    built, runners = {}, {}
    dtypes = sorted({case_dtype(case) for case in cases})
    try:
        keras_impl = KerasSigLIP(dtypes)
        if f"keras-{backend}" in impls:
            built[f"keras-{backend}"] = keras_impl
        if "transformers" in impls:
            built["transformers"] = Transformers(keras_impl, dtypes)
        if f"kerashub-{backend}" in impls:
            built[f"kerashub-{backend}"] = KerasHub()
        for case in cases:
            inputs = _case_inputs(case)
            for impl, obj in built.items():
                run = obj.runner(case, inputs)
                if run is not None:
                    runners[impl, case] = run
        device = accelerator(backend)
        # Float32 matmul peaks are the CPU's: not measured on an accelerator.
        matmul = (lambda: {}) if device else _matmul_timer(_matmul_kernels(backend))
        info = {"keras": keras.__version__, "device": device or "cpu"}
        if backend == "torch" and "transformers" in built:
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
        if request["op"] == "choices":  # the kernel choices timed during the warm-up
            from keras_siglip.backend import autotune

            reply(choices=autotune.kernel_choices())
            continue
        impl, case = request["impl"], request["case"]
        start = time.perf_counter()
        output = runners[impl, case]()
        seconds = time.perf_counter() - start
        path = os.path.join(out_dir, f"{impl}__{case}.npy")
        np.save(path, output)
        reply(seconds=seconds, output=path)
