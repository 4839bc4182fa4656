"""open_clip / timm SigLIP state dicts (docs/checkpoints.md, "open_clip state dict").

Against open_clip itself (open_clip_torch 3.3.0 and timm 1.0.31, installed with --no-deps:
requirements/no-deps.txt): their modules import torchvision, which cannot load beside the pinned
CPU torch, so `tests/_open_clip_import.py` imports them with a placeholder torchvision that the
SigLIP models never touch. Every SigLIP config in open_clip's registry is built on the meta device
and must have exactly the state dict (names, shapes) and head counts of our table; tiny random
`CustomTextCLIP`s (timm trunk) must give the same embeddings and logits within 1e-5 after loading
here, and the same after saving here and `load_state_dict(strict=True)` there.

Without open_clip, the key names and shapes written down below from open_clip's / timm's source
still check the layout, and a NumPy forward pass written on the open_clip tensors the fused
q/k/v split.
"""

import json
import logging
import math
import re

import keras
import numpy as np
import pytest

from keras_siglip import SigLIP, registry
from keras_siglip.convert import load_open_clip, model_to_tree, save_open_clip
from keras_siglip.convert.open_clip import (
    OPEN_CLIP_CONFIGS,
    config_architecture,
    infer_config,
    matching_configs,
    state_dict_shapes,
)
from keras_siglip.convert import open_clip as open_clip_io
from tests._open_clip_import import import_open_clip

safetensors_numpy = pytest.importorskip("safetensors.numpy")

TOL = 1e-5


def written_down_layout(W, depth, mlp, p, N, Wt, depth_t, mlp_t, V, L, E, text_head=True):
    """`{name: shape}` as open_clip's CustomTextCLIP with a timm SigLIP trunk holds them."""
    sd = {
        "visual.trunk.patch_embed.proj.weight": (W, 3, p, p),
        "visual.trunk.patch_embed.proj.bias": (W,),
        "visual.trunk.pos_embed": (1, N, W),
    }
    for i in range(depth):
        b = f"visual.trunk.blocks.{i}."
        sd.update({
            b + "norm1.weight": (W,), b + "norm1.bias": (W,),
            b + "attn.qkv.weight": (3 * W, W), b + "attn.qkv.bias": (3 * W,),
            b + "attn.proj.weight": (W, W), b + "attn.proj.bias": (W,),
            b + "norm2.weight": (W,), b + "norm2.bias": (W,),
            b + "mlp.fc1.weight": (mlp, W), b + "mlp.fc1.bias": (mlp,),
            b + "mlp.fc2.weight": (W, mlp), b + "mlp.fc2.bias": (W,),
        })
    a = "visual.trunk.attn_pool."
    sd.update({
        "visual.trunk.norm.weight": (W,), "visual.trunk.norm.bias": (W,),
        a + "latent": (1, 1, W),
        a + "q.weight": (W, W), a + "q.bias": (W,),
        a + "kv.weight": (2 * W, W), a + "kv.bias": (2 * W,),
        a + "proj.weight": (W, W), a + "proj.bias": (W,),
        a + "norm.weight": (W,), a + "norm.bias": (W,),
        a + "mlp.fc1.weight": (mlp, W), a + "mlp.fc1.bias": (mlp,),
        a + "mlp.fc2.weight": (W, mlp), a + "mlp.fc2.bias": (W,),
        "text.token_embedding.weight": (V, Wt),
        "text.positional_embedding": (L, Wt),
    })
    for i in range(depth_t):
        b = f"text.transformer.resblocks.{i}."
        sd.update({
            b + "ln_1.weight": (Wt,), b + "ln_1.bias": (Wt,),
            b + "attn.in_proj_weight": (3 * Wt, Wt), b + "attn.in_proj_bias": (3 * Wt,),
            b + "attn.out_proj.weight": (Wt, Wt), b + "attn.out_proj.bias": (Wt,),
            b + "ln_2.weight": (Wt,), b + "ln_2.bias": (Wt,),
            b + "mlp.c_fc.weight": (mlp_t, Wt), b + "mlp.c_fc.bias": (mlp_t,),
            b + "mlp.c_proj.weight": (Wt, mlp_t), b + "mlp.c_proj.bias": (Wt,),
        })
    sd.update({"text.ln_final.weight": (Wt,), "text.ln_final.bias": (Wt,)})
    if text_head:
        sd.update({"text.text_projection.weight": (E, Wt), "text.text_projection.bias": (E,)})
    sd.update({"logit_scale": (), "logit_bias": ()})
    return sd


