"""Kernel choices (`keras_siglip.backend`): timed once, overridable, and every choice conformant.

Each choice a backend can make (torch's oneDNN or `addmm` GEMM, XLA's dot library on JAX,
XLA or the graph executor on TensorFlow) must give the oracle's numbers; bfloat16 and
mixed_bfloat16 models must stay within a stated tolerance of the float32 oracle.
"""

import time

import numpy as np
import pytest

import keras

import keras_siglip_reference as reference
from keras_siglip.backend import autotune, jax_ops, tf_ops, torch_ops
from keras_siglip.testing import (
    build_tiny,
    build_tiny_naflex,
    random_naflex_inputs,
    random_tree,
)
from tests._grad import to_numpy

TOL = 1e-5
BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def _fresh_decisions():
    autotune.forget()
    yield
    autotune.forget()


def _sleeper(seconds, log=None, name=None):
    def make():
        if log is not None:
            log.append(name)
        return lambda: time.sleep(seconds)

    return make


@pytest.mark.backend_independent
def test_choose_keeps_the_plain_kernel_unless_another_is_clearly_faster():
    made = []
    slow_plain = {"plain": _sleeper(0.004, made, "plain"), "fast": _sleeper(0.0005, made, "fast")}
    assert autotune.choose("demo", ("a",), slow_plain) == "fast"
    # Cached: the second call neither builds nor times the candidates again.
    assert autotune.choose("demo", ("a",), slow_plain) == "fast" and made == ["plain", "fast"]
    assert autotune.cached("demo", ("a",)) == "fast"
    # Within the margin the plain kernel stays: noise never trades it for an equal one.
    equal = {"plain": _sleeper(0.002), "other": _sleeper(0.002)}
    assert autotune.choose("demo", ("b",), equal) == "plain"
    decisions = {tuple(d["key"]): d for d in autotune.kernel_choices()}
    assert set(decisions[("a",)]["seconds"]) == {"plain", "fast"}
    assert decisions[("a",)]["seconds"]["fast"] < decisions[("a",)]["seconds"]["plain"]


@pytest.mark.backend_independent
def test_a_candidate_that_fails_is_left_out_and_recorded():
    def broken():
        raise RuntimeError("no such library")

    choice = autotune.choose("demo", ("c",), {"plain": _sleeper(0.001), "broken": broken})
    assert choice == "plain"
    (decision,) = autotune.kernel_choices()
    assert "no such library" in decision["failed"]["broken"]
    with pytest.raises(RuntimeError, match="No demo kernel ran"):
        autotune.choose("demo", ("d",), {"broken": broken})


@pytest.mark.backend_independent
def test_environment_overrides_the_timing(monkeypatch):
    made = []
    candidates = {"plain": _sleeper(0.004, made, "plain"), "fast": _sleeper(0.0, made, "fast")}
    monkeypatch.setenv("KERAS_SIGLIP_DEMO", "plain")
    assert autotune.choose("demo", ("e",), candidates, env="KERAS_SIGLIP_DEMO") == "plain"
    assert made == []  # nothing timed
    monkeypatch.setenv("KERAS_SIGLIP_DEMO", "auto")
    assert autotune.choose("demo", ("e",), candidates, env="KERAS_SIGLIP_DEMO") == "fast"
    monkeypatch.setenv("KERAS_SIGLIP_DEMO", "mkl")
    with pytest.raises(ValueError, match=r"KERAS_SIGLIP_DEMO='mkl'.*plain, fast.*'auto'"):
        autotune.choose("demo", ("e",), candidates, env="KERAS_SIGLIP_DEMO")


def _choices():
    """(environment variable, the kernels it may name) for this backend's timed choice."""
    if BACKEND == "torch":
        return torch_ops.GEMM_ENV, torch_ops.available_torch_cpu_gemms()
    if BACKEND == "jax":
        return jax_ops.DOT_ENV, jax_ops.JAX_CPU_DOTS
    return tf_ops.COMPILER_ENV, tf_ops.TF_CPU_COMPILERS


