"""KerasHub `SigLIPBackbone` presets against KerasHub itself (docs/checkpoints.md, "KerasHub").

Tiny random KerasHub backbones (a SigLIP 1 shape, and a SigLIP 2 / g-opt shape whose text tower
is narrower than its projection) are saved with `save_to_preset`, loaded here, and must give
the same embeddings and logits within 1e-5; a model saved here must load with KerasHub's
`SigLIPBackbone.from_preset` and agree likewise. Weight round trips are bit-exact.
"""

import io
import shutil

import keras
import numpy as np
import pytest

from keras_siglip import SigLIP, registry
from keras_siglip.builders import build_model
from keras_siglip.convert import load_keras_hub, model_to_tree, save_keras_hub
from keras_siglip.testing import build_tiny_naflex, randomize_weights

keras_hub = pytest.importorskip("keras_hub")
h5py = pytest.importorskip("h5py")

TOL = 1e-5
CONFIGS = {
    # SigLIP 1 shape: text width = vision width = projection.
    "siglip": dict(
        vision=dict(patch_size=4, hidden_dim=24, num_layers=2, num_heads=2, intermediate_dim=36,
                    image_shape=(20, 20, 3)),
        text=dict(vocabulary_size=50, embedding_dim=24, hidden_dim=24, num_layers=2, num_heads=3,
                  intermediate_dim=30, max_sequence_length=8, projection_dim=24),
    ),
    # SigLIP 2 g-opt shape: a narrower text tower projected to the vision width.
    "siglip2": dict(
        vision=dict(patch_size=3, hidden_dim=30, num_layers=1, num_heads=5, intermediate_dim=40,
                    image_shape=(18, 18, 3)),
        text=dict(vocabulary_size=64, embedding_dim=16, hidden_dim=16, num_layers=2, num_heads=2,
                  intermediate_dim=20, max_sequence_length=6, projection_dim=30),
    ),
}


def _spm_proto(gemma=False):
    """A SentencePiece model with SigLIP's special pieces, or (`gemma`) with Gemma's."""
    spm = pytest.importorskip("sentencepiece")
    out = io.BytesIO()
    special = dict(pad_id=0, bos_id=2, eos_id=1, unk_id=3, pad_piece="<pad>", bos_piece="<bos>",
                   eos_piece="<eos>") if gemma else dict(
        pad_id=0, bos_id=-1, eos_id=1, unk_id=2, pad_piece="<pad>", eos_piece="</s>")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["the quick brown fox jumps over the lazy dog"] * 20),
        model_writer=out, vocab_size=12 if gemma else 11, model_type="WORD", unk_piece="<unk>", minloglevel=2,
        **special,
    )
    return out.getvalue()


def _ids(tokenizer, text=("the lazy fox", "a quick dog")):
    return [np.asarray(keras.ops.convert_to_numpy(row)).tolist() for row in tokenizer(list(text))]


def _randomize_hub(backbone, seed):
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        if "int" in str(weight.dtype):
            continue  # position_ids
        shape = tuple(weight.shape)
        name = weight.path
        if name.endswith("gamma"):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(("beta", "bias")):
            value = 0.1 * rng.standard_normal(shape)
        elif name.endswith("logit_scale"):
            value = np.asarray(np.log(10.0) + 0.1 * rng.standard_normal())
        elif name.endswith("logit_bias"):
            value = np.asarray(-2.0 + 0.1 * rng.standard_normal())
        elif name.endswith("embeddings") or len(shape) == 3 and shape[:2] == (1, 1):
            value = rng.standard_normal(shape)
        else:
            fan_in = shape[0] * shape[1] if name.endswith("attention_output/kernel") else \
                int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        weight.assign(value.astype("float32"))


def _inputs(image_size, vocab, length, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (3, image_size, image_size, 3)).astype("float32")
    token_ids = rng.integers(0, vocab, (2, length)).astype("int32")
    return images, token_ids


def _hub_outputs(backbone, images, token_ids):
    out = backbone({"images": images, "token_ids": token_ids})
    return {
        "image": keras.ops.convert_to_numpy(backbone.get_vision_embeddings(images)),
        "text": keras.ops.convert_to_numpy(backbone.get_text_embeddings(token_ids)),
        "logits": keras.ops.convert_to_numpy(out["vision_logits"]),
    }


def _our_outputs(model, images, token_ids):
    return {
        "image": keras.ops.convert_to_numpy(model.encode_images(images)),
        "text": keras.ops.convert_to_numpy(model.encode_texts(token_ids)),
        "logits": keras.ops.convert_to_numpy(
            model({"images": images, "token_ids": token_ids})["logits"]),
    }