# Two released configs (and a SigLIP 2 one), from their open_clip JSON and timm model names:
# vit_base_patch16_siglip_224: 768 wide, 12 blocks, MLP 3072, 12 heads; text 768 / 12 / 3072,
# vocab 32000, context 64. vit_so400m_patch14_siglip_384: 1152 / 27 / 4304, 27 x 27 tokens.
RELEASED = {
    "ViT-B-16-SigLIP": dict(W=768, depth=12, mlp=3072, p=16, N=196, Wt=768, depth_t=12,
                            mlp_t=3072, V=32000, L=64, E=768),
    "ViT-SO400M-14-SigLIP-384": dict(W=1152, depth=27, mlp=4304, p=14, N=729, Wt=1152,
                                     depth_t=27, mlp_t=4304, V=32000, L=64, E=1152),
    "ViT-B-16-SigLIP2-256": dict(W=768, depth=12, mlp=3072, p=16, N=256, Wt=768, depth_t=12,
                                 mlp_t=3072, V=256000, L=64, E=768),
}
TINY = dict(W=16, depth=2, mlp=24, p=4, N=9, Wt=8, depth_t=2, mlp_t=12, V=30, L=5, E=16)
TINY_CONFIG = {
    "vision": dict(image_size=12, patch_size=4, width=16, depth=2, mlp_dim=24, num_heads=2),
    "text": dict(vocabulary_size=30, sequence_length=5, width=8, depth=2, mlp_dim=12,
                 num_heads=2, embed_dim=16),
}


def random_state(shapes, seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "ln_1.weight",
                          "ln_2.weight", "ln_final.weight")):
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("bias") and name != "logit_bias":
            value = 0.1 * rng.standard_normal(shape)
        elif name == "logit_scale":
            value = np.asarray(math.log(10.0))
        elif name == "logit_bias":
            value = np.asarray(-2.0)
        elif len(shape) == 2 and not name.endswith(("embedding.weight", "positional_embedding")):
            value = rng.standard_normal(shape) / math.sqrt(shape[1])
        elif name.endswith("proj.weight") and len(shape) == 4:
            value = rng.standard_normal(shape) / math.sqrt(np.prod(shape[1:]))
        else:
            value = rng.standard_normal(shape)
        state[name] = np.asarray(value, np.float32)
    return state


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    state = random_state(written_down_layout(**TINY))
    path = tmp_path_factory.mktemp("open_clip") / "open_clip_model.safetensors"
    safetensors_numpy.save_file(state, str(path))
    return state, path


@pytest.fixture(scope="module")
def tiny_model(tiny_file):
    return load_open_clip(tiny_file[1], config=TINY_CONFIG)


# --------------------------------------------------------------------------------------
# Layout and config inference (no model is built).


@pytest.mark.backend_independent
@pytest.mark.parametrize("name", list(RELEASED))
def test_layout_matches_the_written_down_open_clip_layout(name):
    expected = written_down_layout(**RELEASED[name])
    found = state_dict_shapes(name)
    assert sorted(found) == sorted(expected)
    assert {k: tuple(v) for k, v in found.items()} == expected
    assert infer_config(expected) == name


@pytest.mark.backend_independent
def test_config_inference_settles_on_exact_shapes_only():
    so400m = written_down_layout(**RELEASED["ViT-SO400M-14-SigLIP-384"])
    # -384 and -378 hold the same tensors: inference lists both, -384 (Google's size) first.
    assert matching_configs(so400m) == ["ViT-SO400M-14-SigLIP-384", "ViT-SO400M-14-SigLIP-378"]
    assert infer_config(so400m) == "ViT-SO400M-14-SigLIP-384"
    assert infer_config({**so400m, "text.token_embedding.weight": (256000, 1152)}) == \
        "ViT-SO400M-14-SigLIP2-378"
    assert infer_config(written_down_layout(**TINY)) is None


