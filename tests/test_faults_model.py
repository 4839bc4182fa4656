"""Bad model inputs and training faults: the same error type and message on every backend.

Each fault class runs on the current KERAS_BACKEND (the suite runs once per backend) through
every path that takes model inputs: the eager call, `encode_*`, `predict`, `fit`, `evaluate`.
Every check asserts the error type and that the message names the problem and the fix.
"""

import keras
import numpy as np
import pytest

from keras_siglip.losses import sigmoid_loss
from keras_siglip.testing import build_tiny, build_tiny_naflex, random_naflex_inputs

VOCAB, LENGTH, SIZE = 101, 16, (32, 24)


@pytest.fixture(scope="module")
def model():
    model = build_tiny("fixture_like", seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), ring=None)
    return model


def _data(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.uniform(-1, 1, (n, *SIZE, 3)).astype("float32"),
        "token_ids": rng.integers(0, VOCAB, (n, LENGTH)).astype("int32"),
    }


def _run(model, path, data):
    """Feed `data` (a dict of model inputs) to `model` through `path`."""
    if path == "call":
        return model(data)
    if path == "encode":
        if "images" in data:
            model.encode_images(data["images"])
        if "token_ids" in data:
            model.encode_texts(data["token_ids"])
        return None
    if path == "predict":
        return model.predict(data, batch_size=4, verbose=0)
    if path == "fit":
        return model.fit(data, batch_size=4, epochs=1, verbose=0)
    if path == "evaluate":
        return model.evaluate(data, batch_size=4, verbose=0)
    raise AssertionError(path)


PATHS = ["call", "encode", "predict", "fit", "evaluate"]


def _with(key, value, n=4):
    data = _data(n)
    data[key] = value(data[key])
    return data


def _set(array, index, value):
    array = array.copy()
    array[index] = value
    return array


# (fault class, the data, the paths, error type, parts the message must name)
CASES = [
    ("token_id_too_large", lambda: _with("token_ids", lambda t: _set(t, (0, 0), 5000)), PATHS,
     ValueError, ["outside the vocabulary", "5000", "[0, 100]", "tokenizer"]),
    ("token_id_negative", lambda: _with("token_ids", lambda t: _set(t, (1, 2), -3)), PATHS,
     ValueError, ["outside the vocabulary", "-3", "tokenizer"]),
    ("token_ids_float", lambda: _with("token_ids", lambda t: t.astype("float32")), PATHS,
     ValueError, ["token_ids", "integer", "float32"]),
    ("token_ids_wrong_length", lambda: _with("token_ids", lambda t: t[:, :9]), PATHS,
     ValueError, ["token_ids", "(batch, 16)", "(4, 9)"]),
    ("images_uint8", lambda: _with("images", lambda x: ((x + 1) * 127.5).astype("uint8")), PATHS,
     ValueError, ["uint8", "[-1, 1]", "keras_siglip.preprocessing.preprocess_images"]),
    ("images_0_255_float", lambda: _with("images", lambda x: (x + 1) * 127.5), PATHS,
     ValueError, ["[-1, 1]", "0-255", "preprocess_images", "image_range=False"]),
    ("images_wrong_size", lambda: _with("images", lambda x: np.zeros((4, 64, 64, 3), "f4")), PATHS,
     ValueError, ["64x64", "32x24", "Resize"]),
    ("images_not_rgb", lambda: _with("images", lambda x: x[..., :1]), PATHS,
     ValueError, ["(batch, height, width, 3)", "channels last"]),
    ("batch_sizes_differ", lambda: _with("token_ids", lambda t: np.concatenate([t, t[:2]])),
     ["predict", "fit", "evaluate"], ValueError,
     ["as many 'images' as 'token_ids'", "4 images and 6 token_ids"]),
    ("images_only_in_training", lambda: {"images": _data()["images"]}, ["fit", "evaluate"],
     ValueError, ["need both 'images' and 'token_ids'", "only ['images']"]),
    ("unknown_key", lambda: dict(_data(), tokens=_data()["token_ids"]), PATHS[:1] + PATHS[2:],
     ValueError, ["unknown input keys ['tokens']", "'images' and 'token_ids'"]),
    ("not_a_dict", lambda: _data()["images"], ["call", "predict"],
     ValueError, ["expects a dict with 'images' and/or 'token_ids'", "ndarray"]),
]


@pytest.mark.parametrize(
    "fault, make, path, error, parts",
    [
        pytest.param(fault, make, path, error, parts, id=f"{fault}-{path}")
        for fault, make, paths, error, parts in CASES
        for path in paths
    ],
)
def test_bad_inputs_name_problem_and_fix(model, fault, make, path, error, parts):
    if path == "encode" and fault == "not_a_dict":
        pytest.skip("encode_* take one tower's input")
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(error) as info:
        _run(model, path, make())
    message = str(info.value)
    for part in parts:
        assert part in message, (part, message)
    assert "Exception encountered" not in message  # raised before any layer, not wrapped
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_bad_shape_after_a_valid_compiled_call(model):
    """TensorFlow relaxes the traced shapes after a second signature: checks run before it."""
    data = _data()
    model.predict(data, verbose=0)
    model.predict(_data(3), verbose=0)  # another signature: shapes relaxed from here on
    model.encode_images(data["images"])
    for path in ("predict", "encode", "call"):
        with pytest.raises(ValueError, match="64x64 give a 16x16 patch grid.*Resize"):
            _run(model, path, dict(data, images=np.zeros((4, 64, 64, 3), "float32")))


