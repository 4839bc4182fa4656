"""Weight porting against Hugging Face transformers (docs/checkpoints.md), and the big_vision and
.keras formats it round-trips through, on the current Keras backend.

Tiny transformers models (docs/checkpoints.md) get non-trivial random weights, are saved with
`save_pretrained`, and must give the same outputs after loading into Keras (within 1e-5),
after the command-line conversion, and after the trip back to transformers. Round trips
between Keras, transformers and big_vision are bit-exact.
"""

import json
import shutil

import numpy as np
import pytest

import keras

from keras_siglip import SigLIP, SigLIPTextEncoder, SigLIPVisionEncoder, cli
from keras_siglip.convert import (
    load_big_vision,
    load_transformers,
    model_to_tree,
    save_big_vision,
    save_transformers,
)
from keras_siglip.convert.big_vision import assign_tree
from keras_siglip.testing import random_naflex_inputs, random_tree
from tests._hf_checkpoints import randomise

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

TOL = 1e-5
MAX_ERRORS = {}  # name -> max |keras - transformers|, printed at the end of the module

TEXT = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=16, pad_token_id=1, bos_token_id=2,
            eos_token_id=3)
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              image_size=30, patch_size=2)
CASES = {
    "siglip": (TEXT, VISION),
    # 31 px with p = 2 drops a pixel row and column (VALID); a text tower narrower than the
    # image tower with its head 24 -> 32 is g-opt's So400m text tower (1152 -> 1536) in
    # small. The image tower keeps the first case's shapes, so JAX reuses its compilations.
    "odd_gopt": (dict(TEXT, hidden_size=24, projection_size=32), dict(VISION, image_size=31)),
}
NAFLEX_SHAPES = [(2, 12), (4, 4), (3, 5)]  # down- and upsampling the 4x4 table, identity, odd
NAFLEX_N = 24


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _close(name, actual, expected, tol=TOL):
    actual, expected = _np(actual).astype(np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (name, actual.shape, expected.shape)
    error = float(np.max(np.abs(actual - expected)))
    MAX_ERRORS[name] = max(error, MAX_ERRORS.get(name, 0.0))
    assert error <= tol, f"{name}: max |keras - transformers| = {error:.3g} > {tol:g}"


def _same_tree(a, b):
    """Bit-exact equality of two models' (or trees') weights."""
    a, b = (x if isinstance(x, dict) else model_to_tree(x) for x in (a, b))
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), name


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if MAX_ERRORS:
        width = max(map(len, MAX_ERRORS))
        lines = [f"  {k:<{width}}  {v:.2e}" for k, v in sorted(MAX_ERRORS.items())]
        print(f"\nmax errors ({keras.backend.backend()}):\n" + "\n".join(lines))


def _randomise(model, seed):
    """Every parameter re-drawn: LayerNorm scales 1 +- 0.1, biases N(0, 0.1), the rest N(0, 0.02)."""
    return randomise(model, seed, std=0.02, logit_bias=-2.0)


def _eager(model):
    model.eval()
    model.set_attn_implementation("eager")
    return model


def _text_ids(seed, batch=3, length=16, pad=1):
    """Random texts of different lengths, ended by EOS = 1 and padded with `pad` (1 or 0)."""
    rng = np.random.default_rng(seed)
    ids = np.full((batch, length), pad, np.int64)
    for i, n in enumerate(rng.integers(3, length - 1, batch)):
        ids[i, :n] = rng.integers(4, 99, n)
        ids[i, n] = 1
    ids[-1, :] = rng.integers(4, 99, length)  # one text filling the whole length
    ids[-1, -1] = 1
    return ids