@pytest.mark.backend_independent
def test_tiny_file_without_config_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(random_state(written_down_layout(**TINY)), str(path))
    with pytest.raises(ValueError, match=r"Cannot infer the open_clip config .* Pass config="):
        load_open_clip(path)


@pytest.mark.backend_independent
@pytest.mark.parametrize("name,start", [("open_clip_pytorch_model.bin", b"PK\x03\x04"),
                                        ("model.pt", b"\x80\x02"),
                                        ("renamed.safetensors", b"PK\x03\x04")])
def test_pickles_are_refused_with_a_safe_conversion(tmp_path, name, start):
    path = tmp_path / name
    path.write_bytes(start + b"\x00" * 64)
    with pytest.raises(ValueError) as error:
        load_open_clip(path)
    message = str(error.value)
    assert "pickle" in message and "weights_only=True" in message
    assert "safetensors.torch" in message and "save_file" in message


# --------------------------------------------------------------------------------------
# Round trips.


def test_save_of_load_is_the_same_state_dict_bit_for_bit(tiny_file, tiny_model, tmp_path):
    state, _ = tiny_file
    out = save_open_clip(tiny_model, tmp_path / "again.safetensors")
    from safetensors.numpy import load_file

    again = load_file(str(out))
    assert sorted(again) == sorted(state)
    for name, value in state.items():
        assert again[name].dtype == np.float32 and again[name].shape == value.shape, name
        assert again[name].tobytes() == value.tobytes(), name


def test_load_of_save_is_the_same_model_bit_for_bit(tiny_model, tmp_path):
    out = save_open_clip(tiny_model, tmp_path / "m.safetensors")
    back = load_open_clip(out)  # the architecture save_open_clip records; no config needed
    a, b = model_to_tree(tiny_model), model_to_tree(back)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    assert registry.detect_format(out) == "open_clip"
    c = model_to_tree(SigLIP.from_preset(str(out)))
    assert all(np.array_equal(a[k], c[k]) for k in a)
    with pytest.raises(FileExistsError, match="overwrite"):
        save_open_clip(tiny_model, out)
    save_open_clip(tiny_model, out, overwrite=True)


def test_mismatch_is_reported_in_open_clip_names(tiny_file):
    _, path = tiny_file
    config = {**TINY_CONFIG, "vision": {**TINY_CONFIG["vision"], "mlp_dim": 20, "depth": 3}}
    with pytest.raises(ValueError) as error:
        load_open_clip(path, config=config)
    message = str(error.value)
    assert "does not fit the architecture of the config given" in message
    assert "visual.trunk.blocks.2.attn.qkv.weight (48, 16)" in message
    assert "visual.trunk.blocks.0.mlp.fc1.weight: checkpoint (24, 16), the config implies " \
           "(20, 16)" in message
    assert "[big_vision img/Transformer/encoderblock_2/MultiHeadDotProductAttention_0/query/" \
           "kernel, " in message


