"""The sigmoid loss and its closed-form chunked gradient against the NumPy oracle."""

import math

import keras
import numpy as np
import pytest

import keras_siglip_reference as reference
from keras_siglip.losses import SigmoidLoss, sigmoid_loss
from tests._grad import value_and_grad

TOL = 1e-5


def _normalised(rng, b, d):
    x = rng.standard_normal((b, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_spec_vector():
    # The test vector of docs/loss.md ("Analytic gradients"), computed from the definition.
    x = np.array([[1.0, 0.0], [0.6, 0.8]], np.float32)
    y = np.array([[0.8, 0.6], [0.0, 1.0]], np.float32)
    loss, (gx, gy, gt, gb) = value_and_grad(
        lambda x, y, t, b: sigmoid_loss(x, y, t, b), x, y, [math.log(10.0)], [-10.0]
    )
    assert loss == pytest.approx(2.3834583367, abs=1e-6)
    np.testing.assert_allclose(gx, [[-3.5231883, -2.6421642], [1.6052494, -3.2000484]], atol=1e-5)
    np.testing.assert_allclose(gy, [[-3.2000484, 1.6052494], [-2.6421642, -3.5231883]], atol=1e-5)
    assert gt[0] == pytest.approx(-5.1200774, abs=1e-5)
    assert gb[0] == pytest.approx(-0.68011821, abs=1e-6)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 8, 70])
@pytest.mark.parametrize("t,b", [(10.0, -10.0), (2.0, -1.0)])
def test_loss_and_gradients_match_oracle(chunk_size, t, b):
    rng = np.random.default_rng(chunk_size or 0)
    batch, dim = 21, 12  # 21 = uneven last chunk for sizes 8 and 3... and 1
    x, y = _normalised(rng, batch, dim), _normalised(rng, batch, dim)
    # Make the positives likelier than chance so G is not all one sign.
    y = (0.5 * x + y) / np.linalg.norm(0.5 * x + y, axis=1, keepdims=True)
    y = y.astype(np.float32)
    expected = reference.sigmoid_loss_grads(x, y, math.log(t), b)
    loss, (gx, gy, gt, gb) = value_and_grad(
        lambda x, y, s, c: sigmoid_loss(x, y, s, c, chunk_size=chunk_size),
        x,
        y,
        [math.log(t)],
        [b],
    )
    assert abs(loss - expected["loss"]) <= TOL
    np.testing.assert_allclose(gx, expected["grad_zimg"], atol=TOL)
    np.testing.assert_allclose(gy, expected["grad_ztxt"], atol=TOL)
    assert abs(gt[0] - expected["grad_t_param"]) <= TOL
    assert abs(gb[0] - expected["grad_b"]) <= TOL


def _oracle_case(batch=7, dim=5, seed=4):
    rng = np.random.default_rng(seed)
    x, y = _normalised(rng, batch, dim), _normalised(rng, batch, dim)
    return x, y, reference.sigmoid_loss_grads(x, y, math.log(4.0), -2.0)


def _assert_oracle(expected, loss, gx, gy, gt, gb):
    assert abs(float(loss) - expected["loss"]) <= TOL
    np.testing.assert_allclose(gx, expected["grad_zimg"], atol=TOL)
    np.testing.assert_allclose(gy, expected["grad_ztxt"], atol=TOL)
    assert abs(float(np.reshape(gt, -1)[0]) - expected["grad_t_param"]) <= TOL
    assert abs(float(np.reshape(gb, -1)[0]) - expected["grad_b"]) <= TOL


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 10])
def test_padded_chunked_loss_matches_oracle(chunk_size):
    """The form for a batch size known only at run time: zero-padded blocks, masked rows."""
    from keras_siglip.losses import _padded_chunked_loss

    x, y, expected = _oracle_case()
    loss, grads = value_and_grad(
        lambda x, y, s, c: _padded_chunked_loss(x, y, s, c, chunk_size),
        x, y, [math.log(4.0)], [-2.0],
    )
    _assert_oracle(expected, loss, *grads)


def test_chunked_loss_of_unknown_batch_size_in_a_tensorflow_graph():
    # Where the padded form is needed: a TF graph traced with batch None (a fit's tail batch).
    if keras.backend.backend() != "tensorflow":
        pytest.skip("only a TensorFlow graph has batches of unknown size here")
    import tensorflow as tf

    x, y, expected = _oracle_case()
    spec = tf.TensorSpec((None, x.shape[1]), tf.float32)

    @tf.function(input_signature=[spec, spec, tf.TensorSpec((1,)), tf.TensorSpec((1,))])
    def loss_and_grads(x, y, s, c):
        with tf.GradientTape() as tape:
            tape.watch([x, y, s, c])
            loss = sigmoid_loss(x, y, s, c, chunk_size=3)
        return loss, tape.gradient(loss, [x, y, s, c])

    loss, grads = loss_and_grads(x, y, [math.log(4.0)], [-2.0])
    _assert_oracle(expected, loss, *(g.numpy() for g in grads))


def test_scalar_scale_and_bias_gradients_keep_shape():
    rng = np.random.default_rng(3)
    x, y = _normalised(rng, 6, 4), _normalised(rng, 6, 4)
    expected = reference.sigmoid_loss_grads(x, y, 0.5, -1.0)
    _, (_, _, gt, gb) = value_and_grad(
        lambda x, y, s, c: sigmoid_loss(x, y, s, c, chunk_size=4), x, y, 0.5, -1.0
    )
    assert gt.shape == () and gb.shape == ()
    assert abs(float(gt) - expected["grad_t_param"]) <= TOL
    assert abs(float(gb) - expected["grad_b"]) <= TOL


def test_stable_for_extreme_logits():
    x = np.eye(4, dtype=np.float32)
    y = -np.eye(4, dtype=np.float32)
    # t = e^6 ~ 403: logits of -413 on the diagonal, a naive log(sigmoid) gives inf.
    value = float(sigmoid_loss(x, y, 6.0, -10.0, chunk_size=2))
    expected = reference.sigmoid_loss(x, y, 6.0, -10.0)
    assert np.isfinite(value)
    assert value == pytest.approx(expected, rel=1e-6)


def test_sigmoid_loss_class():
    rng = np.random.default_rng(5)
    x, y = _normalised(rng, 5, 3), _normalised(rng, 5, 3)
    pred = {"image_embeddings": x, "text_embeddings": y, "logit_scale": np.array([1.2], np.float32),
            "logit_bias": np.array([-3.0], np.float32)}
    value = float(SigmoidLoss(chunk_size=2)(None, pred))
    assert value == pytest.approx(reference.sigmoid_loss(x, y, 1.2, -3.0), abs=TOL)
    restored = SigmoidLoss.from_config(SigmoidLoss(chunk_size=2).get_config())
    assert restored.chunk_size == 2


def test_bad_inputs():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="square batch"):
        sigmoid_loss(x, np.zeros((5, 3), np.float32), 0.0, 0.0)
    with pytest.raises(ValueError, match=r"\(batch, dim\)"):
        sigmoid_loss(np.zeros((4,), np.float32), x, 0.0, 0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        sigmoid_loss(x, x, 0.0, 0.0, chunk_size=0)
    with pytest.raises(ValueError, match="logit_scale"):
        SigmoidLoss()(None, {"image_embeddings": x, "text_embeddings": x})