@pytest.fixture(scope="module")
def tiny_models():
    fixed = build_tiny("odd_nonsquare", seed=4)
    naflex = build_tiny_naflex(seed=5)
    rng = np.random.default_rng(4)
    images = rng.uniform(-1, 1, (3, *fixed.vision_encoder.image_size, 3)).astype(np.float32)
    ids = rng.integers(0, 99, (3, 9)).astype(np.int32)
    patches = random_naflex_inputs([(3, 5), (4, 4), (2, 7)], 18, patch_size=2, seed=5)
    fixed_oracle = reference.two_tower(random_tree(fixed, seed=4), images, ids)
    naflex_oracle = reference.naflex_image_tower(
        random_tree(naflex, seed=5), **patches, masking="transformers"
    )
    return fixed, naflex, images, ids, patches, fixed_oracle, naflex_oracle


@pytest.mark.parametrize("choice", ["auto", *_choices()[1]])
def test_every_kernel_choice_matches_the_oracle(monkeypatch, tiny_models, choice):
    fixed, naflex, images, ids, patches, fixed_oracle, naflex_oracle = tiny_models
    monkeypatch.setenv(_choices()[0], choice)
    np.testing.assert_allclose(
        to_numpy(fixed.encode_images(images)), fixed_oracle["zimg_unnorm"], atol=TOL
    )
    np.testing.assert_allclose(
        to_numpy(fixed.encode_texts(ids)), fixed_oracle["ztxt_unnorm"], atol=TOL
    )
    np.testing.assert_allclose(
        to_numpy(naflex.encode_images(patches)), naflex_oracle["pooled"], atol=TOL
    )
    if choice == "auto" and BACKEND != "torch":
        # One program-wide decision per (shape, dtype), recorded with its timings.
        kinds = {d["kind"] for d in autotune.kernel_choices()}
        assert kinds == {"jax_cpu_dot" if BACKEND == "jax" else "tf_cpu_compiler"}


@pytest.mark.skipif(BACKEND != "torch", reason="torch's CPU GEMM choice")
def test_torch_gemm_choice_is_timed_per_shape_and_cached(monkeypatch):
    monkeypatch.delenv(torch_ops.GEMM_ENV, raising=False)
    assert torch_ops.torch_cpu_gemm() is None  # no shape: nothing forced, timed per shape
    first = torch_ops.torch_cpu_gemm(64, 48, 80, "float32")
    assert first in torch_ops.available_torch_cpu_gemms()
    assert torch_ops.torch_cpu_gemm(64, 48, 80, "float32") == first
    (decision,) = [d for d in autotune.kernel_choices() if d["kind"] == "torch_cpu_gemm"]
    assert decision["key"] == [64, 48, 80, "float32"]
    assert set(decision["seconds"]) == set(torch_ops.available_torch_cpu_gemms())
    monkeypatch.setenv(torch_ops.GEMM_ENV, "addmm")
    assert torch_ops.torch_cpu_gemm(64, 48, 80, "float32") == "addmm"
    monkeypatch.setenv(torch_ops.GEMM_ENV, "mkl")
    with pytest.raises(ValueError, match=r"KERAS_SIGLIP_TORCH_CPU_GEMM='mkl'.*addmm, onednn"):
        torch_ops.torch_cpu_gemm(64, 48, 80, "float32")


@pytest.mark.skipif(BACKEND != "torch", reason="torch's make_fx recording")
def test_torch_timing_while_recording_leaves_no_trace_in_the_graph(monkeypatch):
    """The first GEMM of a shape is timed while make_fx records: only the GEMM is recorded."""
    import torch
    from torch.fx.experimental.proxy_tensor import make_fx

    from keras_siglip.backend import affine

    monkeypatch.delenv(torch_ops.GEMM_ENV, raising=False)
    x, w, b = torch.randn(33, 20), torch.randn(20, 12), torch.randn(12)
    with torch.no_grad():
        graph = make_fx(lambda x, w, b: affine(x, w, b, "gelu_tanh"))(x, w, b)
    calls = [str(n.target) for n in graph.graph.nodes if n.op == "call_function"]
    assert len(calls) <= 3, calls  # the GEMM (+ transpose view, + GELU for addmm), no timing ops
    expected = torch.nn.functional.gelu(x @ w + b, approximate="tanh")
    np.testing.assert_allclose(graph(x, w, b).numpy(), expected.numpy(), atol=1e-5)