@pytest.mark.backend_independent
def test_other_safetensors_files_are_not_open_clip(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file({"vision_model.post_layernorm.weight": np.ones(3, np.float32)},
                                str(path))
    with pytest.raises(ValueError, match="Cannot tell the format"):
        registry.detect_format(path)
    assert registry.output_format(tmp_path / "new.safetensors") == "open_clip"


# --------------------------------------------------------------------------------------
# The fused q/k/v split, against a forward pass written on the open_clip tensors.


def _ln(x, w, b):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * w + b


def _gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _attention(q, k, v, heads):
    b, n, w = q.shape
    hd = w // heads
    q, k, v = (t.reshape(b, -1, heads, hd).transpose(0, 2, 1, 3) for t in (q, k, v))
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return (s @ v).transpose(0, 2, 1, 3).reshape(b, n, w)


def _block(x, sd, b, heads, names):
    ln1, ln2, qkv_w, qkv_b, proj, fc1, fc2 = names
    w = x.shape[-1]
    h = _ln(x, sd[b + ln1 + ".weight"], sd[b + ln1 + ".bias"])
    qkv = h @ sd[b + qkv_w].T + sd[b + qkv_b]  # one fused matmul, then rows [q; k; v]
    x = x + _attention(qkv[..., :w], qkv[..., w:2 * w], qkv[..., 2 * w:], heads) \
        @ sd[b + proj + ".weight"].T + sd[b + proj + ".bias"]
    h = _ln(x, sd[b + ln2 + ".weight"], sd[b + ln2 + ".bias"])
    h = _gelu(h @ sd[b + fc1 + ".weight"].T + sd[b + fc1 + ".bias"])
    return x + h @ sd[b + fc2 + ".weight"].T + sd[b + fc2 + ".bias"]


def numpy_open_clip(sd, images, tokens, heads, text_heads):
    """Image and text embeddings of an open_clip SigLIP state dict, as timm / open_clip compute."""
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    weight = sd["visual.trunk.patch_embed.proj.weight"]
    w, _, p, _ = weight.shape
    b, hgt, wid, _ = images.shape
    gh, gw = hgt // p, wid // p
    patches = images[:, :gh * p, :gw * p].reshape(b, gh, p, gw, p, 3).transpose(0, 1, 3, 5, 2, 4)
    x = patches.reshape(b, gh * gw, -1) @ weight.reshape(w, -1).T
    x = x + sd["visual.trunk.patch_embed.proj.bias"] + sd["visual.trunk.pos_embed"]
    vision = ("norm1", "norm2", "attn.qkv.weight", "attn.qkv.bias", "attn.proj", "mlp.fc1",
              "mlp.fc2")
    i = 0
    while f"visual.trunk.blocks.{i}.norm1.weight" in sd:
        x = _block(x, sd, f"visual.trunk.blocks.{i}.", heads, vision)
        i += 1
    x = _ln(x, sd["visual.trunk.norm.weight"], sd["visual.trunk.norm.bias"])
    a = "visual.trunk.attn_pool."
    q = np.broadcast_to(sd[a + "latent"], (b, 1, w)) @ sd[a + "q.weight"].T + sd[a + "q.bias"]
    kv = x @ sd[a + "kv.weight"].T + sd[a + "kv.bias"]
    y = _attention(q, kv[..., :w], kv[..., w:], heads) @ sd[a + "proj.weight"].T \
        + sd[a + "proj.bias"]
    h = _gelu(_ln(y, sd[a + "norm.weight"], sd[a + "norm.bias"]) @ sd[a + "mlp.fc1.weight"].T
              + sd[a + "mlp.fc1.bias"])
    image = (y + h @ sd[a + "mlp.fc2.weight"].T + sd[a + "mlp.fc2.bias"])[:, 0]

    t = sd["text.token_embedding.weight"][tokens] + sd["text.positional_embedding"]
    text = ("ln_1", "ln_2", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj",
            "mlp.c_fc", "mlp.c_proj")
    i = 0
    while f"text.transformer.resblocks.{i}.ln_1.weight" in sd:
        t = _block(t, sd, f"text.transformer.resblocks.{i}.", text_heads, text)
        i += 1
    t = _ln(t, sd["text.ln_final.weight"], sd["text.ln_final.bias"])[:, -1]
    t = t @ sd["text.text_projection.weight"].T + sd["text.text_projection.bias"]
    return image, t


def test_fused_qkv_split_matches_a_forward_pass_on_the_open_clip_tensors(tiny_file, tiny_model):
    state, _ = tiny_file
    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (2, 12, 12, 3)).astype("float32")
    tokens = rng.integers(0, 30, (3, 5)).astype("int32")
    image, text = numpy_open_clip(state, images.astype(np.float64), tokens, 2, 2)
    ours_image = keras.ops.convert_to_numpy(tiny_model.encode_images(images))
    ours_text = keras.ops.convert_to_numpy(tiny_model.encode_texts(tokens))
    np.testing.assert_allclose(ours_image, image, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(ours_text, text, rtol=TOL, atol=TOL)
    # A wrong split (k and v swapped in the fused tensor) is visible at this tolerance.
    swapped = dict(state)
    qkv = state["visual.trunk.blocks.0.attn.qkv.weight"]
    swapped["visual.trunk.blocks.0.attn.qkv.weight"] = np.concatenate(
        [qkv[:16], qkv[32:], qkv[16:32]])
    wrong, _ = numpy_open_clip(swapped, images.astype(np.float64), tokens, 2, 2)
    assert np.abs(wrong - ours_image).max() > 100 * TOL


def test_saved_file_records_its_architecture(tiny_model, tmp_path):
    from safetensors import safe_open

    out = save_open_clip(tiny_model, tmp_path / "meta.safetensors")
    with safe_open(str(out), framework="np") as f:
        metadata = f.metadata()
    arch = json.loads(metadata["keras_siglip_architecture"])
    assert arch["vision"]["num_heads"] == 2 and arch["text"]["embed_dim"] == 16
    assert "open_clip_config" not in metadata  # tiny: no released config has these shapes
    # A config given as an architecture dict is checked against the tensors and recorded in
    # the architecture entry (open_clip_config holds names only).
    again = save_open_clip(tiny_model, tmp_path / "dict.safetensors", config=arch)
    with safe_open(str(again), framework="np") as f:
        assert json.loads(f.metadata()["keras_siglip_architecture"]) == arch
        assert "open_clip_config" not in f.metadata()
    with pytest.raises(ValueError, match="one .safetensors file"):
        save_open_clip(tiny_model, tmp_path / "model.bin")
    with pytest.raises(TypeError, match="save_open_clip writes a two-tower SigLIP"):
        save_open_clip(tiny_model.vision_encoder, tmp_path / "tower.safetensors")


# --------------------------------------------------------------------------------------
# Pickles: the conversion the message gives works; hub folders; config choice.


@pytest.mark.backend_independent
def test_the_suggested_pickle_conversion_gives_a_loadable_file(tiny_file, tmp_path):
    torch = pytest.importorskip("torch")
    state, _ = tiny_file
    pickle = tmp_path / "open_clip_pytorch_model.bin"
    # An open_clip training checkpoint: the state dict under "state_dict", DDP's "module.".
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": torch.from_numpy(v.copy())
                                           for k, v in state.items()}}, pickle)
    with pytest.raises(ValueError) as error:
        load_open_clip(pickle)
    code = re.search(r'python -c "(.*?)" \(weights_only', str(error.value)).group(1)
    exec(code, {})  # what the message tells the user to run
    model = load_open_clip(tmp_path / "open_clip_pytorch_model.safetensors", config=TINY_CONFIG)
    theirs = model_to_tree(load_open_clip(tiny_file[1], config=TINY_CONFIG))
    assert all(np.array_equal(v, theirs[k]) for k, v in model_to_tree(model).items())


