"""keras_siglip.distributed: the ring sigmoid loss against the NumPy oracle on 1-8 CPU devices.

The multi-device checks run in one subprocess (tests/_ring_worker.py), because the number of
simulated devices must be fixed before jax starts.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_siglip_reference as reference
from keras_siglip import distributed
from keras_siglip.distributed import ring_sigmoid_loss

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_ring_worker.py"
ATOL = 1e-5

jax_only = pytest.mark.skipif(keras.backend.backend() != "jax", reason="the ring needs the JAX backend")


def _unit_rows(rng, batch, width):
    u = rng.normal(size=(batch, width))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def _make_cases():
    rng = np.random.default_rng(0)
    # (name, B, E, t_param, b, devices). D = 3 and 6 give an even D - 1 (bidir without its final
    # one-way step); D in {1, 2, 4, 8} gives an odd one. At D = 8 the worker also runs eagerly and
    # under ModelParallel on a (model=2, batch=4) mesh.
    specs = [
        ("init_b16_e8", 16, 8, math.log(10.0), -10.0, [1, 2, 4, 8]),
        ("init_b24_e32", 24, 32, math.log(10.0), -10.0, [8]),
        # Temperature 2, bias -1 (so every pair has a sizable gradient); (1,)-shaped parameters.
        ("t2_b24_e16", 24, 16, np.array([math.log(2.0)]), np.array([-1.0]), [1, 2, 3, 4, 6, 8]),
    ]
    cases = {}
    for name, batch, width, t_param, b, devices in specs:
        zimg = _unit_rows(rng, batch, width)
        # Pair texts with their images so the positives are not random.
        ztxt = _unit_rows(rng, batch, width) * 0.5 + zimg
        ztxt /= np.linalg.norm(ztxt, axis=1, keepdims=True)
        cases[name] = dict(zimg=zimg, ztxt=ztxt, t_param=t_param, b=b, devices=devices)
    return cases


CASES = _make_cases()


@pytest.fixture(scope="module")
def ring_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ring")
    inputs = {f"{c}/{k}": np.asarray(v) for c, d in CASES.items() for k, v in d.items()}
    np.savez(tmp / "in.npz", **inputs)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(tmp / "in.npz"), str(tmp / "out.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(tmp / "out.npz"))


def _expected(case):
    c = CASES[case]
    return reference.sigmoid_loss_grads(c["zimg"], c["ztxt"], c["t_param"], c["b"])


def _runs():
    for case, c in CASES.items():
        for num in c["devices"]:
            for variant in distributed.VARIANTS:
                yield case, num, variant, "jit"
                if num == 8:
                    yield case, num, variant, "eager"
                    yield case, 4, variant, "model_parallel"


@jax_only
@pytest.mark.multi_device
@pytest.mark.parametrize("case,num,variant,mode", list(_runs()))
def test_ring_matches_oracle(ring_results, case, num, variant, mode):
    expected = _expected(case)
    key = f"{case}/{num}/{variant}/{mode}"
    for name in ("loss", "grad_zimg", "grad_ztxt", "grad_t_param", "grad_b"):
        got = ring_results[f"{key}/{name}"]
        want = np.asarray(expected[name])
        if name in ("grad_t_param", "grad_b"):  # shaped like the parameter: () or (1,)
            param = CASES[case][name[len("grad_") :]]
            assert got.shape == np.shape(param), (name, got.shape)
            want = want.reshape(got.shape)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=ATOL, err_msg=f"{key} {name}")


@jax_only
@pytest.mark.multi_device
def test_gradients_are_not_trivial():
    # Guards the t = 2, b = -1 case against silently degenerating to near-zero gradients.
    expected = _expected("t2_b24_e16")
    assert np.abs(expected["grad_zimg"]).max() > 1e-2
    assert abs(expected["grad_t_param"]) > 1e-2 and abs(expected["grad_b"]) > 1e-2


@jax_only
@pytest.mark.multi_device
def test_indivisible_batch_names_b_and_d(ring_results):
    message = str(ring_results["errors/indivisible"])
    assert message.startswith("ValueError"), message
    assert "B=12" in message and "D=8" in message


# ---- error paths in this process (no distribution needed for most of them)


@pytest.fixture
def data_parallel():
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    yield
    keras.distribution.set_distribution(None)


def _unit_inputs(batch=4, width=3):
    x = _unit_rows(np.random.default_rng(1), batch, width).astype("float32")
    return x, x.copy(), math.log(10.0), -10.0


@jax_only
def test_without_distribution_points_to_sigmoid_loss():
    assert keras.distribution.distribution() is None
    assert not distributed.ring_available()
    assert distributed.batch_axis_size() is None
    with pytest.raises(RuntimeError, match="keras.distribution") as info:
        ring_sigmoid_loss(*_unit_inputs())
    assert "sigmoid_loss" in str(info.value) and "chunk_size" in str(info.value)


def test_non_jax_backend_explains(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    assert not distributed.ring_available()
    with pytest.raises(RuntimeError, match="JAX backend") as info:
        ring_sigmoid_loss(*_unit_inputs())
    assert "'tensorflow'" in str(info.value) and "sigmoid_loss" in str(info.value)


def test_unknown_variant_lists_valid_ones():
    with pytest.raises(ValueError, match="'ring'.*'bidir'"):
        ring_sigmoid_loss(*_unit_inputs(), variant="allgather")


@jax_only
def test_shape_checks(data_parallel):
    x, y, t, b = _unit_inputs()
    with pytest.raises(ValueError, match=r"\(B, E\)"):
        ring_sigmoid_loss(x[0], y[0], t, b)
    with pytest.raises(ValueError, match="square batch"):
        ring_sigmoid_loss(x, y[:2], t, b)
    with pytest.raises(ValueError, match="logit_scale"):
        ring_sigmoid_loss(x, y, np.zeros(2), b)


@jax_only
def test_runs_in_process_on_available_devices(data_parallel):
    # Whatever devices this process has (usually one CPU): value and (1,)-shaped parameters.
    num = distributed.batch_axis_size()
    assert distributed.ring_available() and num >= 1
    rng = np.random.default_rng(2)
    x, y = (_unit_rows(rng, 4 * num, 5) for _ in range(2))
    t, b = np.array([math.log(2.0)]), np.array([-1.0])
    for variant in distributed.VARIANTS:
        got = float(ring_sigmoid_loss(x, y, t, b, variant=variant))
        assert abs(got - reference.sigmoid_loss(x, y, t, b)) < ATOL
