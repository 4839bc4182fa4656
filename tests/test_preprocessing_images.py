"""Tests of `keras_siglip.preprocessing.images` against transformers' SigLIP image processor (PIL
backend) and big_vision's TensorFlow resize op."""

import numpy as np
import pytest

from keras_siglip.preprocessing import preprocess_images

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def sample_images():
    datasets = pytest.importorskip("sklearn.datasets")
    china, flower = datasets.load_sample_images().images
    return [china, flower, china[:, 200:320], flower[150:210], china[100:137, 300:353]]


@pytest.mark.parametrize("resize", ["bicubic", "bilinear"])
@pytest.mark.parametrize("image_size", [224, (96, 160)])
def test_matches_transformers_siglip_image_processor(sample_images, resize, image_size):
    transformers = pytest.importorskip("transformers")
    resampling = pytest.importorskip("transformers.image_utils").PILImageResampling
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    resample = {"bicubic": resampling.BICUBIC, "bilinear": resampling.BILINEAR}[resize]
    processor = transformers.SiglipImageProcessorPil(
        size={"height": height, "width": width}, resample=resample
    )
    expected = processor(sample_images, return_tensors="np", input_data_format="channels_last")
    expected = expected["pixel_values"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    got = preprocess_images(sample_images, image_size, resize=resize)
    assert got.shape == (len(sample_images), height, width, 3) and got.dtype == np.float32
    # Pillow's 8-bit resampling and transformers' float arithmetic are reproduced exactly.
    np.testing.assert_array_equal(got, expected)


def test_default_processor_is_bicubic_for_siglip1():
    transformers = pytest.importorskip("transformers")
    resampling = pytest.importorskip("transformers.image_utils").PILImageResampling
    assert transformers.SiglipImageProcessorPil.resample == resampling.BICUBIC


def test_big_vision_resize_matches_tensorflow(sample_images):
    tf = pytest.importorskip("tensorflow")
    got = preprocess_images(sample_images, 224, resize="big_vision")
    for i, image in enumerate(sample_images):
        # big_vision: resize(224) (bilinear, no antialias, clip and cast back to uint8), then
        # value_range(-1, 1).
        x = tf.image.resize(image, (224, 224), "bilinear", antialias=False)
        x = tf.cast(tf.clip_by_value(x, 0, 255), tf.uint8)
        x = tf.cast(x, tf.float32) / 255.0 * 2.0 - 1.0
        np.testing.assert_array_equal(got[i], x.numpy())


@pytest.mark.parametrize("resize", ["bicubic", "bilinear", "big_vision"])
def test_range_shape_and_extremes(resize):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    images[0] = 0
    images[1] = 255
    out = preprocess_images(images, (32, 48), resize=resize)
    assert out.shape == (3, 32, 48, 3) and out.dtype == np.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    np.testing.assert_array_equal(out[0], -1.0)
    np.testing.assert_array_equal(out[1], 1.0)


def test_resize_modes_differ_but_stay_close(sample_images):
    outs = {m: preprocess_images(sample_images[:2], 224, resize=m) for m in ("bicubic", "bilinear")}
    diff = np.abs(outs["bicubic"] - outs["bilinear"])
    assert 0 < diff.mean() < 0.05


def test_invalid_arguments_raise():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="big_vision"):
        preprocess_images([image], 4, resize="nearest")
    with pytest.raises(ValueError, match="image_size"):
        preprocess_images([image], (4, 0))
    with pytest.raises(ValueError, match="channels"):
        preprocess_images([np.zeros((8, 8, 1), np.uint8)], 4)
