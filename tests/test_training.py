"""Training with the sigmoid loss: fit() on every backend, and data-parallel fit() on 8 JAX devices."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_siglip.testing import build_tiny


def _toy_data(n=48, seed=0):
    # 6 classes; each image has a bright square whose position and colour encode the class, and
    # each text repeats a class token, so the towers can learn to match them.
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 6
    images = (0.2 * rng.standard_normal((n, 32, 24, 3))).astype("float32")
    for i, label in enumerate(labels):
        r = (label % 3) * 10
        images[i, r : r + 10, :12, label // 3] += 1.0
    ids = np.full((n, 16), 1, "int32")
    ids[:, :3] = 10 + labels[:, None]
    return {"images": np.clip(images, -1, 1), "token_ids": ids}


@pytest.mark.parametrize("chunk_size", [None, 4])
def test_fit_reduces_the_loss(chunk_size):
    keras.utils.set_random_seed(0)
    model = build_tiny("fixture_like", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), chunk_size=chunk_size, ring=None)
    history = model.fit(_toy_data(), batch_size=12, epochs=5, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


def test_fit_in_mixed_bfloat16_follows_float32():
    """mixed_bfloat16 training (bfloat16 compute, float32 weights): the compiled train step
    (XLA on JAX and TensorFlow, with bfloat16 dots that accumulate in float32) learns like
    float32 and its losses stay within bfloat16 rounding of float32's."""
    losses = {}
    for policy in ("float32", "mixed_bfloat16"):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            keras.utils.set_random_seed(0)
            model = build_tiny("fixture_like", seed=0)
            model.compile(optimizer=keras.optimizers.Adam(2e-3), ring=None)
            history = model.fit(_toy_data(), batch_size=12, epochs=5, shuffle=False, verbose=0)
        finally:
            keras.config.set_dtype_policy(previous)
        losses[policy] = np.array(history.history["loss"])
    mixed, full = losses["mixed_bfloat16"], losses["float32"]
    assert np.all(np.isfinite(mixed))
    assert mixed[-1] < 0.7 * mixed[0], mixed
    # Epoch losses of about 2-6: bfloat16's 8-bit mantissa moves the logits by ~1e-2 and the
    # trajectory by a few percent over 20 steps.
    np.testing.assert_allclose(mixed, full, rtol=0.05)


def test_compute_loss_uses_the_forward_outputs():
    model = build_tiny("odd_nonsquare", seed=1)
    model.compile(optimizer="sgd", ring=None)
    rng = np.random.default_rng(0)
    x = {
        "images": rng.uniform(-1, 1, (4, 30, 17, 3)).astype("float32"),
        "token_ids": rng.integers(0, 99, (4, 9)).astype("int32"),
    }
    y_pred = model(x, training=True)
    assert set(y_pred) == {"image_embeddings", "text_embeddings", "logit_scale", "logit_bias"}
    import keras_siglip_reference as reference

    expected = reference.sigmoid_loss(
        np.asarray(keras.ops.convert_to_numpy(y_pred["image_embeddings"])),
        np.asarray(keras.ops.convert_to_numpy(y_pred["text_embeddings"])),
        float(keras.ops.convert_to_numpy(model.logit_scale)[0]),
        float(keras.ops.convert_to_numpy(model.logit_bias)[0]),
    )
    loss = float(keras.ops.convert_to_numpy(model.compute_loss(x=x, y_pred=y_pred)))
    assert loss == pytest.approx(expected, abs=1e-5)


def test_ring_where_it_cannot_run_says_why():
    model = build_tiny("fixture_like")
    model.compile(optimizer="sgd", ring="ring")
    data = _toy_data(12)
    with pytest.raises(RuntimeError, match="chunk_size"):
        model.fit(data, batch_size=12, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="ring must be"):
        model.compile(optimizer="sgd", ring="tree")


