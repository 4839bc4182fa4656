"""Tests of `keras_siglip.preprocessing.naflex`: docs/naflex.md target sizes and patch layout, and
the transformers (PIL backend) and big_vision pixel pipelines."""

import numpy as np
import pytest

from keras_siglip.preprocessing import (
    naflex_from_big_vision,
    naflex_patchify,
    naflex_size,
    naflex_to_big_vision,
    patchify,
)

pytestmark = pytest.mark.backend_independent

ONE_STEP = 1 / 127.5  # one uint8 step in [-1, 1] units

# docs/naflex.md, "Target size": ((h, w), p, n_max) -> (H_t, W_t)
SPEC_SIZES = [
    # big_vision ops_naflex_test.py
    ((48, 48), 3, 121, (33, 33)),
    ((112, 109), 7, 225, (105, 105)),
    ((176, 176), 11, 64, (88, 88)),
    ((256, 64), 16, 12, (96, 32)),
    ((256, 64), 8, 15, (56, 16)),
    ((63, 241), 16, 16, (32, 128)),
    ((16, 512), 16, 16, (16, 256)),
    # transformers, p = 16
    ((2200, 1700), 16, 256, (288, 224)),
    ((480, 640), 16, 256, (224, 288)),
    ((224, 224), 16, 256, (256, 256)),
    ((1024, 224), 16, 256, (512, 112)),
    ((100, 1000), 16, 256, (80, 800)),
    ((7, 3000), 16, 256, (16, 4096)),
    ((100, 224), 16, 256, (176, 368)),
    ((500, 500), 16, 1024, (512, 512)),
    # derived from the algorithm
    ((1024, 1024), 16, 256, (256, 256)),
]


@pytest.fixture(scope="module")
def sample_images():
    """scikit-learn's two photos (427x640) and crops that are tall, wide, tiny and odd-sized."""
    datasets = pytest.importorskip("sklearn.datasets")
    china, flower = datasets.load_sample_images().images
    return [
        china,
        flower,
        china[:, 200:320],  # tall
        flower[150:210],  # wide
        china[100:137, 300:353],  # small: upsampled
        flower[:5, :400],  # a 5-pixel strip
    ]


@pytest.mark.parametrize("hw, p, n_max, expected", SPEC_SIZES)
def test_naflex_size_spec_vectors(hw, p, n_max, expected):
    assert naflex_size(*hw, p, n_max) == expected


def test_naflex_size_matches_transformers_on_random_sizes():
    pil_siglip2 = pytest.importorskip("transformers.models.siglip2.image_processing_pil_siglip2")
    reference = pil_siglip2.get_image_size_for_max_num_patches
    rng = np.random.default_rng(0)
    for _ in range(3000):
        h, w = (int(s) for s in rng.integers(1, 2049, 2))
        p = int(rng.choice([14, 16]))
        n_max = int(rng.integers(64, 1025))
        assert naflex_size(h, w, p, n_max) == reference(h, w, p, n_max), (h, w, p, n_max)


