"""`python -m keras_siglip convert` and `SigLIP.from_preset(path)` with KerasHub presets and
open_clip files (docs/checkpoints.md): formats recognised as SRC and as DST, `--to` where the
path cannot tell, the options that apply to one format refused elsewhere, nothing written on
failure, and weights carried bit-exact through every route.
"""

import json

import numpy as np
import pytest

from keras_siglip import SigLIP, cli, registry
from keras_siglip.builders import build_model
from keras_siglip.convert import model_to_tree, save_keras_hub, save_open_clip
from keras_siglip.testing import randomize_weights

pytest.importorskip("h5py")
pytest.importorskip("safetensors")


@pytest.fixture(scope="module")
def model():
    model = build_model(
        False, dict(image_size=12, patch_size=4, width=16, depth=2, mlp_dim=24, num_heads=2),
        dict(vocabulary_size=30, sequence_length=5, width=8, depth=2, mlp_dim=12, num_heads=2,
             embed_dim=16),
    )
    randomize_weights(model, seed=3)
    return model


def _same(a, b):
    a, b = model_to_tree(a), model_to_tree(b)
    assert sorted(a) == sorted(b)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _convert(*argv):
    return cli.main(["convert", *map(str, argv)])


def test_every_route_through_keras_hub_and_open_clip_is_bit_exact(model, tmp_path, capsys):
    hub = save_keras_hub(model, tmp_path / "hub")
    # KerasHub SRC -> open_clip DST (by its suffix) -> new KerasHub folder (--to) -> .keras.
    assert _convert(hub, tmp_path / "m.safetensors") == 0
    assert registry.detect_format(tmp_path / "m.safetensors") == "open_clip"
    assert _convert(tmp_path / "m.safetensors", tmp_path / "hub2", "--to", "keras_hub") == 0
    assert registry.detect_format(tmp_path / "hub2") == "keras_hub"
    assert _convert(tmp_path / "hub2", tmp_path / "m.keras") == 0
    assert _convert(tmp_path / "m.keras", tmp_path / "m.npz") == 0
    for path in ("hub", "m.safetensors", "hub2", "m.keras", "m.npz"):
        _same(SigLIP.from_preset(str(tmp_path / path)), model)
    err = capsys.readouterr().err
    assert "an open_clip state dict holds no tokenizer" in err
    assert "no tokenizer in the preset" in err and "--tokenizer" in err


def test_a_new_folder_is_transformers_unless_told(model, tmp_path, capsys):
    src = save_open_clip(model, tmp_path / "m.safetensors")
    assert registry.output_format(tmp_path / "new") == "transformers"
    hub = tmp_path / "hub"
    assert _convert(src, hub, "--to", "keras_hub") == 0
    # An existing KerasHub preset names its format by itself: --overwrite replaces it as one.
    assert registry.output_format(hub) == "keras_hub"
    assert _convert(src, hub) == 1
    assert "already exists" in capsys.readouterr().err
    assert _convert(src, hub, "--overwrite") == 0
    assert json.loads((hub / "config.json").read_text())["class_name"] == "SigLIPBackbone"
    # A preset folder with a file KerasHub does not write is never replaced.
    (hub / "notes.txt").write_text("mine")
    assert _convert(src, hub, "--overwrite") == 1
    assert "notes.txt" in capsys.readouterr().err
    assert (hub / "notes.txt").read_text() == "mine"