@pytest.mark.multi_device
def test_data_parallel_fit_step_equals_single_device(tmp_path):
    if keras.backend.backend() != "jax":
        pytest.skip("keras.distribution is JAX-only in Keras 3.15 (docs/loss.md)")
    out = tmp_path / "steps.npz"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), KERAS_BACKEND="jax")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    proc = subprocess.run(
        [sys.executable, str(root / "tests" / "_training_worker.py"), str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = np.load(out)
    names = [k.split("/", 1)[1] for k in data.files if k.startswith("single/")]
    assert len(names) > 50
    for run in ("dp_ring", "dp_bidir", "mp"):
        assert abs(float(data[f"{run}_loss"]) - float(data["single_loss"])) < 1e-5
        for name in names:
            np.testing.assert_allclose(
                data[f"{run}/{name}"], data[f"single/{name}"], atol=1e-5, err_msg=f"{run}: {name}"
            )
    # The step really moved the weights (a no-op would also "match").
    moved = max(float(np.max(np.abs(data[f"single/{n}"] - data[f"init/{n}"]))) for n in names)
    assert moved > 1e-3


def test_chunked_fit_with_a_tail_batch_equals_the_oracle():
    """7 examples in batches of 4: the tail batch of 3 has a batch size unknown to a TF graph.

    Its chunked loss (chunk 3 over a batch of unknown size: zero-padded blocks, see
    tests/test_losses.py for the gradients) must give the dense loss and the oracle's.
    """
    import keras_siglip_reference as reference

    data = _toy_data(7)
    losses = {}
    for chunk_size in (None, 3):
        model = build_tiny("fixture_like", seed=2)
        model.compile(optimizer=keras.optimizers.SGD(0.0), chunk_size=chunk_size, ring=None)
        history = model.fit(data, batch_size=4, epochs=1, shuffle=False, verbose=0)
        losses[chunk_size] = history.history["loss"][0]
    scale = float(keras.ops.convert_to_numpy(model.logit_scale)[0])
    bias = float(keras.ops.convert_to_numpy(model.logit_bias)[0])
    out = model(data)
    img, txt = np.asarray(out["image_embeddings"]), np.asarray(out["text_embeddings"])
    batch_losses = [reference.sigmoid_loss(img[s], txt[s], scale, bias)
                    for s in (slice(0, 4), slice(4, 7))]
    assert losses[3] == pytest.approx(losses[None], abs=1e-5)
    # Keras reports the epoch's loss as the mean over batches weighted by their size (4 and 3).
    assert losses[3] == pytest.approx((4 * batch_losses[0] + 3 * batch_losses[1]) / 7, abs=1e-5)


def _apply_steps(optimizer, initial, steps, stateless=False):
    """Weights after `optimizer` applied each gradient list of `steps` (eager, or JAX's
    `stateless_apply` as the compiled train step calls it)."""
    variables = [keras.Variable(w) for w in initial]
    if not stateless:
        for grads in steps:
            optimizer.apply([keras.ops.convert_to_tensor(g) for g in grads], variables)
        return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]
    import jax

    optimizer.build(variables)
    trainable = [v.value for v in variables]
    state = [v.value for v in optimizer.variables]
    apply = jax.jit(optimizer.stateless_apply)  # compiled, as in the train step
    for grads in steps:
        trainable, state = apply(state, [keras.ops.convert_to_tensor(g) for g in grads], trainable)
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in trainable]


@pytest.mark.parametrize("stateless", [False, True])
def test_step_guard_is_its_inner_optimizer_on_finite_steps_and_skips_the_others(stateless):
    # The guard compile() puts around the optimizer: bit-identical to the bare optimizer while
    # gradients are finite; a step with NaN or inf changes no weight and no optimizer state
    # (the next finite steps continue as if it had never come).
    from keras_siglip.models.safety import NonFiniteStepGuard

    if stateless and keras.backend.backend() != "jax":
        pytest.skip("stateless_apply is the JAX train step's path")
    rng = np.random.default_rng(0)
    initial = [rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=3).astype("float32")]
    steps = [[rng.normal(size=w.shape).astype("float32") for w in initial] for _ in range(3)]
    bad = [g.copy() for g in steps[0]]
    bad[0][2, 1] = np.nan
    worse = [g.copy() for g in steps[1]]
    worse[1][0] = np.inf

    def adamw():
        return keras.optimizers.AdamW(learning_rate=1e-2, weight_decay=1e-2)

    plain = _apply_steps(adamw(), initial, steps, stateless)
    guarded = _apply_steps(NonFiniteStepGuard(adamw()), initial, steps, stateless)
    skipped = _apply_steps(NonFiniteStepGuard(adamw()), initial,
                           [steps[0], bad, steps[1], worse, steps[2]], stateless)
    for p, g, s in zip(plain, guarded, skipped):
        np.testing.assert_array_equal(g, p)
        np.testing.assert_array_equal(s, p)