def _assert_same(ours, theirs):
    for key in ("image", "text", "logits"):
        np.testing.assert_allclose(ours[key], theirs[key], rtol=TOL, atol=TOL, err_msg=key)


@pytest.fixture(scope="module")
def hub_presets(tmp_path_factory):
    """`{kind: (backbone, preset folder)}` with their tokenizers, as KerasHub's own presets have
    them: SigLIP's a `SigLIPTokenizer` appending `</s>`, SigLIP 2's a `GemmaTokenizer`."""
    root = tmp_path_factory.mktemp("keras_hub")
    out = {}
    for seed, (kind, config) in enumerate(CONFIGS.items()):
        backbone = keras_hub.models.SigLIPBackbone(
            keras_hub.models.SigLIPVisionEncoder(**config["vision"]),
            keras_hub.models.SigLIPTextEncoder(**config["text"]),
        )
        _randomize_hub(backbone, seed)
        folder = root / kind
        backbone.save_to_preset(str(folder))
        if kind == "siglip":
            tokenizer = keras_hub.models.SigLIPTokenizer(proto=_spm_proto(), add_eos=True)
        else:
            tokenizer = keras_hub.models.GemmaTokenizer(proto=_spm_proto(gemma=True))
        tokenizer.save_to_preset(str(folder))
        out[kind] = (backbone, folder)
    return out


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_keras_hub_preset_loads_with_same_outputs(hub_presets, kind):
    backbone, folder = hub_presets[kind]
    config = CONFIGS[kind]
    images, token_ids = _inputs(config["vision"]["image_shape"][0],
                                config["text"]["vocabulary_size"],
                                config["text"]["max_sequence_length"])
    model = load_keras_hub(folder)
    assert isinstance(model, SigLIP)
    _assert_same(_our_outputs(model, images, token_ids), _hub_outputs(backbone, images, token_ids))
    # from_preset(path) recognises the folder and gives the same weights.
    assert registry.detect_format(folder) == "keras_hub"
    again = SigLIP.from_preset(str(folder))
    a, b = model_to_tree(model), model_to_tree(again)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_saved_preset_loads_in_keras_hub_with_same_outputs(hub_presets, tmp_path, kind):
    config = CONFIGS[kind]
    v, t = config["vision"], config["text"]
    model = build_model(
        False,
        dict(image_size=v["image_shape"][0], patch_size=v["patch_size"], width=v["hidden_dim"],
             depth=v["num_layers"], mlp_dim=v["intermediate_dim"], num_heads=v["num_heads"]),
        dict(vocabulary_size=t["vocabulary_size"], sequence_length=t["max_sequence_length"],
             width=t["hidden_dim"], depth=t["num_layers"], mlp_dim=t["intermediate_dim"],
             num_heads=t["num_heads"], embed_dim=t["projection_dim"]),
    )
    randomize_weights(model, seed=7)
    source = hub_presets[kind][1]
    out = save_keras_hub(model, tmp_path / "out", tokenizer=source)
    backbone = keras_hub.models.SigLIPBackbone.from_preset(str(out))
    images, token_ids = _inputs(v["image_shape"][0], t["vocabulary_size"],
                                t["max_sequence_length"], seed=1)
    _assert_same(_our_outputs(model, images, token_ids), _hub_outputs(backbone, images, token_ids))
    # The tokenizer came across and tokenizes as the source's does.
    theirs = keras_hub.tokenizers.Tokenizer.from_preset(str(source))
    ours = keras_hub.tokenizers.Tokenizer.from_preset(str(out))
    assert type(ours) is type(theirs)
    assert _ids(ours) == _ids(theirs) and len(_ids(ours)[0]) > 0
    # And back here, bit-exact.
    back = load_keras_hub(out)
    a, b = model_to_tree(model), model_to_tree(back)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_model_without_text_head_goes_to_keras_hub_with_the_identity_head(tmp_path):
    # So400m/16-i18n has no text head; KerasHub always has one: the identity is the same map.
    model = build_model(False, dict(image_size=12, patch_size=4, width=12, depth=1, mlp_dim=16,
                                    num_heads=2),
                        dict(vocabulary_size=20, sequence_length=5, width=12, depth=1,
                             mlp_dim=16, num_heads=3, embed_dim=None, use_head=False))
    randomize_weights(model, seed=11)
    out = save_keras_hub(model, tmp_path / "i18n")
    backbone = keras_hub.models.SigLIPBackbone.from_preset(str(out))
    images, token_ids = _inputs(12, 20, 5, seed=2)
    ours = _our_outputs(model, images, token_ids)
    _assert_same(ours, _hub_outputs(backbone, images, token_ids))
    _assert_same(_our_outputs(load_keras_hub(out), images, token_ids), ours)


