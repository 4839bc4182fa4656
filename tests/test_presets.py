"""Presets: every released checkpoint, buildable, with independently counted parameters."""

import numpy as np
import pytest

from keras_siglip import SigLIP, list_presets, preset_info
from keras_siglip.presets import PRESETS, weights_candidates

SIGLIP1 = {
    "siglip_base_patch16_224", "siglip_base_patch16_256", "siglip_base_patch16_384",
    "siglip_base_patch16_512", "siglip_large_patch16_256", "siglip_large_patch16_384",
    "siglip_so400m_patch14_224", "siglip_so400m_patch14_384",
    "siglip_base_patch16_256_multilingual", "siglip_so400m_patch16_256_i18n",
}
SIGLIP2_FIXED = {
    "siglip2_base_patch32_256", "siglip2_base_patch16_224", "siglip2_base_patch16_256",
    "siglip2_base_patch16_384", "siglip2_base_patch16_512", "siglip2_large_patch16_256",
    "siglip2_large_patch16_384", "siglip2_large_patch16_512", "siglip2_so400m_patch14_224",
    "siglip2_so400m_patch14_384", "siglip2_so400m_patch16_256", "siglip2_so400m_patch16_384",
    "siglip2_so400m_patch16_512", "siglip2_giant_opt_patch16_256", "siglip2_giant_opt_patch16_384",
}

# docs/architecture.md, written out again so the count below is independent of the library's table.
SIZES = {"B": (768, 12, 3072, 12), "L": (1024, 24, 4096, 16), "So400m": (1152, 27, 4304, 16),
         "g-opt": (1536, 40, 6144, 16)}


def _block(w, m):
    # 2 LayerNorms + q/k/v/out (kernel + bias) + MLP.
    return 2 * 2 * w + 4 * (w * w + w) + (w * m + m) + (m * w + w)


def expected_parameters(info):
    w, depth, m, _ = SIZES[info["image_variant"]]
    p = info["patch_size"]
    if info["naflex"]:
        embed = p * p * 3 * w + w + 16 * 16 * w
    else:
        n = (info["image_size"] // p) ** 2
        embed = p * p * 3 * w + w + n * w
    # MAP head: probe, attention, LayerNorm, MLP.
    head = w + 4 * (w * w + w) + 2 * w + (w * m + m) + (m * w + w)
    vision = embed + depth * _block(w, m) + 2 * w + head
    tw, tdepth, tm, _ = SIZES[info["text_variant"]]
    e = info["embed_dim"]
    text = info["vocabulary_size"] * tw + info["sequence_length"] * tw + tdepth * _block(tw, tm) + 2 * tw
    if info["text_head"]:
        text += tw * e + e
    return vision + text + 2  # t and b


def test_every_released_checkpoint_has_a_preset():
    names = set(list_presets())
    assert SIGLIP1 <= names
    assert SIGLIP2_FIXED <= names


@pytest.mark.parametrize(
    "name,tokens,length,vocab",
    [
        ("siglip_so400m_patch14_384", 27 * 27, 64, 32000),
        ("siglip_so400m_patch14_224", 16 * 16, 16, 32000),
        ("siglip_base_patch16_256_multilingual", 256, 64, 250000),
        ("siglip2_giant_opt_patch16_384", 24 * 24, 64, 256000),
        ("siglip2_base_patch32_256", 64, 64, 256000),
    ],
)
def test_preset_facts(name, tokens, length, vocab):
    info = preset_info(name)
    assert (info["image_size"] // info["patch_size"]) ** 2 == tokens
    assert info["sequence_length"] == length
    assert info["vocabulary_size"] == vocab
    assert info["hf_id"].startswith("google/")
    assert info["big_vision_file"].startswith("gs://big_vision/")


def test_giant_opt_pairs_a_so400m_text_tower_with_a_wider_head():
    info = preset_info("siglip2_giant_opt_patch16_256")
    assert (info["image_variant"], info["text_variant"], info["embed_dim"]) == ("g-opt", "So400m", 1536)
    assert not preset_info("siglip_so400m_patch16_256_i18n")["text_head"]
    assert preset_info("siglip2_base_patch16_224")["tokenizer_flavor"] == "siglip2"
    assert preset_info("siglip_base_patch16_224")["tokenizer_flavor"] == "siglip"


def test_unknown_names_and_overrides():
    with pytest.raises(ValueError, match="Unknown preset 'siglip_tiny'"):
        preset_info("siglip_tiny")
    with pytest.raises(ValueError, match="Unknown override"):
        SigLIP.from_preset("siglip_base_patch16_224", load_weights=False, colour="blue")


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SIGLIP_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        SigLIP.from_preset("siglip_base_patch16_224")
    message = str(info.value)
    assert "gs://big_vision/siglip/webli_en_b16_224_63724782.npz" in message
    assert "google/siglip-base-patch16-224" in message
    assert str(tmp_path / "webli_en_b16_224_63724782.npz") in message
    assert weights_candidates("siglip_base_patch16_224")[0].parent == tmp_path


def test_weights_found_in_cache(tmp_path, monkeypatch):
    from keras_siglip.convert import save_big_vision
    from keras_siglip.testing import build_tiny

    model = build_tiny("fixture_like", seed=4)
    monkeypatch.setitem(
        PRESETS, "tiny_test_preset",
        dict(PRESETS["siglip_base_patch16_224"], image_variant="pico", text_variant="pico",
             patch_size=4, image_size=(32, 24), sequence_length=16, vocabulary_size=101, embed_dim=48),
    )
    monkeypatch.setenv("KERAS_SIGLIP_CACHE", str(tmp_path))
    save_big_vision(model, tmp_path / "tiny_test_preset.npz")
    loaded = SigLIP.from_preset("tiny_test_preset")
    np.testing.assert_array_equal(
        np.asarray(loaded.logit_scale), np.asarray(model.logit_scale)
    )


def test_small_preset_builds_with_the_counted_size():
    model = SigLIP.from_preset("siglip2_base_patch32_256", load_weights=False)
    assert model.count_params() == expected_parameters(preset_info("siglip2_base_patch32_256"))
    assert model.vision_encoder.grid_size == (8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_presets())
def test_parameter_count_of_every_preset(name):
    info = preset_info(name)
    model = SigLIP.from_preset(name, load_weights=False)
    assert model.count_params() == expected_parameters(info)


@pytest.mark.parametrize(
    "name,published",
    [
        # Published totals (transformers model cards / KerasHub preset tables), in millions.
        ("siglip_base_patch16_224", 203),
        ("siglip_so400m_patch14_384", 878),
    ],
)
def test_independent_count_agrees_with_published_sizes(name, published):
    count = expected_parameters(preset_info(name))
    assert abs(count / 1e6 - published) / published < 0.01
