"""`SigLIPProcessor` against transformers' own processors, on checkpoint folders made here.

A transformers folder written by `save_pretrained` (a SigLIP 1 fixed-resolution one with a
T5-style SentencePiece model, a SigLIP 2 NaFlex one with a Gemma-style model, both trained in
the test) must give exactly transformers' token ids and pixels, for PNG files of several modes,
PIL images and uint8 arrays. No Keras model is built here, so this runs once.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests import _hf_checkpoints as hf_files

pytestmark = pytest.mark.backend_independent

pytest.importorskip("sentencepiece")
pytest.importorskip("PIL")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from keras_siglip import presets  # noqa: E402
from keras_siglip.preprocessing import Tokenizer  # noqa: E402
from keras_siglip.processor import (  # noqa: E402
    PROCESSOR_FILE,
    ImageReadError,
    SigLIPProcessor,
    keras_sidecar,
    load_image,
)

TEXTS = ["This is a photo of a cat.", "A RED car, on the grass!", "two " * 70, ""]


def _hf(folder):
    return transformers.AutoProcessor.from_pretrained(str(folder))


def _hf_pixels(hf, images):
    from transformers.image_utils import load_image as hf_load

    out = hf.image_processor(images=[hf_load(i) if isinstance(i, str) else i for i in images],
                             return_tensors="np")  # fmt: skip
    return out


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_reads_transformers_folder_settings(folders, name):
    processor = SigLIPProcessor.from_preset(folders[name])
    assert processor.sequence_length == hf_files.LENGTH
    if name == "siglip":
        assert (processor.flavor, processor.naflex) == ("siglip", False)
        assert processor.image_size == (hf_files.FIXED_SIZE,) * 2 and processor.resize == "bicubic"
    else:
        assert (processor.flavor, processor.naflex) == ("siglip2", True)
        assert processor.patch_size == hf_files.NAFLEX_PATCH
        assert processor.max_num_patches == hf_files.NAFLEX_BUDGET


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_token_ids_equal_transformers(folders, name):
    processor = SigLIPProcessor.from_preset(folders[name])
    hf = _hf(folders[name])
    expected = hf.tokenizer(TEXTS, padding="max_length", max_length=hf_files.LENGTH,
                            truncation=True)["input_ids"]  # fmt: skip
    assert processor.tokenize(TEXTS).tolist() == expected


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_pixels_equal_transformers_for_files_pil_and_arrays(folders, name):
    # Files (RGB, RGBA, grayscale, palette) as transformers' pipeline reads them; PIL images
    # with alpha composited onto white as its image processor does; uint8 arrays as they are.
    processor = SigLIPProcessor.from_preset(folders[name])
    hf = _hf(folders[name])
    files = [str(p) for p in folders["pngs"]]
    pil = [Image.open(p) for p in folders["pngs"]]
    if name == "siglip2":  # its image processor has no do_convert_rgb: RGB images only
        pil = [image.convert("RGB") for image in pil]
    arrays = [np.asarray(load_image(p)) for p in files]
    for ours_in, theirs_in in ((files, files), (pil, pil), (arrays, arrays)):
        ours, theirs = processor.preprocess_images(ours_in), _hf_pixels(hf, theirs_in)
        if processor.naflex:
            assert np.array_equal(ours["patches"], theirs["pixel_values"])
            assert np.array_equal(ours["patch_mask"], theirs["pixel_attention_mask"])
            assert np.array_equal(ours["spatial_shapes"], theirs["spatial_shapes"])
        else:
            assert np.array_equal(ours, theirs["pixel_values"].transpose(0, 2, 3, 1))
    # The RGBA file: its alpha is dropped when read from disk, composited when given as PIL.
    rgba = Image.open(folders["pngs"][1])
    assert rgba.mode == "RGBA" and not np.array_equal(load_image(files[1]), load_image(rgba))


def test_call_gives_model_inputs(folders):
    processor = SigLIPProcessor.from_preset(folders["siglip"])
    inputs = processor(images=str(folders["pngs"][0]), texts="a cat")
    assert inputs["images"].shape == (1, hf_files.FIXED_SIZE, hf_files.FIXED_SIZE, 3)
    assert inputs["images"].dtype == np.float32
    assert inputs["token_ids"].shape == (1, hf_files.LENGTH)
    with pytest.raises(ValueError, match="images=, texts= or both"):
        processor()


@pytest.mark.parametrize("name", ["siglip", "siglip2"])
def test_save_round_trips_and_transformers_reads_the_files(folders, name, tmp_path):
    processor = SigLIPProcessor.from_preset(folders[name])
    saved = processor.save(tmp_path / "p")
    again = SigLIPProcessor.from_preset(saved)
    assert again.get_config() == processor.get_config()
    assert np.array_equal(again.tokenize(TEXTS), processor.tokenize(TEXTS))
    # The same files beside the checkpoint's config.json load in transformers' AutoProcessor.
    target = tmp_path / "hf"
    target.mkdir()
    shutil.copy(folders[name] / "config.json", target / "config.json")
    for file, data in processor.transformers_files().items():
        (target / file).write_bytes(data)
    hf = _hf(target)
    assert hf.tokenizer(TEXTS, padding="max_length", max_length=hf_files.LENGTH,
                        truncation=True)["input_ids"] == processor.tokenize(TEXTS).tolist()
    assert "attention_mask" not in hf.tokenizer(TEXTS[:1])  # trained without a padding mask
    files = [str(p) for p in folders["pngs"]]
    theirs, ours = _hf_pixels(hf, files), processor.preprocess_images(files)
    key = "patches" if processor.naflex else None
    expected = theirs["pixel_values"]
    if key is None:
        expected = expected.transpose(0, 2, 3, 1)
    assert np.array_equal(ours[key] if key else ours, expected)
    # A saved folder is not replaced without overwrite, and never when it holds other files.
    with pytest.raises(FileExistsError, match="overwrite"):
        processor.save(saved)
    processor.save(saved, overwrite=True)
    (saved / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        processor.save(saved, overwrite=True)


def test_with_options_and_validation(folders):
    naflex = SigLIPProcessor.from_preset(folders["siglip2"], max_num_patches=64)
    assert naflex.max_num_patches == 64
    fixed = SigLIPProcessor.from_preset(folders["siglip"], resize="big_vision")
    assert fixed.resize == "big_vision"
    with pytest.raises(ValueError, match="no 'big_vision' resize"):
        fixed.transformers_files()
    with pytest.raises(ValueError, match="NaFlex processors only"):
        SigLIPProcessor.from_preset(folders["siglip"], max_num_patches=64)
    with pytest.raises(ValueError, match="Unknown argument"):
        SigLIPProcessor.from_preset(folders["siglip"], sequence_length=8)
    with pytest.raises(ValueError, match="Unknown resize"):
        SigLIPProcessor(fixed.tokenizer, image_size=32, resize="nearest")
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        SigLIPProcessor(fixed.tokenizer, naflex=True, patch_size=0, max_num_patches=4)
    with pytest.raises(TypeError, match="max_num_patches must be"):  # a wrong type: TypeError
        SigLIPProcessor(fixed.tokenizer, naflex=True, patch_size=4, max_num_patches=4.0)
    with pytest.raises(TypeError, match="Tokenizer"):
        SigLIPProcessor("spiece.model", image_size=32)


def test_keras_sidecar_and_npz_need_their_processor(folders, tmp_path):
    model_file = tmp_path / "m.keras"
    with pytest.raises(FileNotFoundError, match=r"m\.processor"):
        SigLIPProcessor.from_preset(model_file)
    SigLIPProcessor.from_preset(folders["siglip"]).save(keras_sidecar(model_file))
    assert SigLIPProcessor.from_preset(model_file).resize == "bicubic"
    with pytest.raises(ValueError, match="pass preset=NAME"):
        SigLIPProcessor.from_preset(tmp_path / "model.npz")
    with pytest.raises(ValueError, match=r"\.npz checkpoints only"):
        SigLIPProcessor.from_preset(folders["siglip"], preset="siglip_base_patch16_224")
    with pytest.raises(FileNotFoundError, match="neither a preset name"):
        SigLIPProcessor.from_preset(tmp_path / "nothing_here")


def test_preset_names_read_the_tokenizer_from_the_cache(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SIGLIP_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        SigLIPProcessor.from_preset("siglip_base_patch16_224")
    message = str(error.value)
    assert "gs://t5-data/vocabs/cc_en.32000/sentencepiece.model" in message  # what
    assert str(tmp_path / "c4_en.model") in message  # where
    shutil.copy(folders["siglip"] / "spiece.model", tmp_path / "c4_en.model")
    fixed = SigLIPProcessor.from_preset("siglip_base_patch16_224")
    assert fixed.get_config() == {"flavor": "siglip", "sequence_length": 64, "naflex": False,
                                  "image_size": [224, 224], "resize": "bicubic"}  # fmt: skip
    # The same preset for a big_vision .npz (which holds no tokenizer).
    assert SigLIPProcessor.from_preset(tmp_path / "x.npz",
                                       preset="siglip_base_patch16_224").resize == "bicubic"
    info = presets.preset_info("siglip2_base_patch16_naflex")
    shutil.copy(folders["siglip2"] / "tokenizer.model", tmp_path / "gemma.model")
    naflex = SigLIPProcessor.from_preset("siglip2_base_patch16_naflex")
    assert (naflex.flavor, naflex.patch_size, naflex.max_num_patches) == (
        "siglip2", info["patch_size"], info["max_num_patches"])


def _copy(folder, tmp_path, drop=()):
    target = tmp_path / folder.name
    shutil.copytree(folder, target)
    for name in drop:
        (target / name).unlink()
    return target


def test_missing_or_unusable_files_are_named(folders, tmp_path):
    no_tokenizer = _copy(folders["siglip"], tmp_path / "a", drop=["spiece.model"])
    with pytest.raises(FileNotFoundError, match=r"spiece\.model \(SigLIP 1\).*hub"):
        SigLIPProcessor.from_preset(no_tokenizer)
    only_json = _copy(folders["siglip2"], tmp_path / "b", drop=["tokenizer.model"])
    with pytest.raises(FileNotFoundError, match="only tokenizer.json"):
        SigLIPProcessor.from_preset(only_json)
    no_images = _copy(folders["siglip"], tmp_path / "c", drop=["processor_config.json"])
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json"):
        SigLIPProcessor.from_preset(no_images)

    odd = _copy(folders["siglip"], tmp_path / "d")
    config = json.loads((odd / "processor_config.json").read_text())
    config["image_processor"]["image_mean"] = [0.48, 0.45, 0.4]
    (odd / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"image_mean=\[0.48"):
        SigLIPProcessor.from_preset(odd)
    config["image_processor"].update(image_mean=[0.5] * 3, size={"height": 48, "width": 48})
    (odd / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="resizes to 48x48.*32x32"):
        SigLIPProcessor.from_preset(odd)
    tok = json.loads((odd / "tokenizer_config.json").read_text())
    (odd / "tokenizer_config.json").write_text(json.dumps({**tok, "tokenizer_class": "T5"}))
    with pytest.raises(ValueError, match="tokenizer_class 'T5'"):
        SigLIPProcessor.from_preset(odd)
    assert not (odd / PROCESSOR_FILE).exists()


def test_unreadable_images_are_named(folders, tmp_path):
    processor = SigLIPProcessor.from_preset(folders["siglip"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(Path(folders["pngs"][0]).read_bytes()[:60])
    good = str(folders["pngs"][0])
    with pytest.raises(ImageReadError, match=r"image 1 \(.*broken\.png\) cannot be read"):
        processor.preprocess_images([good, str(broken)])
    with pytest.raises(ImageReadError, match=r"image 0 \(.*missing\.png\) does not exist"):
        processor.preprocess_images(str(tmp_path / "missing.png"))
    with pytest.raises(ImageReadError, match="is a folder"):
        processor.preprocess_images([str(tmp_path)])


def test_exif_orientation_is_applied(tmp_path):
    # transformers' load_image applies the EXIF orientation; so does load_image here.
    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[0, 0] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    loaded = load_image(str(tmp_path / "rotated.jpg"))
    assert loaded.shape == (6, 4, 3)


def test_tokenizer_argument_is_a_keras_siglip_tokenizer(folders):
    tokenizer = Tokenizer(str(folders["siglip"] / "spiece.model"), "siglip", 16)
    processor = SigLIPProcessor(tokenizer, image_size=(24, 32))
    assert processor.image_size == (24, 32) and processor.sequence_length == 16
    assert "24x32 bilinear" in repr(processor)


def test_keras_hub_folder_says_how_to_build_a_processor(tmp_path):
    # A KerasHub preset's image converter (a crop to the aspect ratio) is not one of the resize
    # rules here: no processor is guessed; the message says how to build one.
    folder = tmp_path / "hub"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "module": "keras_hub.src.models.siglip.siglip_backbone", "class_name": "SigLIPBackbone",
        "config": {}, "registered_name": "keras_hub>SigLIPBackbone"}))
    with pytest.raises(ValueError, match="KerasHub preset folder.*vocabulary.spm.*SigLIPPipeline"):
        SigLIPProcessor.from_preset(folder)