def _bf16_copy(model_fn, seed, policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = model_fn(seed=seed)
    finally:
        keras.config.set_dtype_policy(previous)
    return model


# bfloat16 keeps 8 significant bits (relative rounding up to 2^-9 per value; the pooled output
# alone, up to 3.2 in size, is rounded by up to 0.008). Through the weights (rounded once for
# "bfloat16", kept float32 for "mixed_bfloat16") and the blocks of the tiny towers, measured on
# all three backends: max |error| 0.0085-0.026, error norm 0.4-1.2% of the embedding's, cosine
# with the float32 oracle >= 0.99992. The bounds are about twice the worst of those.
BF16_ATOL = 0.05
BF16_NORM_RTOL = 0.025
BF16_MIN_COSINE = 0.9995


@pytest.mark.parametrize("choice", ["auto", *_choices()[1]])
@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16"])
def test_bfloat16_outputs_stay_close_to_the_float32_oracle(
    monkeypatch, tiny_models, policy, choice
):
    # Every kernel choice, in each reduced-precision policy (on TensorFlow XLA's dots with a
    # float32 result and the graph executor's bfloat16 MatMuls are different code).
    monkeypatch.setenv(_choices()[0], choice)
    _, _, images, ids, patches, fixed_oracle, naflex_oracle = tiny_models
    fixed = _bf16_copy(lambda seed: build_tiny("odd_nonsquare", seed=seed), 4, policy)
    naflex = _bf16_copy(build_tiny_naflex, 5, policy)
    results = {
        "image": (fixed.encode_images(images), fixed_oracle["zimg_unnorm"]),
        "text": (fixed.encode_texts(ids), fixed_oracle["ztxt_unnorm"]),
        "naflex": (naflex.encode_images(patches), naflex_oracle["pooled"]),
    }
    for name, (got, want) in results.items():
        assert keras.backend.standardize_dtype(got.dtype) == "bfloat16", name
        got = to_numpy(keras.ops.cast(got, "float32")).astype(np.float64)
        error = np.abs(got - want).max()
        assert error <= BF16_ATOL, (name, error)
        norm_error = np.linalg.norm(got - want, axis=-1) / np.linalg.norm(want, axis=-1)
        assert norm_error.max() <= BF16_NORM_RTOL, (name, norm_error)
        cosine = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
        assert cosine.min() >= BF16_MIN_COSINE, (name, cosine)
        assert error > 0  # really computed in bfloat16, not silently in float32


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA-or-graph choice")
@pytest.mark.parametrize("choice", tf_ops.TF_CPU_COMPILERS)
def test_tensorflow_predict_compiles_as_the_timed_choice_says(monkeypatch, choice):
    # `predict` (and predict_on_batch) takes the choice `encode_*` takes: XLA in float32 where
    # it times faster, the graph executor where that does. Forced here
    # through the environment; both give the oracle's numbers.
    monkeypatch.setenv(tf_ops.COMPILER_ENV, choice)
    model = build_tiny("odd_nonsquare", seed=6)
    rng = np.random.default_rng(6)
    images = rng.uniform(-1, 1, (2, *model.vision_encoder.image_size, 3)).astype(np.float32)
    ids = rng.integers(0, 99, (2, 9)).astype(np.int32)
    seen = []
    make = keras.Model.make_predict_function

    def spy(self, force=False):  # what Keras builds the predict function with
        seen.append(self.jit_compile)
        return make(self, force)

    monkeypatch.setattr(keras.Model, "make_predict_function", spy)
    out = model.predict_on_batch({"images": images, "token_ids": ids})
    assert seen and seen[-1] is (choice == "xla")
    assert model.jit_compile is True  # put back: fit and evaluate keep XLA
    oracle = reference.two_tower(random_tree(model, seed=6), images, ids)
    np.testing.assert_allclose(to_numpy(out["logits"]), oracle["logits"], atol=TOL)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA dots")
def test_tensorflow_bfloat16_dots_under_xla_accumulate_in_float32():
    """Traced for XLA, a bfloat16 affine is one dot with a float32 result (the dot XLA's CPU
    compiler hands to its bfloat16 GEMM kernels), rounded once after the bias and GELU; the
    graph executor, which has no such kernel, keeps bfloat16 MatMuls."""
    import tensorflow as tf

    from keras_siglip.backend import affine

    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((37, 96), (96, 40), (40,)))
    args = [tf.constant(t, tf.bfloat16) for t in (x, w, b)]
    exact = np.asarray(args[0].numpy(), np.float64) @ np.asarray(args[1].numpy(), np.float64)
    exact += np.asarray(args[2].numpy(), np.float64)
    exact = 0.5 * exact * (1 + np.tanh(np.sqrt(2 / np.pi) * (exact + 0.044715 * exact**3)))
    fn = tf.function(lambda x, w, b: affine(x, w, b, "gelu_tanh"), jit_compile=True)
    hlo = fn.experimental_get_compiler_ir(*args)(stage="hlo")
    assert "f32[37,40]{1,0} dot(bf16[37,96]" in hlo.replace("%", ""), hlo
    got = fn(*args)
    assert got.dtype == tf.bfloat16
    # One rounding of the exact value: within bfloat16's unit roundoff (2^-8 relative: 8
    # significant bits) plus the float32 sum's own error.
    np.testing.assert_allclose(got.numpy().astype(np.float64), exact, rtol=2**-8, atol=1e-4)
    graph = tf.function(lambda x, w, b: affine(x, w, b, "gelu_tanh"))
    assert "BatchMatMulV3" not in str(graph.get_concrete_function(*args).graph.as_graph_def())


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA-or-graph choice")
def test_tensorflow_compiler_choice_builds_its_timing_block_once(monkeypatch):
    # The choice is looked up on every call of a compiled model: after the first, the answer
    # comes from the cache and no timing block is made or traced (making one per call cost
    # 55 ms of an 86 ms B/16 forward).
    monkeypatch.delenv(tf_ops.COMPILER_ENV, raising=False)
    autotune.forget()
    traced = []
    block = tf_ops._timing_block

    def counting(x, w):
        traced.append(tuple(x.shape))
        return block(x, w)

    monkeypatch.setattr(tf_ops, "_timing_block", counting)
    first = tf_ops.tf_cpu_compiler(64, 64, 96, "float32")
    assert traced == [(1, 64, 64)] * 2  # one trace per compiler
    for _ in range(3):
        assert tf_ops.tf_cpu_compiler(64, 64, 96, "float32") == first
    assert traced == [(1, 64, 64)] * 2
    (decision,) = [d for d in autotune.kernel_choices() if d["kind"] == "tf_cpu_compiler"]
    assert set(decision["seconds"]) == set(tf_ops.TF_CPU_COMPILERS)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow's XLA dots")
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_tensorflow_reduced_precision_dots_under_xla_have_gradients(dtype):
    """The float32-result dot's gradient under XLA: both products in the operands' dtype, within
    that dtype's rounding of the float64 gradient (float16 failed to trace with TensorFlow's own
    gradient of BatchMatMulV3)."""
    import tensorflow as tf

    from keras_siglip.backend import affine

    rng = np.random.default_rng(1)
    shapes = ((9, 24), (24, 7), (7,), (9, 7))
    x, w, b, up = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    xs, ws, bs = (tf.constant(t, dtype) for t in (x, w, b))

    @tf.function(jit_compile=True)
    def grads(x, w, b):
        with tf.GradientTape() as tape:
            tape.watch([x, w, b])
            y = tf.cast(affine(x, w, b), "float32")
            loss = tf.reduce_sum(y * up)
        return tape.gradient(loss, [x, w, b])

    gx, gw, gb = grads(xs, ws, bs)
    assert gx.dtype == gw.dtype == tf.as_dtype(dtype)
    x64, w64 = (np.asarray(tf.cast(t, "float32").numpy(), np.float64) for t in (xs, ws))
    u64 = np.asarray(tf.cast(tf.cast(up, dtype), "float32").numpy(), np.float64)
    unit = 2.0**-8 if dtype == "bfloat16" else 2.0**-11  # unit roundoff of the dtype
    for got, want in ((gx, u64 @ w64.T), (gw, x64.T @ u64), (gb, u64.sum(0))):
        got = np.asarray(tf.cast(got, "float32").numpy(), np.float64)
        np.testing.assert_allclose(got, want, rtol=2 * unit, atol=2 * unit * np.abs(want).max())
