"""`python -m keras_siglip check`: this backend against the NumPy oracle, as a table."""

import numpy as np


def _compare(model, tree, seed):
    import keras_siglip_reference as reference

    rng = np.random.default_rng(seed)
    vision, text = model.vision_encoder, model.text_encoder
    images = rng.uniform(-1, 1, (3, *vision.image_size, 3)).astype(np.float32)
    ids = rng.integers(0, text.vocabulary_size, (3, text.sequence_length)).astype(np.int32)
    ours = model({"images": images, "token_ids": ids})
    oracle = reference.two_tower(tree, images, ids)
    from keras import ops

    def err(a, b):
        return float(np.max(np.abs(np.asarray(ops.convert_to_numpy(a), np.float64) - b)))

    rows = {
        "image embedding": err(model.encode_images(images), oracle["zimg_unnorm"]),
        "text embedding": err(model.encode_texts(ids), oracle["ztxt_unnorm"]),
        "logits": err(ours["logits"], oracle["logits"]),
    }
    from keras_siglip.losses import sigmoid_loss

    zimg = oracle["zimg"].astype(np.float32)
    ztxt = oracle["ztxt"].astype(np.float32)
    t, b = tree["t"], tree["b"]
    expected = reference.sigmoid_loss(zimg, ztxt, t, b)
    rows["loss (dense)"] = abs(float(sigmoid_loss(zimg, ztxt, t, b)) - expected)
    rows["loss (chunk 2)"] = abs(float(sigmoid_loss(zimg, ztxt, t, b, chunk_size=2)) - expected)
    return rows


def _compare_naflex(seed):
    import keras_siglip_reference as reference
    from keras import ops

    from keras_siglip.testing import build_tiny_naflex, random_naflex_inputs, random_tree

    model = build_tiny_naflex(seed=seed)
    tree = random_tree(model, seed=seed)
    # Grids that downsample one axis of the 4x4 table and upsample the other, the identity, a
    # strip; padded patches hold random values that must not matter.
    inputs = random_naflex_inputs([(2, 12), (4, 4), (3, 5), (1, 24)], 24, seed=seed, padding="random")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, model.text_encoder.vocabulary_size, (4, model.text_encoder.sequence_length))
    ids = ids.astype(np.int32)
    oracle = reference.two_tower(tree, token_ids=ids, naflex=inputs)
    ours = model({"images": inputs, "token_ids": ids})

    def err(a, b):
        return float(np.max(np.abs(np.asarray(ops.convert_to_numpy(a), np.float64) - b)))

    return {
        "image embedding": err(model.encode_images(inputs), oracle["zimg_unnorm"]),
        "logits": err(ours["logits"], oracle["logits"]),
    }


def run_check(tolerance=1e-5):
    import keras

    from keras_siglip.testing import TINY_CONFIGS, build_tiny, random_tree

    print(f"keras-siglip check: backend {keras.backend.backend()}, float32, tolerance {tolerance:g}")
    print(f"{'config':<18} {'output':<16} {'max |keras - oracle|':>22}  status")
    failures = 0
    for i, name in enumerate(TINY_CONFIGS):
        model = build_tiny(name, seed=i)
        tree = random_tree(model, seed=i)
        for output, error in _compare(model, tree, seed=i).items():
            ok = error <= tolerance
            failures += not ok
            print(f"{name:<18} {output:<16} {error:>22.3e}  {'ok' if ok else 'FAIL'}")
    for output, error in _compare_naflex(seed=7).items():
        ok = error <= tolerance
        failures += not ok
        print(f"{'naflex_mixed':<18} {output:<16} {error:>22.3e}  {'ok' if ok else 'FAIL'}")
    print("all outputs within tolerance" if not failures else f"{failures} output(s) out of tolerance")
    return 0 if not failures else 1