def _hf_outputs(model, images_nchw, ids, naflex=None):
    with torch.no_grad():
        if naflex is not None:
            vision_kwargs = dict(
                pixel_values=torch.tensor(naflex["patches"]),
                pixel_attention_mask=torch.tensor(naflex["patch_mask"]).int(),
                spatial_shapes=torch.tensor(naflex["spatial_shapes"]).long(),
            )
        else:
            vision_kwargs = dict(pixel_values=torch.tensor(images_nchw))
        out = {"vision": model.vision_model(**vision_kwargs)}
        out["image_features"] = model.get_image_features(**vision_kwargs).pooler_output.numpy()
        for pad, text in ids.items():
            out[f"text_features_pad{pad}"] = model.get_text_features(
                input_ids=torch.tensor(text)
            ).pooler_output.numpy()
            both = model(input_ids=torch.tensor(text), return_loss=True, **vision_kwargs)
            out[f"logits_per_image_pad{pad}"] = both.logits_per_image.numpy()
            out[f"logits_per_text_pad{pad}"] = both.logits_per_text.numpy()
            out[f"loss_pad{pad}"] = float(both.loss)
    out["last_hidden_state"] = out.pop("vision").last_hidden_state.numpy()
    return out


@pytest.fixture(scope="module")
def hf_cases(tmp_path_factory):
    """Each case: the transformers model, its saved folder, inputs and reference outputs."""
    cases = {}
    for seed, (name, (text, vision)) in enumerate(CASES.items()):
        config = transformers.SiglipConfig(text_config=text, vision_config=vision)
        model = _eager(_randomise(transformers.SiglipModel(config), seed))
        folder = tmp_path_factory.mktemp("hf") / name
        model.save_pretrained(folder)
        size = vision["image_size"]
        images = np.random.default_rng(seed).uniform(-1, 1, (3, size, size, 3)).astype(np.float32)
        ids = {pad: _text_ids(seed, pad=pad) for pad in (1, 0)}
        expected = _hf_outputs(model, images.transpose(0, 3, 1, 2), ids)
        cases[name] = dict(model=model, folder=folder, images=images, ids=ids, expected=expected)
    return cases


def _check_against(name, model, case, naflex=False):
    """Compare a Keras SigLIP with the reference outputs of a transformers case.

    Both pad styles go through in one batch of texts, to keep the number of distinct
    shapes (and so JAX's per-shape compilations) small.
    """
    expected = case["expected"]
    images = case["naflex_inputs"] if naflex else case["images"]
    vision = model.vision_encoder(images, return_tokens=True)
    if naflex:
        for i, (h, w) in enumerate(case["naflex_inputs"]["spatial_shapes"]):
            _close(f"{name} last_hidden_state", _np(vision["tokens"])[i, : h * w],
                   expected["last_hidden_state"][i, : h * w])
    else:
        _close(f"{name} last_hidden_state", vision["tokens"], expected["last_hidden_state"])
    _close(f"{name} image features", vision["pooled"], expected["image_features"])
    pads = list(case["ids"])
    ids = np.concatenate([case["ids"][pad] for pad in pads]).astype(np.int32)
    text = _np(model.text_encoder(ids)).reshape(len(pads), -1, model.embed_dim)
    out = model({"images": images, "token_ids": ids})
    logits = _np(out["logits"]).reshape(len(images["patches"]) if naflex else len(images),
                                        len(pads), -1)
    text_embeddings = _np(out["text_embeddings"]).reshape(len(pads), -1, model.embed_dim)
    from keras_siglip.losses import sigmoid_loss

    for k, pad in enumerate(pads):
        _close(f"{name} text features", text[k], expected[f"text_features_pad{pad}"])
        _close(f"{name} logits", logits[:, k], expected[f"logits_per_image_pad{pad}"])
        _close(f"{name} logits", logits[:, k].T, expected[f"logits_per_text_pad{pad}"])
        loss = sigmoid_loss(out["image_embeddings"], text_embeddings[k],
                            model.logit_scale, model.logit_bias)
        _close(f"{name} loss", np.reshape(_np(loss), ()), expected[f"loss_pad{pad}"])


# ---------------------------------------------------------------------------------------------
# transformers -> Keras


