"""Save (`save DIR`) or load and compare (`load DIR`) tiny `.keras` models on $KERAS_BACKEND."""

import os
import sys

import keras
import numpy as np

from keras_siglip.testing import build_tiny, build_tiny_naflex, random_naflex_inputs

BACKEND = keras.backend.backend()
BACKENDS = ("jax", "tensorflow", "torch")


def inputs():
    rng = np.random.default_rng(0)
    fixed = {
        "images": rng.uniform(-1, 1, (2, 32, 24, 3)).astype("float32"),
        "token_ids": rng.integers(0, 101, (2, 16)).astype("int32"),
    }
    naflex = {
        "images": random_naflex_inputs([(2, 3), (3, 4)], 16, seed=1),
        "token_ids": rng.integers(0, 99, (2, 16)).astype("int32"),
    }
    return {"fixed": fixed, "naflex": naflex}


def outputs(model, data):
    # What a user script does, unchanged on every backend: call, then np.asarray the outputs.
    out = model(data)
    results = {k: np.asarray(v) for k, v in out.items()}
    results["encoded_images"] = np.asarray(model.encode_images(data["images"]))
    results["encoded_texts"] = np.asarray(model.encode_texts(data["token_ids"]))
    return results


def save(folder):
    models = {"fixed": build_tiny("fixture_like", seed=7), "naflex": build_tiny_naflex(seed=8)}
    results = {}
    for name, model in models.items():
        model.save(os.path.join(folder, f"{name}_{BACKEND}.keras"))
        for key, value in outputs(model, inputs()[name]).items():
            results[f"{name}/{key}"] = value
    np.savez(os.path.join(folder, f"outputs_{BACKEND}.npz"), **results)


def load(folder):
    worst = 0.0
    for source in BACKENDS:
        if source == BACKEND:
            continue
        expected = np.load(os.path.join(folder, f"outputs_{source}.npz"))
        for name in ("fixed", "naflex"):
            model = keras.saving.load_model(os.path.join(folder, f"{name}_{source}.keras"))
            got = outputs(model, inputs()[name])
            assert set(got) == {k.split("/", 1)[1] for k in expected.files if k.startswith(name)}
            for key, value in got.items():
                err = float(np.max(np.abs(value - expected[f"{name}/{key}"])))
                worst = max(worst, err)
                assert err <= 1e-5, f"{source} -> {BACKEND} {name}/{key}: max error {err}"
    print(f"worst {worst}")


if __name__ == "__main__":
    {"save": save, "load": load}[sys.argv[1]](sys.argv[2])