def test_registry_saves_keras_hub_and_carries_the_source_tokenizer(hub_presets, tmp_path):
    _, source = hub_presets["siglip"]
    model = load_keras_hub(source)
    out = registry.save_path(model, tmp_path / "copy", "keras_hub", sources=(source,))
    assert (out / "assets/tokenizer/vocabulary.spm").read_bytes() == \
        (source / "assets/tokenizer/vocabulary.spm").read_bytes()
    assert registry.detect_format(out) == "keras_hub"
    with pytest.raises(FileExistsError, match="overwrite"):
        save_keras_hub(model, out)
    save_keras_hub(model, out, overwrite=True)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_tokenizer_from_a_sentencepiece_file_is_the_one_keras_hub_presets_have(
        hub_presets, tmp_path, kind):
    # A bare SentencePiece model (as in a transformers folder: spiece.model for SigLIP,
    # tokenizer.model for SigLIP 2) becomes the tokenizer KerasHub's own presets hold.
    source = hub_presets[kind][1]
    model = load_keras_hub(source)
    spm_name = "spiece.model" if kind == "siglip" else "tokenizer.model"
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / spm_name).write_bytes((source / "assets/tokenizer/vocabulary.spm").read_bytes())
    out = registry.save_path(model, tmp_path / "out", "keras_hub", sources=(hf,))
    ours = keras_hub.tokenizers.Tokenizer.from_preset(str(out))
    theirs = keras_hub.tokenizers.Tokenizer.from_preset(str(source))
    assert type(ours) is type(theirs)
    assert (ours.add_bos, ours.add_eos) == (theirs.add_bos, theirs.add_eos)
    assert _ids(ours) == _ids(theirs)
    # A SentencePiece model with more pieces than the vocabulary is another model's.
    small = build_model(False, dict(image_size=8, patch_size=4, width=8, depth=1, mlp_dim=8,
                                    num_heads=2),
                        dict(vocabulary_size=5, sequence_length=4, width=8, depth=1, mlp_dim=8,
                             num_heads=2))
    with pytest.raises(ValueError, match=r"1[12] pieces, more than the model's vocabulary of 5"):
        save_keras_hub(small, tmp_path / "small", tokenizer=hf / spm_name)
    assert not (tmp_path / "small").exists()


def test_mismatched_preset_is_reported_in_keras_hub_names(hub_presets, tmp_path):
    _, source = hub_presets["siglip"]
    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    query = "layers/sig_lip_vision_encoder/layers/sig_lip_encoder_layer_1/self_attn/query_dense/vars/0"
    fc1 = "layers/sig_lip_text_encoder/layers/sig_lip_encoder_layer/mlp/fc1/vars/1"
    with h5py.File(broken / "model.weights.h5", "a") as f:
        del f[query]
        del f[fc1]
        f[fc1] = np.zeros((7,), np.float32)
        f["layers/extra/vars/0"] = np.zeros((2,), np.float32)
    with pytest.raises(ValueError) as error:
        load_keras_hub(broken)
    message = str(error.value)
    assert "does not fit the architecture its config.json describes" in message
    assert f"1 missing tensor(s):\n  {query} (24, 2, 12)" in message
    assert "img/Transformer/encoderblock_1/MultiHeadDotProductAttention_0/query/kernel" in message
    assert "layers/extra/vars/0 (2,)" in message
    assert f"{fc1}: checkpoint (7,), config.json implies (30,)" in message


def test_keras_hub_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="NaFlex"):
        save_keras_hub(build_tiny_naflex(), tmp_path / "naflex")
    with pytest.raises(TypeError, match="save_keras_hub writes a two-tower SigLIP"):
        save_keras_hub(build_tiny_naflex().vision_encoder, tmp_path / "tower")
    model = build_model(False, dict(image_size=(8, 12), patch_size=4, width=8, depth=1,
                                    mlp_dim=8, num_heads=2),
                        dict(vocabulary_size=10, sequence_length=4, width=8, depth=1, mlp_dim=8,
                             num_heads=2))
    with pytest.raises(ValueError, match="square images only"):
        save_keras_hub(model, tmp_path / "nonsquare")
    assert not (tmp_path / "nonsquare").exists()


@pytest.mark.backend_independent
def test_keras_hub_folder_is_not_a_transformers_folder(hub_presets, tmp_path):
    _, source = hub_presets["siglip"]
    assert registry.detect_format(source) == "keras_hub"
    assert registry.output_format(source) == "keras_hub"
    assert registry.output_format(tmp_path / "new_folder") == "transformers"
    assert set(registry.format_names(writable=True)) == {
        "keras", "big_vision", "keras_hub", "open_clip", "transformers"}
    with pytest.raises(ValueError, match="Unknown checkpoint format 'onnx'"):
        registry.save_path(None, tmp_path / "x", "onnx")