@pytest.fixture(scope="module")
def keras_cases(hf_cases):
    """`load_transformers` of each saved case (loaded once; the tests below reuse them)."""
    return {name: load_transformers(case["folder"]) for name, case in hf_cases.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_load_folder_matches_transformers(hf_cases, keras_cases, name):
    model = keras_cases[name]
    assert isinstance(model, SigLIP)
    _check_against(name, model, hf_cases[name])


def test_load_model_object_and_sharded_folder(hf_cases, keras_cases, tmp_path):
    case = hf_cases["odd_gopt"]
    from_folder = model_to_tree(keras_cases["odd_gopt"])
    _same_tree(load_transformers(case["model"]), from_folder)
    case["model"].save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    _same_tree(load_transformers(tmp_path / "sharded"), from_folder)


def test_cli_convert_folder_to_keras(hf_cases, tmp_path):
    case = hf_cases["siglip"]
    out = tmp_path / "siglip.keras"
    assert cli.main(["convert", str(case["folder"]), str(out)]) == 0
    model = keras.saving.load_model(out)
    _check_against("cli", model, case)
    _same_tree(SigLIP.from_preset(str(out)), model)
    _same_tree(SigLIP.from_preset(str(case["folder"])), model)


def test_standalone_towers_both_key_conventions(hf_cases, tmp_path):
    from safetensors.numpy import load_file, save_file

    case = hf_cases["odd_gopt"]
    full = case["model"]
    vision = transformers.SiglipVisionModel(full.config.vision_config)
    vision.load_state_dict(full.vision_model.state_dict())
    text = transformers.SiglipTextModel(full.config.text_config)
    text.load_state_dict(full.text_model.state_dict())
    for name, tower, prefix, cls in (
        ("vision", vision, "vision_model.", SigLIPVisionEncoder),
        ("text", text, "text_model.", SigLIPTextEncoder),
    ):
        v5 = tmp_path / f"{name}_v5"
        _eager(tower).save_pretrained(v5)
        state = load_file(v5 / "model.safetensors")
        assert not any(k.startswith(prefix) for k in state)  # v5: no tower prefix
        v4 = tmp_path / f"{name}_v4"
        shutil.copytree(v5, v4)
        save_file({prefix + k: v for k, v in state.items()}, v4 / "model.safetensors",
                  metadata={"format": "pt"})
        loaded = [load_transformers(v5), load_transformers(v4), load_transformers(tower)]
        for model in loaded:
            assert isinstance(model, cls)
        _same_tree(loaded[0], loaded[1])
        _same_tree(loaded[0], loaded[2])
        if name == "vision":
            _close("tower image features", loaded[0](case["images"]),
                   case["expected"]["image_features"])
        else:
            ids = case["ids"][0].astype(np.int32)
            _close("tower text features", loaded[0](ids), case["expected"]["text_features_pad0"])
        # And back: transformers loads the tower that save_transformers writes.
        saved = save_transformers(loaded[0], tmp_path / f"{name}_saved")
        reloaded = _eager(type(tower).from_pretrained(saved))
        with torch.no_grad():
            if name == "vision":
                pooled = reloaded(pixel_values=torch.tensor(case["images"].transpose(0, 3, 1, 2)))
                expected = case["expected"]["image_features"]
            else:
                pooled = reloaded(input_ids=torch.tensor(case["ids"][0]))
                expected = case["expected"]["text_features_pad0"]
        # transformers against transformers: the weights survive Keras exactly.
        _close(f"tower {name} re-saved (torch vs torch)", pooled.pooler_output.numpy(), expected)
        _same_tree(load_transformers(saved), loaded[0])


# ---------------------------------------------------------------------------------------------
# Keras -> transformers, and round trips


def _keras_model(image_size=(30, 30), use_head=True, seed=0):
    """A Keras SigLIP of the base case's sizes (so JAX reuses its compilations), random weights."""
    text, vision = CASES["siglip"]
    model = SigLIP(
        SigLIPVisionEncoder(image_size, vision["patch_size"], vision["hidden_size"],
                            vision["num_hidden_layers"], vision["intermediate_size"],
                            vision["num_attention_heads"], name="vision_encoder"),
        SigLIPTextEncoder(text["vocab_size"], text["max_position_embeddings"],
                          text["hidden_size"], text["num_hidden_layers"],
                          text["intermediate_size"], text["num_attention_heads"],
                          use_head=use_head, name="text_encoder"),
    )
    assign_tree(model, random_tree(model, seed))
    return model


def _keras_inputs(model, seed):
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1, 1, (3, *model.vision_encoder.image_size, 3)).astype(np.float32)
    ids = rng.integers(0, model.text_encoder.vocabulary_size,
                       (6, model.text_encoder.sequence_length)).astype(np.int64)
    return images, ids


