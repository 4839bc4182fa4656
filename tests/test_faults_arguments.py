"""Bad arguments to public functions: the error type and a message naming the argument and fix.

One rule everywhere (docs/errors.md): a wrong type raises a `TypeError`, a value of the right
type out of range (or outside a set of choices) a `ValueError`. Each case is one fault class;
those that build a model run on every backend, the rest once.
"""

import keras
import numpy as np
import pytest

from keras_siglip import SigLIP, tasks
from keras_siglip.losses import SigmoidLoss, sigmoid_loss
from keras_siglip.preprocessing import Tokenizer, naflex_patchify, naflex_size, preprocess_images
from keras_siglip.testing import build_tiny

independent = pytest.mark.backend_independent
FIXED, NAFLEX = "siglip_base_patch16_224", "siglip2_base_patch16_naflex"
RNG = np.random.default_rng(0)
PHOTO = RNG.integers(0, 256, (2, 40, 36, 3)).astype(np.uint8)
ONES = np.ones((4, 8), "float32")


def _raises(error, parts, fn, *args, **kwargs):
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    for part in parts:
        assert part in message, (part, message)


# (fault class, call, error, parts of the message). Building nothing: run once.
ARGUMENTS = [
    ("naflex_size_float", lambda: naflex_size(224, 224, 16, 256.0), TypeError,
     ["max_num_patches must be an int; received 256.0 (float)", "max_num_patches=256"]),
    ("naflex_size_bool", lambda: naflex_size(224, True, 16, 256), TypeError,
     ["width must be an int; received True (bool)"]),
    ("naflex_size_zero_budget", lambda: naflex_size(224, 224, 16, 0), ValueError,
     ["max_num_patches=0 cannot hold a single patch"]),
    ("image_size_str", lambda: preprocess_images(PHOTO, "224"), TypeError,
     ["image_size must be an int or a (height, width) pair", "'224' (str)", "image_size=224"]),
    ("image_size_triple", lambda: preprocess_images(PHOTO, (224, 224, 3)), ValueError,
     ["image_size must be an int or a (height, width) pair", "3 values"]),
    ("resize_unknown", lambda: preprocess_images(PHOTO, 32, resize="nearest"), ValueError,
     ["Unknown resize 'nearest'", "bilinear", "bicubic", "big_vision"]),
    ("images_in_0_1", lambda: preprocess_images(PHOTO / 255.0, 32), ValueError,
     ["inside [0, 1]", "nearly black", "input_range=(0, 1)", "np.uint8"]),
    ("naflex_images_in_0_1", lambda: naflex_patchify(PHOTO / 255.0, 4, 64), ValueError,
     ["inside [0, 1]", "input_range=(0, 1)"]),
    ("images_already_preprocessed", lambda: preprocess_images(PHOTO / 127.5 - 1, 32), ValueError,
     ["must lie in [0, 255]", "already preprocessed to [-1, 1]"]),
    ("input_range_unknown", lambda: preprocess_images(PHOTO, 32, input_range=(-1, 1)), ValueError,
     ["input_range must be None", "(0, 255) or (0, 1)", "(-1, 1)"]),
    ("uint8_with_input_range_0_1",
     lambda: preprocess_images(PHOTO, 32, input_range=(0, 1)), ValueError,
     ["uint8, which holds 0-255", "Drop input_range"]),
    ("images_none", lambda: preprocess_images(None, 32), TypeError,
     ["images must be a (batch, height, width, 3) array", "NoneType"]),
    ("images_bool", lambda: preprocess_images(np.zeros((1, 8, 8, 3), bool), 8), TypeError,
     ["dtype bool", "uint8 (0-255) or float"]),
    ("chunk_size_bool", lambda: sigmoid_loss(ONES, ONES, 0.0, 0.0, chunk_size=True), TypeError,
     ["chunk_size must be an int or None; received True (bool)"]),
    ("chunk_size_float", lambda: sigmoid_loss(ONES, ONES, 0.0, 0.0, chunk_size=2.0), TypeError,
     ["chunk_size must be an int or None; received 2.0 (float)", "chunk_size=2"]),
    ("chunk_size_str", lambda: sigmoid_loss(ONES, ONES, 0.0, 0.0, chunk_size="2"), TypeError,
     ["chunk_size must be an int or None; received '2' (str)"]),
    ("chunk_size_zero", lambda: SigmoidLoss(chunk_size=0), ValueError,
     ["SigmoidLoss: chunk_size must be a positive int; received 0"]),
    ("loss_empty_batch", lambda: sigmoid_loss(ONES[:0], ONES[:0], 0.0, 0.0), ValueError,
     ["empty batch", "at least one image-text pair"]),
    ("loss_not_square", lambda: sigmoid_loss(ONES, ONES[:3], 0.0, 0.0), ValueError,
     ["square batch", "(4, 8) and (3, 8)"]),
    ("preset_not_a_str", lambda: SigLIP.from_preset(5, load_weights=False), TypeError,
     ["preset must be a preset name", "received 5 (int)"]),
    ("preset_typo", lambda: SigLIP.from_preset("siglip_bse_patch16_224"), ValueError,
     ["Unknown preset 'siglip_bse_patch16_224'", FIXED]),
    ("load_weights_int", lambda: SigLIP.from_preset(FIXED, load_weights=1), TypeError,
     ["load_weights must be True or False; received 1 (int)"]),
    ("override_zero", lambda: SigLIP.from_preset(FIXED, False, sequence_length=0), ValueError,
     [f"preset '{FIXED}': sequence_length must be a positive int; received 0"]),
    ("override_patch_size_zero", lambda: SigLIP.from_preset(FIXED, False, patch_size=0),
     ValueError, ["patch_size must be a positive int; received 0"]),
    ("override_float", lambda: SigLIP.from_preset(FIXED, False, vocabulary_size=100.0),
     TypeError, ["vocabulary_size must be an int; received 100.0 (float)"]),
    ("override_image_size_str", lambda: SigLIP.from_preset(FIXED, False, image_size="224"),
     TypeError, ["image_size must be an int or a (height, width) pair", "'224' (str)"]),
    ("override_image_below_patch", lambda: SigLIP.from_preset(FIXED, False, image_size=8),
     ValueError, ["image_size=(8, 8) is smaller than one 16x16 patch"]),
    ("override_unknown", lambda: SigLIP.from_preset(FIXED, False, image_sise=256), ValueError,
     ["Unknown override(s) ['image_sise']", "image_size"]),
    ("override_fixed_key", lambda: SigLIP.from_preset(FIXED, False, hf_id="x"), ValueError,
     ["['hf_id'] describe(s) the released checkpoint and cannot be overridden"]),
    ("override_naflex_on_fixed", lambda: SigLIP.from_preset(FIXED, False, naflex=True),
     ValueError, ["fixed-resolution preset: naflex=True needs position_grid_size"]),
    ("override_naflex_not_bool", lambda: SigLIP.from_preset(FIXED, False, naflex="yes"),
     TypeError, ["naflex must be True or False; received 'yes' (str)"]),
    ("override_image_size_on_naflex", lambda: SigLIP.from_preset(NAFLEX, False, image_size=256),
     ValueError, ["image_size does not apply to a NaFlex tower", "max_num_patches"]),
    ("override_variant_not_str", lambda: SigLIP.from_preset(FIXED, False, image_variant=16),
     TypeError, ["image_variant must be a variant name (str)"]),
    ("recall_nan_embeddings", lambda: tasks.retrieval_recall(
        None, image_embeddings=np.full((3, 4), np.nan), text_embeddings=np.ones((3, 4))),
     ValueError, ["image_embeddings: 3 of 3 rows hold NaN or inf", "fix or drop"]),
    ("recall_ks_zero", lambda: tasks.retrieval_recall(
        None, image_embeddings=np.eye(3), text_embeddings=np.eye(3), ks=(0,)),
     ValueError, ["ks[0] must be a positive int; received 0"]),
    ("recall_unpaired", lambda: tasks.retrieval_recall(
        None, image_embeddings=np.eye(3), text_embeddings=np.eye(4)[:, :3]),
     ValueError, ["3 images and 4 texts", "text_image_ids"]),
]