def test_step_guard_makes_sparse_gradients_dense_on_tensorflow():
    # Keras' Adam on TensorFlow updates a repeated row of an IndexedSlices gradient (a token id
    # that occurs twice in a batch) once per occurrence; the guard hands it the dense sum, which
    # is what JAX and PyTorch compute.
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.IndexedSlices exist on TensorFlow only")
    import tensorflow as tf

    from keras_siglip.models.safety import NonFiniteStepGuard

    rng = np.random.default_rng(1)
    table = rng.normal(size=(6, 4)).astype("float32")
    rows = rng.normal(size=(3, 4)).astype("float32")
    sparse = tf.IndexedSlices(tf.constant(rows), tf.constant([1, 4, 1]), tf.constant([6, 4]))
    dense = tf.convert_to_tensor(sparse)
    expected = _apply_steps(keras.optimizers.Adam(1e-2), [table], [[dense], [dense]])
    found = _apply_steps(NonFiniteStepGuard(keras.optimizers.Adam(1e-2)), [table],
                         [[sparse], [sparse]])
    np.testing.assert_allclose(found[0], expected[0], rtol=0, atol=1e-7)


def _numpy_adam(initial, steps, lr, b1=0.9, b2=0.999, eps=1e-7, weight_decay=None):
    """Keras' Adam/AdamW in float64 NumPy: decoupled decay w -= lr wd w before each update."""
    weights = [w.astype(np.float64) for w in initial]
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    for t, grads in enumerate(steps, start=1):
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        for i, g in enumerate(grads):
            if weight_decay:
                weights[i] -= lr * weight_decay * weights[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g.astype(np.float64) ** 2
            weights[i] -= alpha * m[i] / (np.sqrt(v[i]) + eps)
    return weights


@pytest.mark.parametrize("weight_decay", [None, 0.05])
def test_adam_steps_after_compile_follow_the_adam_formula(weight_decay):
    # What compile() makes of Adam/AdamW (on torch: torch's fused kernel, with Keras' epsilon
    # placement carried over) against the formula in float64, on the weight changes. The first
    # steps have gradients of 1e-8 and 1e-7, where sqrt(v) is below eps: there torch's own eps
    # placement would move the weights by a different amount (up to 30x at step 1).
    from keras_siglip.backend.torch_optim import is_fused
    from keras_siglip.models.safety import guarded_optimizer

    rng = np.random.default_rng(3)
    initial = [rng.normal(size=(7, 5)).astype("float32"), rng.normal(size=5).astype("float32")]
    scales = [1e-8, 1e-7, 1.0, 1e-3, 10.0, 0.1]
    steps = [[(s * rng.normal(size=w.shape)).astype("float32") for w in initial] for s in scales]
    for count in (1, 2, len(steps)):
        if weight_decay:
            optimizer = keras.optimizers.AdamW(learning_rate=1e-2, weight_decay=weight_decay)
        else:
            optimizer = keras.optimizers.Adam(learning_rate=1e-2)
        guarded = guarded_optimizer(optimizer)
        assert is_fused(guarded) == (keras.backend.backend() == "torch")
        found = _apply_steps(guarded, initial, steps[:count])
        expected = _numpy_adam(initial, steps[:count], 1e-2, weight_decay=weight_decay)
        for f, e, w in zip(found, expected, initial):
            # The changes (1e-4 to 6e-2), to float32 rounding of weights of about 1 (2^-24 ~ 6e-8
            # per operation; a few operations per step).
            np.testing.assert_allclose(f - w, e - w, rtol=1e-3, atol=5e-7)


def test_adam_variants_the_fused_kernel_does_not_compute_keep_keras_update():
    from keras_siglip.backend.torch_optim import fuse_adam, is_fused

    base = type(keras.optimizers.Adam())  # on torch: Keras' torch Adam, with its own update

    class Custom(base):
        def _parallel_update_step(self, grads, variables, learning_rate):
            return super()._parallel_update_step(grads, variables, learning_rate)

    for optimizer in (keras.optimizers.Adam(amsgrad=True), Custom(), keras.optimizers.SGD()):
        assert not is_fused(fuse_adam(optimizer))
    assert is_fused(fuse_adam(base())) == (keras.backend.backend() == "torch")