@pytest.mark.parametrize("source", ["no_text_head", "odd_gopt"])
def test_keras_to_transformers_and_back(keras_cases, tmp_path, source):
    # "no_text_head" (big_vision's So400m/16-i18n in small) is written with an identity head
    # and comes back without a head.
    if source == "odd_gopt":
        model = keras_cases["odd_gopt"]
    else:
        model = _keras_model(use_head=False, seed=3)
    folder = save_transformers(model, tmp_path / "out")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "siglip"
    hf = _eager(transformers.SiglipModel.from_pretrained(folder))
    images, ids = _keras_inputs(model, seed=4)
    with torch.no_grad():
        expected = hf(pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)),
                      input_ids=torch.tensor(ids))
        image_features = hf.get_image_features(
            pixel_values=torch.tensor(images.transpose(0, 3, 1, 2))).pooler_output.numpy()
        text_features = hf.get_text_features(input_ids=torch.tensor(ids)).pooler_output.numpy()
    ids = ids.astype(np.int32)
    _close("saved image features", model.vision_encoder(images), image_features)
    _close("saved text features", model.text_encoder(ids), text_features)
    _close("saved logits", model({"images": images, "token_ids": ids})["logits"],
           expected.logits_per_image.numpy())
    back = load_transformers(folder)
    assert (back.text_encoder.head is None) == (model.text_encoder.head is None)
    _same_tree(back, model)


def test_big_vision_round_trip_is_bit_exact(keras_cases, tmp_path):
    model = keras_cases["odd_gopt"]
    path = save_big_vision(model, tmp_path / "model.npz")
    assert cli.main(["convert", str(path), str(tmp_path / "hf")]) == 0
    _same_tree(load_transformers(tmp_path / "hf"), model)
    _same_tree(SigLIP.from_preset(str(path)), model)
    # A table that does not fit --image-size is resized only on request.
    out = tmp_path / "resized.keras"
    assert cli.main(["convert", str(path), str(out), "--image-size", "20", "20"]) == 1
    _nothing_at(out)
    assert cli.main(["convert", str(path), str(out), "--image-size", "20", "20",
                     "--posemb-resize", "big_vision"]) == 0
    assert keras.saving.load_model(out).vision_encoder.image_size == (20, 20)