@independent
@pytest.mark.parametrize(
    "fault, call, error, parts", [pytest.param(*case, id=case[0]) for case in ARGUMENTS]
)
def test_bad_arguments(fault, call, error, parts):
    _raises(error, parts, call)


@independent
def test_images_in_0_1_with_input_range_equal_the_uint8_result():
    # The documented fix gives the right result, not merely no error.
    floats = PHOTO / 255.0
    np.testing.assert_array_equal(preprocess_images(floats, 32, input_range=(0, 1)),
                                  preprocess_images(PHOTO, 32))
    black = np.zeros((1, 8, 8, 3), np.float32)  # black in either reading: accepted
    assert float(preprocess_images(black, 8).max()) == -1.0


def _spm(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    import io

    model = io.BytesIO()
    words = [f"w{i} x{i % 7} y{i % 11}" for i in range(300)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(words), model_writer=model, vocab_size=60, minloglevel=2,
        hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
    )
    return model.getvalue()


@independent
def test_tokenizer_faults(tmp_path):
    proto = _spm(tmp_path)
    tokenizer = Tokenizer(proto, sequence_length=8)
    _raises(ValueError, ["Text 1 is not valid Unicode", "lone surrogate U+D800 at position 2",
                         "encode('utf-8', 'replace')"], tokenizer, ["ok", "ab\ud800c"])
    _raises(TypeError, ["Text 0 is a bytes, not a str"], tokenizer, [b"bytes"])
    _raises(TypeError, ["texts must be a str or a list of str; received int"], tokenizer, 5)
    _raises(TypeError, ["sequence_length must be an int; received 8.0 (float)"],
            Tokenizer, proto, sequence_length=8.0)
    _raises(ValueError, ["flavor must be one of 'siglip', 'siglip2'; received 'gemma'"],
            Tokenizer, proto, flavor="gemma")
    _raises(ValueError, ["The bytes given is not a readable SentencePiece model",
                         "truncated, corrupt", "spiece.model"], Tokenizer, b"not a model")
    corrupt = tmp_path / "spiece.model"
    corrupt.write_bytes(proto[: len(proto) // 3])
    _raises(ValueError, [f"{corrupt} is not a readable SentencePiece model"], Tokenizer, corrupt)
    assert tokenizer(["w1 x1"]).shape == (1, 8)  # the good path still works


# What needs a model: every backend.


@pytest.fixture(scope="module")
def model():
    return build_tiny("fixture_like", seed=3)


def _tokenize(texts):
    return np.ones((len(texts), 16), "int32")


IMAGES = RNG.uniform(-1, 1, (3, 32, 24, 3)).astype("float32")

MODEL_CASES = [
    ("encode_batch_size_zero", lambda m: m.encode_images(IMAGES, batch_size=0), ValueError,
     ["batch_size must be a positive int; received 0"]),
    ("encode_batch_size_float", lambda m: m.encode_texts(np.ones((3, 16), "int32"),
                                                         batch_size=2.5),
     TypeError, ["batch_size must be an int or None; received 2.5 (float)"]),
    ("class_names_str", lambda m: tasks.zero_shot_classify(m, _tokenize, IMAGES, "cat"),
     TypeError, ["class_names must be a list of str; received the str 'cat'",
                 "class_names=['cat']"]),
    ("class_names_duplicates",
     lambda m: tasks.zero_shot_classify(m, _tokenize, IMAGES, ["cat", "dog", "cat"]),
     ValueError, ["class_names holds duplicates ['cat']"]),
    ("template_two_fields",
     lambda m: tasks.zero_shot_classify(m, _tokenize, IMAGES, ["a"], templates=["{} {}"]),
     ValueError, ["Template '{} {}' must hold exactly one '{}'", "2 field(s)"]),
    ("template_no_field",
     lambda m: tasks.zero_shot_classify(m, _tokenize, IMAGES, ["a"], templates="a photo"),
     ValueError, ["Template 'a photo' has no '{}'"]),
    ("zero_images", lambda m: tasks.zero_shot_classify(m, _tokenize, IMAGES[:0], ["a", "b"]),
     ValueError, ["Nothing to encode (encoding images): the inputs hold 0 examples"]),
    ("top_k_too_large", lambda m: tasks.zero_shot_classify(m, _tokenize, IMAGES, ["a"], top_k=2),
     ValueError, ["top_k must be in [1, 1]"]),
    ("tasks_batch_size_bool", lambda m: tasks.embed_images(m, IMAGES, batch_size=True),
     TypeError, ["batch_size must be an int; received True (bool)"]),
    ("progress_str", lambda m: tasks.embed_images(m, IMAGES, progress="yes"), TypeError,
     ["progress must be True, False or None; received 'yes'"]),
    ("towers_swapped", lambda m: SigLIP(m.text_encoder, m.vision_encoder), TypeError,
     ["vision_encoder must be a SigLIPVisionEncoder or a SigLIPNaFlexVisionEncoder; received "
      "SigLIPTextEncoder"]),
    ("l2_epsilon_negative",
     lambda m: SigLIP(m.vision_encoder, m.text_encoder, l2_epsilon=-1.0), ValueError,
     ["l2_epsilon must be >= 0"]),
    ("compile_chunk_size_negative", lambda m: m.compile(chunk_size=-1), ValueError,
     ["chunk_size must be a positive int; received -1"]),
    ("compile_ring_unknown", lambda m: m.compile(ring="both"), ValueError,
     ["ring must be 'auto', 'ring', 'bidir' or None; received 'both'"]),
]


@pytest.mark.parametrize(
    "fault, call, error, parts", [pytest.param(*case, id=case[0]) for case in MODEL_CASES]
)
def test_bad_arguments_with_a_model(model, fault, call, error, parts):
    _raises(error, parts, call, model)


def test_encode_an_empty_batch_in_pieces(model):
    # 0 examples with a batch size: the same (0, D) as without one, not a concatenate error.
    empty = IMAGES[:0]
    assert tuple(model.encode_images(empty, batch_size=2).shape) == (0, 48)
    assert tuple(keras.ops.shape(model.encode_images(empty))) == (0, 48)
