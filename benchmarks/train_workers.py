"""The worker side of `train_step.py`: one process per Keras backend builds its models once, then
runs one optimizer step at a time when the coordinator asks, one JSON line per reply on stdout.

Every implementation starts from the same weights (`keras_siglip.testing.randomize_weights`,
seed 0; transformers gets them through `keras_siglip.convert.transformers`) and its step `k`
trains on the same batch `k` (`step_batch`), so the losses of step `k` can be compared.
"""

import contextlib
import functools
import json
import math
import os
import sys
import time

import numpy as np

# This folder is on sys.path when a script here runs.
from gemm import worker_protocol

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "tensorflow", "torch")
# keras-<backend><suffix>: how keras-siglip is compiled (see `KerasTrainer`).
VARIANTS = {
    "": "AdamW under the library's non-finite-step guard (NonFiniteStepGuard), dense loss",
    "-noguard": "plain AdamW (the guard left out at compile), dense loss",
    "-chunk4": "AdamW under the guard, SigmoidLoss(chunk_size=4)",
}
IMPLS = tuple(f"keras-{b}{s}" for b in BACKENDS for s in VARIANTS) + ("transformers",)
# The same AdamW on both sides (`torch.optim.AdamW` and `keras.optimizers.AdamW`).
ADAMW = dict(learning_rate=1e-4, weight_decay=1e-4, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
CONFIGS = {
    "b16": dict(preset="siglip_base_patch16_224", batch=16, image=224, length=64, vocab=32000),
    # Seconds per step: what tests/test_train_step_benchmark.py runs.
    "tiny": dict(
        vision=dict(image_size=32, patch_size=8, width=32, depth=2, mlp_dim=64, num_heads=4),
        text=dict(vocabulary_size=128, sequence_length=16, width=32, depth=2, mlp_dim=64,
                  num_heads=4),
        batch=16, image=32, length=16, vocab=128,
    ),
}
CHUNK_SIZE = 4


def impl_backend(impl):
    """The worker that runs `impl`: its Keras backend (transformers runs in the torch worker)."""
    return "torch" if impl == "transformers" else impl.split("-")[1]


def impl_variant(impl):
    """`impl`'s suffix in `VARIANTS` ("" for the plain keras-<backend> row), None for others."""
    if not impl.startswith("keras-"):
        return None
    return impl[len(f"keras-{impl_backend(impl)}"):]


def step_batch(config, step):
    """The numpy batch of training step `step` (0-based): the same in every worker.

    Images `(B, H, W, 3)` uniform in [-1, 1], token ids `(B, L)` uniform in [1, vocab).
    """
    spec = CONFIGS[config]
    rng = np.random.default_rng([17, step])
    batch, size = spec["batch"], spec["image"]
    images = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
    token_ids = rng.integers(1, spec["vocab"], (batch, spec["length"])).astype(np.int32)
    return {"images": images, "token_ids": token_ids}


def build_keras_model(config):
    """A keras-siglip `SigLIP` of `config` with the weights of `randomize_weights(seed=0)`."""
    from keras_siglip import SigLIP
    from keras_siglip.builders import build_model
    from keras_siglip.testing import randomize_weights

    spec = CONFIGS[config]
    if "preset" in spec:
        model = SigLIP.from_preset(spec["preset"], load_weights=False)
    else:
        model = build_model(False, spec["vision"], spec["text"], name="siglip_tiny")
    randomize_weights(model, seed=0)
    return model


@contextlib.contextmanager
def _without_guard():
    """`SigLIP.compile` with its optimizer guard replaced by `keras.optimizers.get`.

    The library wraps every optimizer in a `NonFiniteStepGuard` that skips steps with
    non-finite gradients and offers no switch to leave it out; this swaps the one function that
    wraps it, for the length of one `compile`, so the rest of the training path is unchanged.
    """
    import keras

    from keras_siglip.models import safety

    original = safety.guarded_optimizer
    safety.guarded_optimizer = keras.optimizers.get
    try:
        yield
    finally:
        safety.guarded_optimizer = original


def keras_equivalent_eps(step):
    """The eps of `torch.optim.AdamW` whose update at `step` (1-based) is `keras.optimizers.AdamW`'s
    with `ADAMW["epsilon"]`: Keras adds eps to sqrt(v) before the bias correction, torch after."""
    return ADAMW["epsilon"] / math.sqrt(1 - ADAMW["beta_2"] ** step)


def _timed(method, marks, name):
    """`method` that records when it is entered and left in `marks` (torch runs it every step)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        marks[f"{name}_in"] = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            marks[f"{name}_out"] = time.perf_counter()

    return wrapper


class KerasTrainer:
    """keras-siglip trained as a user would: `compile(AdamW, SigmoidLoss)`, `train_on_batch`.

    `traces` counts the runs of the Python `train_step`: on JAX and TensorFlow it runs only while
    the step is traced (compiled), so a count that grows after warm-up is a retrace; on torch,
    which runs the step eagerly, it runs every step. On torch the step is also split into
    phases (forward, loss, backward, optimizer) by timing `compute_loss` and the optimizer's
    `apply`.
    """

    def __init__(self, config, variant):
        import keras

        from keras_siglip.backend.torch_optim import is_fused
        from keras_siglip.losses import SigmoidLoss

        self.config, self.step_index = config, 0
        self.model = model = build_keras_model(config)
        optimizer = keras.optimizers.AdamW(**ADAMW)
        loss = SigmoidLoss(chunk_size=CHUNK_SIZE if variant == "-chunk4" else None)
        guard = _without_guard() if variant == "-noguard" else contextlib.nullcontext()
        with guard:
            model.compile(optimizer=optimizer, loss=loss)
        self.eager = keras.backend.backend() == "torch" and not model.jit_compile
        self.traces = 0
        self.marks = {}
        train_step = model.train_step

        @functools.wraps(train_step)
        def counted(*args, **kwargs):
            self.traces += 1
            return train_step(*args, **kwargs)

        model.train_step = counted
        if self.eager:
            model.compute_loss = _timed(model.compute_loss, self.marks, "loss")
            model.optimizer.apply = _timed(model.optimizer.apply, self.marks, "optimizer")
        self.optimizer_class = type(model.optimizer).__name__
        if is_fused(model.optimizer):
            self.optimizer_class += " (update through torch._fused_adam_)"

    def step(self):
        batch = step_batch(self.config, self.step_index)
        self.step_index += 1
        self.marks.clear()
        traces = self.traces
        start = time.perf_counter()
        loss = float(self.model.train_on_batch(batch))  # a Python float: the step has finished
        end = time.perf_counter()
        phases = None
        if self.eager:  # "forward" includes Keras' input handling, "backward" its loss tracker
            m = self.marks
            phases = {"forward": m["loss_in"] - start, "loss": m["loss_out"] - m["loss_in"],
                      "backward": m["optimizer_in"] - m["loss_out"],
                      "optimizer": m["optimizer_out"] - m["optimizer_in"],
                      "other": end - m["optimizer_out"]}
        traces = None if self.eager else self.traces - traces  # eager: it runs every step
        return dict(seconds=end - start, loss=loss, traces=traces, phases=phases)


class TransformersTrainer:
    """A plain PyTorch loop over transformers' `SiglipModel` (SDPA attention) with the weights of
    the keras-siglip model, the sigmoid loss written in torch and `torch.optim.AdamW`."""

    def __init__(self, config, keras_model, keras_eps=False):
        import torch
        import transformers

        from keras_siglip.convert.transformers import checkpoint_state_dict, transformers_config

        self.torch, self.config, self.step_index = torch, config, 0
        cls = transformers.SiglipModel
        model_config = cls.config_class.from_dict(transformers_config(keras_model))
        model = cls._from_config(model_config, attn_implementation="sdpa")
        state = checkpoint_state_dict(keras_model)
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
        if unexpected or [m for m in missing if "position_ids" not in m]:
            raise RuntimeError(f"transformers: missing {missing}, unexpected {unexpected}")
        self.model = model.train()
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=ADAMW["learning_rate"], weight_decay=ADAMW["weight_decay"],
            betas=(ADAMW["beta_1"], ADAMW["beta_2"]), eps=ADAMW["epsilon"])
        self.optimizer_class = "torch.optim.AdamW"
        self.keras_eps = keras_eps

    def loss(self, image_embeds, text_embeds):
        """The SigLIP sigmoid loss of L2-normalised embeddings, normalised by the batch size."""
        torch, model = self.torch, self.model
        logits = image_embeds @ text_embeds.T * model.logit_scale.exp() + model.logit_bias
        n = logits.shape[0]
        signs = 2 * torch.eye(n, dtype=logits.dtype) - 1  # +1 for the pairs, -1 elsewhere
        return -torch.nn.functional.logsigmoid(signs * logits).sum() / n

    def step(self):
        torch = self.torch
        batch = step_batch(self.config, self.step_index)
        self.step_index += 1
        if self.keras_eps:
            for group in self.optimizer.param_groups:
                group["eps"] = keras_equivalent_eps(self.step_index)
        # NCHW and int64, as a torch data loader would hand them over; done before the clock.
        pixels = torch.from_numpy(np.ascontiguousarray(batch["images"].transpose(0, 3, 1, 2)))
        ids = torch.from_numpy(batch["token_ids"]).long()
        start = time.perf_counter()
        out = self.model(input_ids=ids, pixel_values=pixels)  # embeds are L2-normalised
        t_forward = time.perf_counter()
        loss = self.loss(out.image_embeds, out.text_embeds)
        t_loss = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t_backward = time.perf_counter()
        self.optimizer.step()
        t_optimizer = time.perf_counter()
        value = loss.item()
        end = time.perf_counter()
        phases = {"forward": t_forward - start, "loss": t_loss - t_forward,
                  "backward": t_backward - t_loss, "optimizer": t_optimizer - t_backward,
                  "other": end - t_optimizer}
        return dict(seconds=end - start, loss=value, traces=None, phases=phases)


def _profile(trainer, rows=25):
    """One more step of `trainer` under `torch.profiler`: the ops that took the most CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def _versions(backend, built):
    import keras

    info = {"keras": keras.__version__, "python": sys.version.split()[0],
            "numpy": np.__version__}
    if backend == "jax":
        import jax

        info["jax"] = jax.__version__
    elif backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    else:
        import torch

        info["torch"] = torch.__version__
        from keras_siglip.backend import torch_cpu_gemm

        info["torch_cpu_gemm"] = torch_cpu_gemm()
        if "transformers" in built:
            import transformers

            info["transformers"] = transformers.__version__
    info["optimizers"] = {impl: t.optimizer_class for impl, t in built.items()}
    info["jit_compile"] = {impl: t.model.jit_compile for impl, t in built.items()
                           if isinstance(t, KerasTrainer)}
    return info


def worker(backend, impls, config, threads, keras_eps=False):
    """Serve `{"op": ...}` requests from the coordinator, one JSON line per reply."""
    sys.path.insert(0, ROOT)
    reply = worker_protocol(backend, threads)

    built = {}
    try:
        for impl in impls:
            if impl != "transformers":
                built[impl] = KerasTrainer(config, impl_variant(impl))
        if "transformers" in impls:
            built["transformers"] = TransformersTrainer(config, build_keras_model(config),
                                                          keras_eps)
        first = next(iter(built.values()))
        params = first.model.count_params() if isinstance(first, KerasTrainer) else sum(
            p.numel() for p in first.model.parameters())
        reply(ready=sorted(built), info=_versions(backend, built), params=int(params))
    except Exception as error:  # reported by the coordinator with the log's tail
        reply(error=f"{type(error).__name__}: {error}")
        raise

    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        trainer = built[request["impl"]]
        if request["op"] == "profile":
            reply(table=_profile(trainer))
        else:
            reply(**trainer.step())