def test_non_square_through_big_vision(tmp_path):
    # transformers' SiglipVisionConfig is square only, so non-square models port through
    # big_vision (whose table alone cannot tell the grid: image_size settles it).
    model = _keras_model(image_size=(30, 24), seed=5)
    with pytest.raises(ValueError, match="square"):
        save_transformers(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    path = save_big_vision(model, tmp_path / "model.npz")
    with pytest.raises(ValueError, match="not a square grid"):
        load_big_vision(path)
    _same_tree(load_big_vision(path, image_size=(30, 24)), model)
    out = tmp_path / "model.keras"
    assert cli.main(["convert", str(path), str(out), "--image-size", "30", "24"]) == 0
    loaded = keras.saving.load_model(out)
    assert loaded.vision_encoder.image_size == (30, 24)
    _same_tree(loaded, model)


def _round_to_bfloat16(x):
    bits = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
    return bits.astype(np.uint16)


def test_big_vision_checkpoint_forms(keras_cases, tmp_path):
    """Scan-stacked blocks, a params/ prefix and bfloat16 (2-byte void) all load the same."""
    bf16 = {k: _round_to_bfloat16(v) for k, v in model_to_tree(keras_cases["siglip"]).items()}
    tree = {k: (v.astype(np.uint32) << 16).view(np.float32) for k, v in bf16.items()}

    stacked = {}
    for name, value in tree.items():
        head, sep, rest = name.partition("/encoderblock_")
        if sep:
            index, leaf = rest.split("/", 1)
            stacked.setdefault(f"{head}/encoderblock/{leaf}", {})[int(index)] = value
        else:
            stacked[name] = value
    stacked = {
        k: np.stack([v[i] for i in range(len(v))]) if isinstance(v, dict) else v
        for k, v in stacked.items()
    }
    assert "img/Transformer/encoderblock/LayerNorm_0/scale" in stacked
    prefixed = {f"params/{k}": v for k, v in stacked.items()}
    np.savez(tmp_path / "bf16.npz", **{f"params/{k}": v.view("V2") for k, v in bf16.items()})
    for form in (stacked, prefixed, tmp_path / "bf16.npz"):
        _same_tree(load_big_vision(form), tree)


# ---------------------------------------------------------------------------------------------
# Errors: one clear message, nothing left at the destination


def _nothing_at(dst):
    assert not dst.exists()
    leftovers = [p.name for p in dst.parent.iterdir() if p.name.startswith(f".{dst.name}")]
    assert not leftovers, leftovers


def test_wrong_architecture_lists_every_tensor(hf_cases, keras_cases, tmp_path, capsys):
    folder = tmp_path / "edited"
    shutil.copytree(hf_cases["siglip"]["folder"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["num_hidden_layers"] = 1  # the file has 2: unexpected tensors
    config["text_config"]["num_hidden_layers"] = 3  # missing tensors
    config["text_config"]["intermediate_size"] = 40  # misshapen MLPs
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError) as info:
        load_transformers(folder)
    message = str(info.value)
    assert "16 missing" in message and "16 unexpected" in message and "misshapen" in message
    assert "text_model.encoder.layers.2.mlp.fc1.weight (40, 32)" in message
    assert "vision_model.encoder.layers.1.self_attn.q_proj.weight (32, 32)" in message
    assert "text_model.encoder.layers.0.mlp.fc1.weight: checkpoint (37, 32)" in message
    assert "txt/Encoder_0/encoderblock_0/MlpBlock_0/Dense_0/kernel" in message
    dst = tmp_path / "out.npz"
    assert cli.main(["convert", str(folder), str(dst)]) == 1
    assert "missing" in capsys.readouterr().err
    _nothing_at(dst)

    tree = model_to_tree(keras_cases["siglip"])
    del tree["img/MAPHead_0/LayerNorm_0/scale"]
    tree["img/head/kernel"] = np.zeros((32, 32), np.float32)
    tree["txt/Encoder_0/encoderblock_1/MlpBlock_0/Dense_1/bias"] = np.zeros(33, np.float32)
    with pytest.raises(ValueError) as info:
        load_big_vision(tree)
    message = str(info.value)
    assert "1 missing tensor(s):\n  img/MAPHead_0/LayerNorm_0/scale (32,)" in message
    assert "1 unexpected tensor(s):\n  img/head/kernel (32, 32)" in message
    assert "Dense_1/bias: checkpoint (33,), model expects (32,)" in message


def test_unsupported_configs(hf_cases, tmp_path):
    for key, value, match in (("hidden_act", "gelu", "gelu_pytorch_tanh"),
                              ("layer_norm_eps", 1e-5, "1e-6")):
        folder = tmp_path / key
        shutil.copytree(hf_cases["siglip"]["folder"], folder)
        config = json.loads((folder / "config.json").read_text())
        config["text_config"][key] = value
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=match):
            load_transformers(folder)


@pytest.mark.parametrize("damage", ["truncated_safetensors", "corrupt_config", "truncated_npz"])
def test_damaged_files_leave_nothing(hf_cases, keras_cases, tmp_path, capsys, damage):
    folder = tmp_path / "src"
    shutil.copytree(hf_cases["siglip"]["folder"], folder)
    src, dst = folder, tmp_path / "out.keras"
    if damage == "truncated_safetensors":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "corrupt_config":
        (folder / "config.json").write_text('{"model_type": "siglip", ')
    else:
        src = save_big_vision(keras_cases["siglip"], tmp_path / "src.npz")
        data = src.read_bytes()
        src.write_bytes(data[: len(data) // 2])
        dst = tmp_path / "out_hf"
    with pytest.raises(ValueError, match="truncated|not a readable"):
        load_big_vision(src) if src.suffix == ".npz" else load_transformers(src)
    assert cli.main(["convert", str(src), str(dst)]) == 1
    assert "error:" in capsys.readouterr().err
    _nothing_at(dst)


def test_cli_refuses_to_overwrite(hf_cases, keras_cases, tmp_path, capsys):
    """`--overwrite` replaces an earlier output; user files (or a non-checkpoint file) never."""
    src = str(hf_cases["siglip"]["folder"])
    expected = model_to_tree(keras_cases["siglip"])
    for dst in (tmp_path / "out.npz", tmp_path / "out_hf"):
        assert cli.main(["convert", src, str(dst)]) == 0
        assert cli.main(["convert", src, str(dst)]) == 1
        assert "already exists" in capsys.readouterr().err
        assert cli.main(["convert", src, str(dst), "--overwrite"]) == 0
        _same_tree(load_big_vision(dst) if dst.suffix else load_transformers(dst), expected)
    for dst in (tmp_path / "mine.npz", tmp_path / "mine_hf"):
        if dst.suffix:
            dst.write_bytes(b"keep me")
        else:
            dst.mkdir()
            (dst / "keep.txt").write_text("keep me")
        for flags in ([], ["--overwrite"]):
            assert cli.main(["convert", src, str(dst), *flags]) == 1
            err = capsys.readouterr().err
            assert "never replaced" in err and ("keep.txt" in err or "not a zip" in err)
            kept = dst.read_bytes() if dst.suffix else (dst / "keep.txt").read_bytes()
            assert kept == b"keep me"


def test_progress_counter_without_tqdm(capsys):
    from keras_siglip.convert.io import show_progress

    counted = show_progress(iter(range(7)), total=7, desc="convert", use_tqdm=False)
    assert list(counted) == list(range(7))
    assert "convert: 7/7 tensors" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# NaFlex: Siglip2Model


@pytest.fixture(scope="module")
def naflex_case(tmp_path_factory):
    text, vision = CASES["siglip"]
    vision = {k: v for k, v in vision.items() if k != "image_size"}
    config = transformers.Siglip2Config(text_config=text,
                                        vision_config=dict(vision, num_patches=16))
    model = _eager(_randomise(transformers.Siglip2Model(config), seed=7))
    folder = tmp_path_factory.mktemp("hf") / "naflex"
    model.save_pretrained(folder)
    inputs = random_naflex_inputs(NAFLEX_SHAPES, NAFLEX_N, patch_size=2, seed=7)
    ids = {pad: _text_ids(7, pad=pad) for pad in (1, 0)}
    expected = _hf_outputs(model, None, ids, naflex=inputs)
    return dict(model=model, folder=folder, naflex_inputs=inputs, ids=ids, expected=expected)


def test_naflex_matches_transformers(naflex_case, tmp_path):
    from keras_siglip.models import SigLIPNaFlexVisionEncoder

    model = load_transformers(naflex_case["folder"])
    assert isinstance(model.vision_encoder, SigLIPNaFlexVisionEncoder)
    _check_against("naflex", model, naflex_case, naflex=True)
    # Large random values in the padded patches change nothing valid.
    noisy = random_naflex_inputs(NAFLEX_SHAPES, NAFLEX_N, patch_size=2, seed=7, padding="random")
    _close("naflex padded image features", model.vision_encoder(noisy),
           naflex_case["expected"]["image_features"])
    tokens = _np(model.vision_encoder(noisy, return_tokens=True)["tokens"])
    for i, (h, w) in enumerate(NAFLEX_SHAPES):
        _close("naflex padded last_hidden_state", tokens[i, : h * w],
               naflex_case["expected"]["last_hidden_state"][i, : h * w])

    # Keras -> transformers -> Keras and Keras -> big_vision -> Keras, bit-exact.
    folder = save_transformers(model, tmp_path / "hf")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "siglip2"
    hf = _eager(transformers.Siglip2Model.from_pretrained(folder))
    ids = naflex_case["ids"][0]
    inputs = naflex_case["naflex_inputs"]
    with torch.no_grad():
        logits = hf(pixel_values=torch.tensor(inputs["patches"]),
                    pixel_attention_mask=torch.tensor(inputs["patch_mask"]).int(),
                    spatial_shapes=torch.tensor(inputs["spatial_shapes"]).long(),
                    input_ids=torch.tensor(ids)).logits_per_image.numpy()
    _close("naflex saved logits",
           model({"images": inputs, "token_ids": ids.astype(np.int32)})["logits"], logits)
    _same_tree(load_transformers(folder), model)
    _same_tree(load_big_vision(save_big_vision(model, tmp_path / "naflex.npz")), model)