def _hub_folder(root, state, model_cfg):
    root.mkdir()
    safetensors_numpy.save_file(state, str(root / "open_clip_model.safetensors"))
    (root / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    return root


def _siglip_cfg(image_size):
    return {"embed_dim": 16, "custom_text": True,
            "vision_cfg": {"image_size": image_size, "timm_pool": "map", "timm_proj": "none"},
            "text_cfg": {"no_causal_mask": True, "pool_type": "last"}}


@pytest.mark.backend_independent
def test_hub_config_settles_what_the_shapes_cannot(tiny_file, tmp_path, caplog):
    # SO400M/14 at 384 and at 378 have the same tensors (27 x 27 patches of 14). Only the
    # choice is checked here (no 800M-parameter model is built): np.zeros costs no memory.
    state = {k: np.zeros(s, np.float32) for k, s in state_dict_shapes(
        "ViT-SO400M-14-SigLIP-384").items()}
    with caplog.at_level(logging.INFO, logger="keras_siglip.convert"):
        assert open_clip_io._choose_config(state, None, "x") == "ViT-SO400M-14-SigLIP-384"
    assert "ViT-SO400M-14-SigLIP-378 (image size 378)" in caplog.text
    assert "--open-clip-config" in caplog.text
    assert open_clip_io._choose_config(state, _siglip_cfg(378), "x") == \
        "ViT-SO400M-14-SigLIP-378"
    assert open_clip_io._choose_config(state, _siglip_cfg([384, 384]), "x") == \
        "ViT-SO400M-14-SigLIP-384"
    # A size no released config has, with the same 27 x 27 patches (380): the hub's size.
    assert open_clip_io._choose_config(state, _siglip_cfg(380), "x")["vision"]["image_size"] \
        == 380
    # A hub folder of the tiny model loads from the folder, its config read.
    folder = _hub_folder(tmp_path / "hub", tiny_file[0], _siglip_cfg(12))
    assert registry.detect_format(folder) == "open_clip"
    model = load_open_clip(folder, config=TINY_CONFIG)
    a, b = model_to_tree(model), model_to_tree(load_open_clip(tiny_file[1], config=TINY_CONFIG))
    assert all(np.array_equal(v, b[k]) for k, v in a.items())


@pytest.mark.backend_independent
def test_hub_folder_of_another_model_or_only_a_pickle_is_refused(tiny_file, tmp_path):
    state, _ = tiny_file
    cfg = _siglip_cfg(12)
    cfg["text_cfg"] = {"pool_type": "argmax"}  # CLIP's text pooling and causal mask
    folder = _hub_folder(tmp_path / "clip", state, cfg)
    with pytest.raises(ValueError, match=r"not a SigLIP: text_cfg.no_causal_mask=None .*"
                                         r"pool_type='argmax'"):
        load_open_clip(folder, config=TINY_CONFIG)
    only_pickle = tmp_path / "old"
    only_pickle.mkdir()
    (only_pickle / "open_clip_pytorch_model.bin").write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="pickle checkpoint"):
        load_open_clip(only_pickle)