def test_naflex_size_stays_within_budget():
    rng = np.random.default_rng(1)
    for _ in range(500):
        h, w = (int(s) for s in rng.integers(1, 3000, 2))
        p, n_max = int(rng.integers(1, 33)), int(rng.integers(1, 1025))
        ht, wt = naflex_size(h, w, p, n_max)
        assert ht % p == 0 and wt % p == 0 and ht >= p and wt >= p
        assert (ht // p) * (wt // p) <= n_max


@pytest.mark.parametrize(
    "args, error, message",
    [
        # A value of the right type out of range: ValueError.
        ((224, 224, 16, 0), ValueError, "max_num_patches=0 cannot hold a single patch"),
        ((224, 224, 16, -3), ValueError, "max_num_patches=-3 cannot hold a single patch"),
        ((224, 224, 0, 256), ValueError, "patch_size must be a positive int; received 0"),
        ((0, 224, 16, 256), ValueError, "height must be a positive int; received 0"),
        # A wrong type (a float, even a whole one; a bool; a str): TypeError, as everywhere.
        ((224, 22.5, 16, 256), TypeError, r"width must be an int; received 22.5 \(float\)\.$"),
        ((224, 224, 16, 256.0), TypeError, r"max_num_patches must be an int; received 256.0 "
                                           r"\(float\)\. Pass max_num_patches=256\."),
        ((224, True, 16, 256), TypeError, r"width must be an int; received True \(bool\)"),
        ((224, 224, "16", 256), TypeError, r"patch_size must be an int; received '16' \(str\)"),
    ],
)
def test_naflex_size_rejects_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        naflex_size(*args)
    with pytest.raises(ValueError, match="eps must be a finite float > 0"):
        naflex_size(224, 224, 16, 256, eps=0.0)


def test_patch_order_big_vision_vector():
    # big_vision: images from 6x8 to 8x10 with patch (3, 4) give 4 patches; leftovers dropped.
    rng = np.random.default_rng(0)
    for h in range(6, 9):
        for w in range(8, 11):
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            patches = patchify(image, (3, 4))
            assert patches.shape == (4, 3 * 4 * 3)
            np.testing.assert_array_equal(patches[-1], image[3:6, 4:8, :].reshape(-1))
            np.testing.assert_array_equal(patches[1], image[0:3, 4:8, :].reshape(-1))
    inputs = {
        "patches": np.zeros((1, 6, 36), np.float32),
        "patch_mask": np.array([[1, 1, 1, 1, 0, 0]], np.int32),
        "spatial_shapes": np.array([[2, 2]], np.int32),
    }
    _, ptype, yidx, xidx = naflex_to_big_vision(inputs)
    np.testing.assert_array_equal(yidx, [[0, 0, 1, 1, 0, 0]])
    np.testing.assert_array_equal(xidx, [[0, 1, 0, 1, 0, 0]])
    np.testing.assert_array_equal(ptype, inputs["patch_mask"])


def test_patch_layout_is_row_major_with_channels_fastest():
    image = np.arange(32 * 48 * 3).reshape(32, 48, 3) % 256
    out = naflex_patchify([image.astype(np.uint8)], 16, 6)
    assert out["spatial_shapes"].tolist() == [[2, 3]]  # 32x48 fits 6 patches unchanged
    values = np.rint(out["patches"][0] * 127.5 + 127.5)
    np.testing.assert_array_equal(values[4], image[16:32, 16:32].reshape(-1))
    assert out["patches"].shape == (1, 6, 16 * 16 * 3)


def test_spec_example_spatial_shapes_and_mask():
    images = [np.zeros((224, 224, 3), np.uint8), np.zeros((100, 224, 3), np.uint8)]
    out = naflex_patchify(images, 16, 256)
    assert out["patches"].dtype == np.float32 and out["patches"].shape == (2, 256, 768)
    assert out["patch_mask"].dtype == np.int32 and out["spatial_shapes"].dtype == np.int32
    np.testing.assert_array_equal(out["spatial_shapes"], [[16, 16], [11, 23]])
    np.testing.assert_array_equal(out["patch_mask"].sum(1), [256, 253])
    assert not out["patches"][1, 253:].any()  # padding rows are exactly 0
    np.testing.assert_array_equal(out["patch_mask"][1, :253], 1)


@pytest.mark.parametrize(
    "patch_size, max_num_patches", [(16, 64), (16, 256), (16, 1024), (14, 256)]
)
def test_matches_transformers_pil_processor(sample_images, patch_size, max_num_patches):
    transformers = pytest.importorskip("transformers")
    processor = transformers.Siglip2ImageProcessorPil(
        patch_size=patch_size, max_num_patches=max_num_patches
    )
    expected = processor(sample_images, return_tensors="np", input_data_format="channels_last")
    got = naflex_patchify(sample_images, patch_size, max_num_patches)
    np.testing.assert_array_equal(got["spatial_shapes"], expected["spatial_shapes"])
    np.testing.assert_array_equal(got["patch_mask"], expected["pixel_attention_mask"])
    # Pillow's 8-bit resampling and transformers' float arithmetic are reproduced exactly.
    np.testing.assert_array_equal(got["patches"], expected["pixel_values"])


def test_float_images_are_rounded_like_uint8(sample_images):
    image = sample_images[2]
    out_uint8 = naflex_patchify([image], 16, 64)
    jitter = np.random.default_rng(0).uniform(-0.4, 0.4, image.shape)
    out_float = naflex_patchify([np.clip(image + jitter, 0, 255)], 16, 64)
    np.testing.assert_array_equal(out_float["patches"], out_uint8["patches"])


def test_big_vision_pipeline_matches_tensorflow(sample_images):
    tf = pytest.importorskip("tensorflow")
    p, n_max = 16, 256
    got = naflex_patchify(sample_images, p, n_max, pipeline="big_vision")
    for i, image in enumerate(sample_images):
        h_t, w_t = naflex_size(image.shape[0], image.shape[1], p, n_max)
        x = tf.cast(image, tf.float32) / 255.0 * 2.0 - 1.0  # value_range(-1, 1)
        x = tf.image.resize(x, (h_t, w_t), "bilinear", antialias=True).numpy()
        rows = (h_t // p) * (w_t // p)
        # TensorFlow computes sample positions in float32, so its weights drift with the
        # coordinate (about 3e-5 at a few hundred pixels); ours are float64.
        np.testing.assert_allclose(got["patches"][i, :rows], patchify(x, p), atol=1e-4)
        assert not got["patches"][i, rows:].any()


def test_the_two_pipelines_differ_by_at_most_one_uint8_step(sample_images):
    # Measured (docs/naflex.md, "Pitfalls"): big_vision's float resize and transformers' uint8
    # resize differ only by the 8-bit rounding (max ~1.00001 steps, mean ~0.25 steps on these
    # photos).
    transformers_out = naflex_patchify(sample_images, 16, 256)
    big_vision_out = naflex_patchify(sample_images, 16, 256, pipeline="big_vision")
    np.testing.assert_array_equal(
        transformers_out["spatial_shapes"], big_vision_out["spatial_shapes"]
    )
    diff = np.abs(transformers_out["patches"] - big_vision_out["patches"])
    assert diff.max() <= ONE_STEP * 1.001
    assert diff.mean() <= ONE_STEP * 0.3


def test_batch_array_and_single_image_inputs():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)
    from_array = naflex_patchify(batch, 8, 32)
    from_list = naflex_patchify(list(batch), 8, 32)
    for key in from_list:
        np.testing.assert_array_equal(from_array[key], from_list[key])
    single = naflex_patchify(batch[0], 8, 32)
    np.testing.assert_array_equal(single["patches"], from_list["patches"][:1])


def test_big_vision_tuple_round_trip(sample_images):
    out = naflex_patchify(sample_images, 16, 64)
    patches, ptype, yidx, xidx = naflex_to_big_vision(out)
    for i, (h, w) in enumerate(out["spatial_shapes"]):
        assert yidx[i].max() + 1 == h and xidx[i].max() + 1 == w
        assert not yidx[i, h * w :].any() and not xidx[i, h * w :].any()
    back = naflex_from_big_vision(patches, ptype, yidx, xidx)
    for key in out:
        np.testing.assert_array_equal(back[key], out[key])
        assert back[key].dtype == out[key].dtype


def test_from_big_vision_rejects_unordered_patches():
    ptype = np.array([[1, 1, 1, 1]])
    with pytest.raises(ValueError, match="row-major"):
        naflex_from_big_vision(np.zeros((1, 4, 3)), ptype, [[0, 1, 0, 1]], [[0, 0, 1, 1]])


@pytest.mark.parametrize(
    "images, message",
    [
        ([np.zeros((32, 32, 4), np.uint8)], "3 \\(RGB\\) channels"),
        ([np.zeros((32, 32), np.uint8)], "\\(height, width, 3\\)"),
        (np.zeros((1, 1, 32, 32, 3), np.uint8), "shape"),
        ([np.full((32, 32, 3), 300.0)], "\\[0, 255\\]"),
        ([np.full((32, 32, 3), np.nan)],
         "3072 NaN or inf value\\(s\\).*finite values in \\[0, 255\\]"),
        ([], "at least one image"),
    ],
)
def test_bad_images_raise(images, message):
    with pytest.raises(ValueError, match=message):
        naflex_patchify(images, 16, 64)


def test_bad_budget_and_pipeline_raise():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="max_num_patches"):
        naflex_patchify([image], 16, 0)
    with pytest.raises(ValueError, match="big_vision"):
        naflex_patchify([image], 16, 64, pipeline="torchvision")