@pytest.mark.parametrize("option", ["sample_weight", "class_weight"])
@pytest.mark.parametrize("path", ["fit", "evaluate"])
def test_per_example_weights_are_refused(model, option, path):
    if path == "evaluate" and option == "class_weight":
        pytest.skip("evaluate has no class_weight")
    weights = np.ones(4, "float32") if option == "sample_weight" else {0: 1.0}
    with pytest.raises(ValueError, match=f"does not support {option}.*Remove {option}"):
        getattr(model, path)(_data(), **{option: weights}, verbose=0)


@pytest.mark.parametrize("where, value", [((0, 0, 0, 0), np.nan), ((3, 31, 23, 2), np.inf)])
def test_non_finite_pixel_stops_training_and_keeps_weights(where, value):
    model = build_tiny("fixture_like", seed=4)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), ring=None)
    good, bad = _data(4, seed=1), _data(4, seed=2)
    model.fit(good, batch_size=4, epochs=1, verbose=0)  # a real step first: weights move
    before = [np.array(w) for w in model.get_weights()]
    bad["images"] = _set(bad["images"], where, value)
    with pytest.raises(FloatingPointError) as info:
        model.fit(bad, batch_size=4, epochs=1, verbose=0)
    message = str(info.value)
    for part in ("not finite", "epoch 1, batch 1", "not applied", "set_input_checks(finite=True)"):
        assert part in message.replace("became nan", "not finite").replace(
            "became inf", "not finite"
        ), message
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert np.asarray(model(good)["logits"]).shape == (4, 4)  # plain outputs after the raise
    # Training goes on from the same weights once the data is clean.
    history = model.fit(good, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_finite_check_on_request(value):
    model = build_tiny("fixture_like", seed=5)
    images = _set(_data()["images"], (1, 2, 3, 0), value)
    model.encode_images(_data()["images"])  # off by default; the clean batch runs
    model.set_input_checks(finite=True)
    for path in ("encode", "call", "predict"):
        data = {"images": images} if path != "call" else dict(_data(), images=images)
        with pytest.raises(ValueError, match=r"1 NaN or inf value\(s\).*Clean or drop"):
            _run(model, path, data)
    with pytest.raises(TypeError, match=r"finite must be True, False or None; received 'yes'"):
        model.set_input_checks(finite="yes")


def test_image_range_check_can_be_turned_off():
    model = build_tiny("fixture_like", seed=5)
    images = _data()["images"] * 2.0
    with pytest.raises(ValueError, match="image_range=False"):
        model.encode_images(images)
    model.set_input_checks(image_range=False)
    assert model.encode_images(images).shape == (4, 48)


def _dataset(data, batch=4):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(data).batch(batch)


@pytest.mark.parametrize("bad_id", [5000, -3])
def test_ids_seen_only_inside_the_step(model, bad_id):
    """tf.data: the ids reach the model only inside the compiled step; same answer anyway."""
    data = _data(8)
    data["token_ids"] = _set(data["token_ids"], (1, 0), bad_id)  # in the first batch
    with pytest.raises(ValueError, match=r"example\(s\) \[1\] hold ids outside.*tokenizer"):
        model.predict(_dataset(data), verbose=0)
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(FloatingPointError, match="batch 1.*not applied.*token ids outside"):
        model.fit(_dataset(data), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(FloatingPointError, match="evaluate: the loss became nan at batch 1.*"
                                                 "token ids outside"):
        model.evaluate(_dataset(data), verbose=0)
    # The model is whole after the raise (JAX's loops detach the variables while they run).
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert np.isfinite(model.evaluate(_dataset(_data(8)), verbose=0))


@pytest.mark.parametrize("bad_id", [5000, -3])
def test_a_tower_alone_in_keras_loops(model, bad_id):
    """`model.text_encoder.predict`: checked up front, or after the step; same on every backend."""
    ids = _set(_data(8)["token_ids"], (5, 3), bad_id)
    with pytest.raises(ValueError, match=rf"example\(s\) \[5\].*found ids \[{bad_id}\]"):
        model.text_encoder.predict(ids, verbose=0)
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(ids).batch(4)
    with pytest.raises(ValueError, match=r"example\(s\) \[5\].*seen only inside the model's step"):
        model.text_encoder.predict(dataset, verbose=0)
    uint8 = ((_data()["images"] + 1) * 127.5).astype("uint8")
    with pytest.raises(ValueError, match="uint8.*preprocess_images"):
        model.vision_encoder.predict(uint8, verbose=0)
    embeddings = model.text_encoder.predict(_data(8)["token_ids"], verbose=0, batch_size=4)
    np.testing.assert_allclose(embeddings, np.asarray(model.encode_texts(_data(8)["token_ids"])),
                               atol=1e-5)


def test_dataset_spec_is_checked_up_front(model):
    data = _data(8)
    data["images"] = ((data["images"] + 1) * 127.5).astype("uint8")
    for path in ("predict", "fit", "evaluate"):
        with pytest.raises(ValueError, match="uint8.*preprocess_images"):
            getattr(model, path)(_dataset(data), verbose=0)


@pytest.mark.parametrize("batch", [0])
def test_empty_batch_loss(batch):
    x = np.zeros((batch, 8), "float32")
    with pytest.raises(ValueError, match="empty batch.*at least one image-text pair"):
        sigmoid_loss(x, x, 0.0, 0.0)
    with pytest.raises(ValueError, match="empty batch"):
        sigmoid_loss(x, x, 0.0, 0.0, chunk_size=2)


@pytest.fixture(scope="module")
def naflex():
    return build_tiny_naflex(seed=1)


def _patches(**change):
    inputs = random_naflex_inputs([(2, 3), (3, 4)], 16, padding="random")
    inputs.update({k: v(inputs[k]) for k, v in change.items()})
    return inputs


@pytest.mark.parametrize("path", ["call", "encode", "predict"])
@pytest.mark.parametrize(
    "change, parts",
    [
        (dict(patches=lambda p: ((p + 1) * 127.5).clip(0, 255).astype("uint8")),
         ["`patches` have dtype uint8", "[-1, 1]", "naflex_patchify"]),
        (dict(patches=lambda p: np.where(np.abs(p) <= 1, (p + 1) * 127.5, p)),
         ["`patches` hold values", "0-255", "naflex_patchify"]),
    ],
    ids=["uint8", "0_255"],
)
def test_naflex_pixel_rules(naflex, path, change, parts):
    ids = np.ones((2, 16), "int32")
    inputs = _patches(**change)
    data = {"images": inputs, "token_ids": ids}
    with pytest.raises(ValueError) as info:
        if path == "encode":
            naflex.encode_images(inputs)
        else:
            _run(naflex, path, data)
    for part in parts:
        assert part in str(info.value), (part, str(info.value))


def test_naflex_padding_may_hold_anything(naflex):
    # The value checks read the valid rows only: padded rows of 1e4 or NaN are fine.
    inputs = _patches()
    inputs["patches"][0, 6:] = np.nan
    naflex.set_input_checks(finite=True)
    try:
        assert np.all(np.isfinite(np.asarray(naflex.encode_images(inputs))))
    finally:
        naflex.set_input_checks(finite=False)


def test_the_same_user_script_runs_on_every_backend(model):
    """Call the model, take np.asarray of the outputs: works unchanged on JAX, TF and torch."""
    data = _data(3)
    out = model(data)
    logits = np.asarray(out["logits"])
    assert logits.shape == (3, 3) and np.all(np.isfinite(logits))
    assert np.asarray(model(data, training=False)["image_embeddings"]).shape == (3, 48)
    assert np.asarray(model.encode_texts(data["token_ids"])).shape == (3, 48)
    predicted = model.predict(data, verbose=0)
    np.testing.assert_allclose(predicted["logits"], logits, atol=1e-5)


def test_torch_training_calls_keep_the_graph(model):
    if keras.backend.backend() != "torch":
        pytest.skip("autograd recording is torch's")
    import torch

    data = _data(3)
    out = model(data, training=True)  # a custom training loop's call
    assert out["image_embeddings"].requires_grad
    loss = model.compute_loss(x=data, y_pred=out)
    loss.backward()
    grads = [v.value.grad for v in model.trainable_variables]
    assert all(g is not None for g in grads)
    for v in model.trainable_variables:
        v.value.grad = None
    images = torch.tensor(data["images"], requires_grad=True)
    embeddings = model({"images": images})["image_embeddings"]  # gradients w.r.t. the inputs
    assert embeddings.requires_grad


def test_a_tower_inside_a_user_model_trains():
    """Calls outside training record no torch graph; a tower inside a model that `fit` trains
    still gets its gradients (Keras passes training=True down to it)."""
    tower = build_tiny("fixture_like", seed=6).vision_encoder

    class Probe(keras.Model):
        def __init__(self):
            super().__init__()
            self.tower = tower
            self.head = keras.layers.Dense(2)

        def call(self, images):
            return self.head(self.tower(images))

    probe = Probe()
    data = _data(4)
    probe.compile(optimizer=keras.optimizers.SGD(0.5),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = np.array(tower.head.weights[0])
    probe.fit(data["images"], np.array([0, 1, 0, 1]), epochs=1, batch_size=4, verbose=0)
    assert np.max(np.abs(np.array(tower.head.weights[0]) - before)) > 1e-4
    assert np.asarray(tower(data["images"])).shape == (4, 48)  # fit over: plain outputs again
