"""Run with 8 simulated JAX devices: one fit() step on one device vs data-parallel vs sharded.

Usage: python tests/_training_worker.py OUT.npz
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_siglip import distributed  # noqa: E402
from keras_siglip.convert import model_to_tree  # noqa: E402
from keras_siglip.convert.big_vision import assign_tree  # noqa: E402
from keras_siglip.testing import build_tiny, random_tree  # noqa: E402


def data():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (16, 32, 24, 3)).astype("float32")
    ids = rng.integers(0, 101, (16, 16)).astype("int32")
    return {"images": images, "token_ids": ids}


def one_step(tree, ring):
    model = build_tiny("fixture_like")
    assign_tree(model, tree)
    model.compile(optimizer=keras.optimizers.SGD(0.5), ring=ring)
    calls = []
    original = distributed.ring_sigmoid_loss

    def counting(*args, **kwargs):
        calls.append(kwargs.get("variant"))
        return original(*args, **kwargs)

    distributed.ring_sigmoid_loss = counting
    try:
        history = model.fit(data(), batch_size=16, epochs=1, shuffle=False, verbose=0)
    finally:
        distributed.ring_sigmoid_loss = original
    return model_to_tree(model), history.history["loss"][0], calls


def main(out):
    import jax

    assert jax.device_count() == 8, jax.devices()
    tree = random_tree(build_tiny("fixture_like"), seed=11)
    results = {f"init/{k}": v for k, v in tree.items()}
    single, loss, calls = one_step(tree, ring=None)
    assert not calls
    results.update({f"single/{k}": v for k, v in single.items()})
    results["single_loss"] = loss

    keras.distribution.set_distribution(keras.distribution.DataParallel())
    for variant in ("ring", "bidir"):
        weights, loss, calls = one_step(tree, ring=variant)
        assert calls and set(calls) == {variant}, calls
        results.update({f"dp_{variant}/{k}": v for k, v in weights.items()})
        results[f"dp_{variant}_loss"] = loss

    mesh = keras.distribution.DeviceMesh((2, 4), ("model", "batch"), keras.distribution.list_devices())
    keras.distribution.set_distribution(
        keras.distribution.ModelParallel(
            layout_map=distributed.siglip_layout_map(mesh), batch_dim_name="batch"
        )
    )
    weights, loss, calls = one_step(tree, ring="auto")
    assert calls, "ModelParallel with a batch axis should use the ring"
    results.update({f"mp/{k}": v for k, v in weights.items()})
    results["mp_loss"] = loss
    np.savez(out, **results)


if __name__ == "__main__":
    main(sys.argv[1])
