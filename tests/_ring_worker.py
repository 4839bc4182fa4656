"""Runs `ring_sigmoid_loss` on simulated CPU devices for tests/test_distributed.py.

Usage: python tests/_ring_worker.py IN.npz OUT.npz

Must start in a fresh process: XLA_FLAGS=--xla_force_host_platform_device_count=8 and
KERAS_BACKEND=jax are set here before jax is imported (the device count cannot change later).
IN.npz holds, per case name C, `C/zimg`, `C/ztxt`, `C/t_param`, `C/b` and `C/devices` (the D to try).
OUT.npz gets `C/D/variant/mode/{loss,grad_zimg,grad_ztxt,grad_t_param,grad_b}` for mode in
eager, jit (inputs sharded on the batch axis, as `fit` passes them) and model_parallel (a 2-D mesh
with the batch axis second), plus `errors/<name>` messages of the checks that must fail.
"""

import os
import sys

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_siglip.distributed import VARIANTS, batch_axis_size, ring_sigmoid_loss  # noqa: E402

GRAD_NAMES = ("grad_zimg", "grad_ztxt", "grad_t_param", "grad_b")


def _value_and_grad(variant):
    def loss(zimg, ztxt, t_param, b):
        return ring_sigmoid_loss(zimg, ztxt, t_param, b, variant=variant)

    return jax.value_and_grad(loss, argnums=(0, 1, 2, 3))


def _record(out, key, value_and_grads):
    loss, grads = value_and_grads
    out[f"{key}/loss"] = np.asarray(loss)
    for name, grad in zip(GRAD_NAMES, grads):
        out[f"{key}/{name}"] = np.asarray(grad)


def _error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the test checks the type and message
        return f"{type(e).__name__}: {e}"
    return "no error"


def main(in_path, out_path):
    assert jax.device_count() == 8, jax.devices()
    cases = np.load(in_path)
    names = sorted({k.split("/")[0] for k in cases.files})
    out = {}
    for case in names:
        args = [cases[f"{case}/{k}"] for k in ("zimg", "ztxt", "t_param", "b")]
        args = [np.asarray(a, np.float32) for a in args]
        for num in cases[f"{case}/devices"]:
            num = int(num)
            dist = keras.distribution.DataParallel(devices=jax.devices()[:num])
            keras.distribution.set_distribution(dist)
            assert batch_axis_size() == num
            sharding = dist.get_data_layout(args[0].shape).backend_layout
            sharded = [jax.device_put(a, sharding) for a in args[:2]] + args[2:]
            for variant in VARIANTS:
                fn = _value_and_grad(variant)
                _record(out, f"{case}/{num}/{variant}/jit", jax.jit(fn)(*sharded))
                if num == 8:
                    _record(out, f"{case}/{num}/{variant}/eager", fn(*args))
            if num == 8:
                # ModelParallel on a (model=2, batch=4) mesh: the batch axis is not the first one.
                mesh = keras.distribution.DeviceMesh((2, 4), ("model", "batch"), jax.devices())
                layout_map = keras.distribution.LayoutMap(mesh)
                keras.distribution.set_distribution(
                    keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
                )
                assert batch_axis_size() == 4
                for variant in VARIANTS:
                    _record(
                        out,
                        f"{case}/4/{variant}/model_parallel",
                        jax.jit(_value_and_grad(variant))(*args),
                    )
    keras.distribution.set_distribution(None)

    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()[:8]))
    x = np.eye(12, 4, dtype=np.float32)
    out["errors/indivisible"] = np.asarray(_error(lambda: ring_sigmoid_loss(x, x, 0.0, 0.0)))
    keras.distribution.set_distribution(None)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
