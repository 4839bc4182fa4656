"""One backend's part of `python -m keras_siglip backends`, run in a child process.

`python -m keras_siglip.apps.backends_worker SPEC_JSON OUT_DIR` with `KERAS_BACKEND` set:
builds the model the spec names (the same weights in every child: a NumPy tree drawn from a
seed, or the same checkpoint), encodes the parent's inputs in float32 and bfloat16, writes the
embeddings of the first rows (`embeddings.npz`, compared with the oracle by the parent) and
the encode times (`result.json`).

Timing: each (dtype, batch) is called twice untimed first (tracing and compiling happen
there), then `rounds` times; each round ends when the embeddings are NumPy arrays on the host
(so asynchronous dispatch is waited for), and the median round is reported.
"""

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 8)
DTYPES = ("float32", "bfloat16")
ORACLE_ROWS = 2  # rows compared with the NumPy oracle (which is slow on purpose)


def model_tree(spec):
    """`(tree, image_size)`: the spec's weights as a flat big_vision float32 dict, and the
    fixed input size (None for NaFlex). Pure NumPy except for a checkpoint, which is loaded."""
    from keras_siglip import testing
    from keras_siglip.convert.names import tree_shapes

    if spec["kind"] == "checkpoint":
        from keras_siglip.convert import model_to_tree
        from keras_siglip.models import SigLIP, SigLIPNaFlexVisionEncoder

        options = {"preset": spec["preset"]} if spec.get("preset") else {}
        model = SigLIP.from_preset(spec["source"], **options)
        fixed = not isinstance(model.vision_encoder, SigLIPNaFlexVisionEncoder)
        return model_to_tree(model), (tuple(model.vision_encoder.image_size) if fixed else None)
    config = spec["config"]
    tree = testing.random_values(sorted(tree_shapes(config).items()), spec["seed"])
    size = None if config["naflex"] else tuple(config["vision"]["image_size"])
    return tree, size


def _encode(model, inputs, rows):
    """Normalised image and text embeddings of the first `rows` examples, as NumPy."""
    import keras

    images = inputs["images"]
    if isinstance(images, dict):
        images = {k: v[:rows] for k, v in images.items()}
    else:
        images = images[:rows]
    zimg = keras.ops.convert_to_numpy(model.encode_images(images)).astype(np.float64)
    ztxt = keras.ops.convert_to_numpy(model.encode_texts(inputs["token_ids"][:rows]))
    ztxt = ztxt.astype(np.float64)
    # big_vision's normalisation, as the model's own call does it.
    zimg = zimg / (np.linalg.norm(zimg, axis=-1, keepdims=True) + 1e-8)
    ztxt = ztxt / (np.linalg.norm(ztxt, axis=-1, keepdims=True) + 1e-8)
    return zimg, ztxt


def _timed(model, inputs, batch, rounds):
    """Median seconds of encoding `batch` images and `batch` texts, and the last embeddings."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        embeddings = _encode(model, inputs, batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times), embeddings


def _load_inputs(path):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if "patches" in arrays:
        images = {k: arrays[k] for k in ("patches", "patch_mask", "spatial_shapes")}
    else:
        images = arrays["images"]
    return {"images": images, "token_ids": arrays["token_ids"]}


def _wait_for(path, poll=0.05):
    while not path.exists():
        time.sleep(poll)


def run(spec, out_dir):
    """Build and warm up on the current backend, signal `ready`, wait for `go`, time, and
    write `result.json` and `embeddings.npz` to `out_dir`.

    The parent may set up several backends at once but lets one time at a time: between
    `ready` and `go` this process only sleeps.
    """
    import keras

    from keras_siglip.convert import load_big_vision

    out_dir = Path(out_dir)
    inputs = _load_inputs(out_dir.parent / "inputs.npz")
    tree, image_size = model_tree(spec)
    result = {"backend": keras.backend.backend(), "keras": keras.__version__, "seconds": {},
              "errors": {}}  # fmt: skip
    models = {}
    for dtype in DTYPES:
        try:
            keras.config.set_dtype_policy(dtype)
            model = load_big_vision(dict(tree), image_size=image_size)
            for batch in BATCHES:  # warm-up: tracing and compiling happen here
                for _ in range(2):
                    _encode(model, inputs, batch)
            models[dtype] = model
        except Exception as error:  # reported per dtype; the other dtype still runs
            result["errors"][dtype] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        finally:
            keras.config.set_dtype_policy("float32")
    (out_dir / "ready").touch()
    _wait_for(out_dir / "go")
    embeddings = {}
    for dtype, model in models.items():
        seconds = {}
        for batch in BATCHES:
            seconds[str(batch)], (zimg, ztxt) = _timed(model, inputs, batch, spec["rounds"])
        result["seconds"][dtype] = seconds
        # The oracle's rows are the first of the batch-8 call (rows do not interact).
        embeddings[f"{dtype}/zimg"], embeddings[f"{dtype}/ztxt"] = (
            zimg[:ORACLE_ROWS], ztxt[:ORACLE_ROWS])
    np.savez(out_dir / "embeddings.npz", **embeddings)
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    run(json.loads(Path(sys.argv[1]).read_text()), sys.argv[2])