def test_save_checks_a_given_config_name(tiny_model, tmp_path):
    with pytest.raises(ValueError) as error:
        save_open_clip(tiny_model, tmp_path / "x.safetensors", config="ViT-B-16-SigLIP")
    message = str(error.value)
    assert "does not fit the open_clip config 'ViT-B-16-SigLIP'" in message
    assert "visual.trunk.pos_embed: checkpoint (1, 9, 16), ViT-B-16-SigLIP has (1, 196, 768)" \
        in message
    assert not (tmp_path / "x.safetensors").exists()


# --------------------------------------------------------------------------------------
# Against open_clip's own models.


OPEN_CLIP, TIMM, HOW = import_open_clip()
needs_open_clip = pytest.mark.skipif(OPEN_CLIP is None, reason=HOW)


def _open_clip_siglip_configs():
    """open_clip's registered SigLIP configs: a timm MAP trunk and a non-causal text tower."""
    found = {}
    for name in OPEN_CLIP.list_models():
        cfg = OPEN_CLIP.get_model_config(name)
        v, t = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
        if v.get("timm_pool") == "map" and t.get("no_causal_mask") and "hf_model_name" not in t:
            found[name] = cfg
    return found


@needs_open_clip
@pytest.mark.backend_independent
def test_every_open_clip_siglip_config_has_our_layout_and_heads():
    import torch

    configs = _open_clip_siglip_configs()
    assert sorted(configs) == sorted(OPEN_CLIP_CONFIGS)
    for name, cfg in configs.items():
        cfg = {k: v for k, v in cfg.items() if k != "custom_text"}
        with torch.device("meta"):  # shapes only: no memory, no time
            model = OPEN_CLIP.model.CustomTextCLIP(**cfg)
        theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert theirs == {k: tuple(v) for k, v in state_dict_shapes(name).items()}, name
        # What the shapes cannot tell: the heads and the image size.
        arch = config_architecture(name)
        assert model.visual.trunk.blocks[0].attn.num_heads == arch["vision"]["num_heads"], name
        assert cfg["text_cfg"]["heads"] == arch["text"]["num_heads"], name
        assert cfg["vision_cfg"]["image_size"] == arch["vision"]["image_size"], name


