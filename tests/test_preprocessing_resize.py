"""Tests of `keras_siglip.preprocessing.resize` against docs/naflex.md's weights, Pillow and
TensorFlow."""

import numpy as np
import pytest

from keras_siglip.preprocessing import resize as R

pytestmark = pytest.mark.backend_independent


# docs/naflex.md: the antialiased bilinear weights of a 4-long axis resized to S.
SPEC_WEIGHTS = {
    2: [[3 / 7, 3 / 7, 1 / 7, 0], [0, 1 / 7, 3 / 7, 3 / 7]],
    3: [[0.7, 0.3, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.3, 0.7]],
    6: [
        [1, 0, 0, 0],
        [0.5, 0.5, 0, 0],
        [0, 5 / 6, 1 / 6, 0],
        [0, 1 / 6, 5 / 6, 0],
        [0, 0, 0.5, 0.5],
        [0, 0, 0, 1],
    ],
    1: [[5 / 24, 7 / 24, 7 / 24, 5 / 24]],
}


@pytest.mark.parametrize("out_size", sorted(SPEC_WEIGHTS))
def test_bilinear_weights_match_spec_vectors(out_size):
    np.testing.assert_allclose(
        R.resample_weights(4, out_size, "bilinear"), SPEC_WEIGHTS[out_size], atol=1e-12
    )


def test_bilinear_weights_16_to_8_interior_rows():
    w = R.resample_weights(16, 8, "bilinear")
    np.testing.assert_allclose(w[3, 5:9], [0.125, 0.375, 0.375, 0.125], atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)


def test_unknown_filter_lists_valid_ones():
    with pytest.raises(ValueError, match="bicubic"):
        R.resample_weights(4, 2, "lanczos")


@pytest.mark.parametrize("filter_name", ["bilinear", "bicubic"])
def test_pil_resize_is_bit_exact(filter_name):
    PIL_Image = pytest.importorskip("PIL.Image")
    resample = {"bilinear": PIL_Image.BILINEAR, "bicubic": PIL_Image.BICUBIC}[filter_name]
    rng = np.random.default_rng(0)
    # Random sizes cover up/down/mixed scalings, so both pass orders are exercised.
    for trial in range(150):
        top = (6, 40, 160)[trial % 3]
        ih, iw, oh, ow = (int(s) for s in rng.integers(1, top, 4))
        image = rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)
        expected = np.asarray(PIL_Image.fromarray(image).resize((ow, oh), resample=resample))
        got = R.pil_resize(image, (oh, ow), filter_name)
        np.testing.assert_array_equal(got, expected, err_msg=f"{(ih, iw)} -> {(oh, ow)}")


def test_pil_resize_rejects_float():
    with pytest.raises(ValueError, match="uint8"):
        R.pil_resize(np.zeros((4, 4, 3), np.float32), (2, 2))


def test_antialias_and_plain_bilinear_match_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    for _ in range(60):
        ih, iw, oh, ow = (int(s) for s in rng.integers(1, 90, 4))
        image = rng.integers(0, 256, (ih, iw, 3), dtype=np.uint8)
        floats = image.astype(np.float32) / 127.5 - 1
        expected = tf.image.resize(floats, (oh, ow), "bilinear", antialias=True).numpy()
        np.testing.assert_allclose(R.antialias_resize(floats, (oh, ow)), expected, atol=2e-5)
        # Without antialias TensorFlow's float32 arithmetic is reproduced exactly.
        expected = tf.image.resize(image, (oh, ow), "bilinear").numpy()
        np.testing.assert_array_equal(R.tf_bilinear_resize(image, (oh, ow)), expected)