def test_tokenizer_goes_into_a_keras_hub_dst(model, tmp_path, capsys):
    spm = pytest.importorskip("sentencepiece")
    import io

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a photo of a cat and a dog"] * 10), model_writer=out,
        vocab_size=9, model_type="WORD", pad_id=0, bos_id=-1, eos_id=1, unk_id=2,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2)
    (tmp_path / "spiece.model").write_bytes(out.getvalue())
    src = save_open_clip(model, tmp_path / "m.safetensors")
    hub = tmp_path / "hub"
    assert _convert(src, hub, "--to", "keras_hub", "--tokenizer", tmp_path / "spiece.model") == 0
    assert (hub / "assets/tokenizer/vocabulary.spm").read_bytes() == out.getvalue()
    config = json.loads((hub / "tokenizer.json").read_text())
    assert config["class_name"] == "SigLIPTokenizer" and config["config"]["add_eos"] is True
    # KerasHub -> KerasHub carries the source's tokenizer by itself.
    assert _convert(hub, tmp_path / "copy", "--to", "keras_hub") == 0
    assert (tmp_path / "copy/tokenizer.json").read_text() == (hub / "tokenizer.json").read_text()
    # --tokenizer only where it goes.
    assert _convert(src, tmp_path / "x.keras", "--tokenizer", tmp_path / "spiece.model") == 1
    assert "--tokenizer applies to a KerasHub DST" in capsys.readouterr().err


def test_open_clip_config_is_given_or_checked(model, tmp_path, capsys):
    src = save_open_clip(model, tmp_path / "m.safetensors")
    hub = save_keras_hub(model, tmp_path / "hub")
    # For an open_clip DST, the name to record: the tensors must fit it.
    dst = tmp_path / "named.safetensors"
    assert _convert(hub, dst, "--open-clip-config", "ViT-B-16-SigLIP") == 1
    err = capsys.readouterr().err
    assert "does not fit the open_clip config 'ViT-B-16-SigLIP'" in err
    assert "visual.trunk.pos_embed: checkpoint (1, 9, 16), ViT-B-16-SigLIP has (1, 196, 768)" \
        in err
    assert not dst.exists() and not list(tmp_path.glob(".named*"))
    # For an open_clip SRC, the architecture to read it as (checked before building it).
    assert _convert(src, tmp_path / "m.keras", "--open-clip-config", "ViT-B-16-SigLIP") == 1
    err = capsys.readouterr().err
    assert "does not fit the architecture of 'ViT-B-16-SigLIP'" in err
    assert "visual.trunk.pos_embed: checkpoint (1, 9, 16), the config implies (1, 196, 768)" \
        in err
    assert _convert(src, dst, "--open-clip-config", "ViT-Nope") == 1
    assert "Unknown open_clip config 'ViT-Nope'" in capsys.readouterr().err
    assert _convert(hub, tmp_path / "m.keras", "--open-clip-config", "ViT-B-16-SigLIP") == 1
    assert "--open-clip-config applies when SRC or DST is an open_clip" in \
        capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()


def test_sources_that_cannot_be_read_safely_or_at_all(model, tmp_path, capsys):
    pickle = tmp_path / "open_clip_pytorch_model.bin"
    pickle.write_bytes(b"PK\x03\x04" + b"\x00" * 32)
    assert _convert(pickle, tmp_path / "m.keras", "--from", "open_clip") == 1
    err = capsys.readouterr().err
    assert "pickle" in err and "weights_only=True" in err
    assert not (tmp_path / "m.keras").exists()
    assert _convert(pickle, tmp_path / "m.keras") == 1  # open_clip's own pickle name
    assert "weights_only=True" in capsys.readouterr().err
    other = tmp_path / "weights.pt"
    other.write_bytes(b"\x80\x02")
    assert _convert(other, tmp_path / "m.keras") == 1
    assert "Cannot tell the format" in capsys.readouterr().err
    assert _convert(other, tmp_path / "m.keras", "--from", "open_clip") == 1
    assert "weights_only=True" in capsys.readouterr().err
    # A DST whose path names no format says which names do, and how to say it.
    src = save_open_clip(model, tmp_path / "m.safetensors")
    assert _convert(src, tmp_path / "out.h5") == 1
    err = capsys.readouterr().err
    assert "'.h5'" in err and ".safetensors file (open_clip)" in err and "--to" in err
    assert _convert(src, tmp_path / "out.h5", "--to", "open_clip") == 1
    assert "name it out.safetensors" in capsys.readouterr().err