TINY_OPEN_CLIP = {
    # SigLIP 2 style: a text tower narrower than its projection (Linear with bias).
    "head": (dict(width=8, heads=2, layers=2, mlp_ratio=1.5, proj_bias=True), TINY_CONFIG),
    # So400m/16-i18n style: no text projection.
    "no_head": (dict(width=16, heads=4, layers=1, mlp_ratio=2.0, proj_type="none"), {
        "vision": TINY_CONFIG["vision"],
        "text": dict(vocabulary_size=30, sequence_length=5, width=16, depth=1, mlp_dim=32,
                     num_heads=4, embed_dim=None, use_head=False)}),
}


def _tiny_open_clip(text, monkeypatch):
    """A random tiny open_clip `CustomTextCLIP` with a timm SigLIP trunk, both towers computing
    GELU with the tanh approximation (big_vision's; see docs/checkpoints.md for the configs
    where open_clip computes the exact GELU)."""
    import torch

    create = TIMM.create_model

    def tiny_trunk(name, **kwargs):  # open_clip asks timm for a named trunk: make it tiny
        return create(name, **kwargs, embed_dim=16, depth=2, num_heads=2, mlp_ratio=1.5,
                      img_size=12, patch_size=4, act_layer="gelu_tanh")

    monkeypatch.setattr(TIMM, "create_model", tiny_trunk)
    model = OPEN_CLIP.model.CustomTextCLIP(
        embed_dim=16, init_logit_bias=-10,
        vision_cfg=dict(image_size=12, timm_model_name="vit_base_patch16_siglip_224",
                        timm_model_pretrained=False, timm_pool="map", timm_proj="none"),
        text_cfg=dict(context_length=5, vocab_size=30, no_causal_mask=True, pool_type="last",
                      norm_kwargs={"eps": 1e-6}, act_kwargs={"approximate": "tanh"}, **text),
    )
    monkeypatch.undo()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict({k: torch.from_numpy(v) for k, v in random_state(shapes, 5).items()})
    return model.eval()


def _their_outputs(model, images, tokens):
    import torch

    with torch.no_grad():
        image = model.encode_image(torch.from_numpy(images.transpose(0, 3, 1, 2)))
        text = model.encode_text(torch.from_numpy(tokens.astype(np.int64)))
        norm = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
        logits = model.logit_scale.exp() * norm(image) @ norm(text).T + model.logit_bias
    return {"image": image.numpy(), "text": text.numpy(), "logits": logits.numpy()}


def _our_outputs(model, images, tokens):
    return {
        "image": keras.ops.convert_to_numpy(model.encode_images(images)),
        "text": keras.ops.convert_to_numpy(model.encode_texts(tokens)),
        "logits": keras.ops.convert_to_numpy(model({"images": images, "token_ids": tokens})
                                              ["logits"]),
    }


@needs_open_clip
@pytest.mark.parametrize("kind", list(TINY_OPEN_CLIP))
def test_open_clip_model_and_ours_agree_both_ways(kind, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    text, config = TINY_OPEN_CLIP[kind]
    theirs = _tiny_open_clip(text, monkeypatch)
    path = tmp_path / "open_clip_model.safetensors"
    save_file(theirs.state_dict(), str(path))
    rng = np.random.default_rng(4)
    images = rng.uniform(-1, 1, (3, 12, 12, 3)).astype("float32")
    tokens = rng.integers(0, 30, (2, 5)).astype("int32")
    expected = _their_outputs(theirs, images, tokens)
    assert abs(expected["logits"]).max() > 0.1  # not a degenerate model

    ours = load_open_clip(path, config=config)
    found = _our_outputs(ours, images, tokens)
    for key in expected:
        np.testing.assert_allclose(found[key], expected[key], rtol=TOL, atol=TOL, err_msg=key)

    # And back: open_clip loads what we write (strict), bit-exact, with the same outputs.
    out = save_open_clip(ours, tmp_path / "ours.safetensors")
    from safetensors.torch import load_file

    again = _tiny_open_clip(text, monkeypatch)
    again.load_state_dict(load_file(str(out)), strict=True)
    for name, value in theirs.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name
    back = _their_outputs(again, images, tokens)
    for key in expected:
        np.testing.assert_allclose(back[key], found[key], rtol=TOL, atol=TOL, err_msg=key)
