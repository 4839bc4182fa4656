"""Faults around files: nothing lost, nothing half-written, nothing trusted that was edited.

Each test is one fault class: what a demanding user can do to the
converters, the checkpoint readers and the conformance kit, and the clear error (type and
message naming the problem and the fix) that must come back. Pure file handling is marked
`backend_independent`; what builds a model runs on every backend.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_siglip import cli, conformance
from keras_siglip.conformance import KitDataError
from keras_siglip.convert import load_transformers, save_big_vision, save_transformers
from keras_siglip.convert.io import (
    atomic_output,
    check_destination,
    clean_stale_temporaries,
    load_keras_file,
    path_format,
    read_npz,
)
from keras_siglip.testing import build_tiny

SAFE_WRITE = Path(__file__).resolve().parents[1] / "keras_siglip" / "convert" / "safe_write.py"
independent = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def tiny():
    return build_tiny("no_text_head")  # square grid: transformers can hold it too


@pytest.fixture(scope="module")
def kit():
    return conformance.build_kit("fixture_like", seed=0)


def _leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if ".keras-siglip-" in p.name)


# ---------------------------------------------------------------------------------------------
# The overwrite rule.


@independent
@pytest.mark.parametrize("overwrite", [False, True])
def test_folder_with_user_files_is_never_replaced(tmp_path, overwrite):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "config.json").write_text("{}")
    (dst / "my_notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="my_notes.txt") as info:
        check_destination(dst, overwrite, folder=True)
    assert "never replaced" in str(info.value) and "new folder" in str(info.value)
    assert "pass overwrite" not in str(info.value)  # no invitation to delete user files
    assert (dst / "my_notes.txt").read_text() == "keep"


@independent
@pytest.mark.parametrize("extra", ["README.md", ".gitattributes", "tokenizer.json",
                                   "generation_config.json", "model-00001-of-00002.safetensors"])
def test_files_other_tools_write_are_never_replaced(tmp_path, extra):
    """A folder `save_pretrained` or the hub wrote holds files save_transformers never writes:
    `--overwrite` must not delete them with the folder."""
    dst = tmp_path / "hf"
    dst.mkdir()
    for name in ("config.json", "model.safetensors", extra):
        (dst / name).write_text("x")
    with pytest.raises(FileExistsError, match=re.escape(extra) + ".*never replaced"):
        check_destination(dst, True, folder=True)
    assert (dst / extra).read_text() == "x"


@independent
def test_keras_hub_folder_with_task_files_is_never_replaced(tmp_path):
    from keras_siglip.convert.keras_hub import KERAS_HUB_FILES

    dst = tmp_path / "hub"
    (dst / "assets/tokenizer").mkdir(parents=True)
    for name in ("config.json", "model.weights.h5", "metadata.json", "tokenizer.json",
                 "assets/tokenizer/vocabulary.spm"):
        (dst / name).write_text("x")
    check_destination(dst, True, folder=True, owned=KERAS_HUB_FILES)  # only what it writes
    (dst / "task.json").write_text("x")
    with pytest.raises(FileExistsError, match="task.json.*never replaced"):
        check_destination(dst, True, folder=True, owned=KERAS_HUB_FILES)


@independent
def test_destination_that_is_or_contains_the_source(tmp_path):
    (tmp_path / "p").mkdir()
    src = tmp_path / "p" / "model.npz"
    src.write_bytes(b"PK")
    for dst, word in ((tmp_path / "p", "contains"), (src, "is")):
        with pytest.raises(ValueError, match=f"{word} the source .*outside it"):
            check_destination(dst, True, sources=[src])
    assert src.read_bytes() == b"PK"


@independent
@pytest.mark.parametrize("name", ["model.npz", "model.keras", "model.safetensors"])
def test_file_of_another_kind_is_never_replaced(tmp_path, name):
    dst = tmp_path / name
    dst.write_text("my own text, not a checkpoint")
    with pytest.raises(FileExistsError, match="not a (zip archive|safetensors file).*never replaced"):
        check_destination(dst, True, folder=False)
    folder = tmp_path / "f.keras"
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match="is a folder, but the output is a file"):
        check_destination(folder, True, folder=False)


@independent
def test_unknown_file_suffix_is_not_a_folder_name(tmp_path, capsys):
    assert path_format(tmp_path / "out.txt") is None
    assert path_format(tmp_path / "siglip_v1.5") == "transformers"
    (tmp_path / "x.npz").write_bytes(b"")
    assert cli.main(["convert", str(tmp_path / "x.npz"), str(tmp_path / "out.txt")]) == 1
    err = capsys.readouterr().err
    assert "'.txt'" in err and ".keras" in err and ".npz" in err and "folder" in err
    assert not (tmp_path / "out.txt").exists()


def test_convert_into_the_source_folder_keeps_everything(tiny, tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    src = save_big_vision(tiny, folder / "model.npz")
    (folder / "notes.txt").write_text("mine")
    before = src.read_bytes()
    assert cli.main(["convert", str(src), str(folder), "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "contains the source" in err and "outside it" in err
    assert src.read_bytes() == before and (folder / "notes.txt").read_text() == "mine"


def test_save_transformers_replaces_only_its_own_folder(tiny, tmp_path):
    dst = save_transformers(tiny, tmp_path / "hf")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_transformers(tiny, dst)
    assert save_transformers(tiny, dst, overwrite=True) == dst  # its own files: replaced
    (dst / "keep.bin").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="keep.bin.*never replaced"):
        save_transformers(tiny, dst, overwrite=True)
    assert (dst / "keep.bin").read_bytes() == b"mine" and (dst / "config.json").is_file()
    assert _leftovers(tmp_path) == []


def test_save_big_vision_refuses_an_existing_file(tiny, tmp_path):
    path = save_big_vision(tiny, tmp_path / "m.npz")
    stamp = path.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_big_vision(tiny, path)
    assert path.stat().st_mtime_ns == stamp
    assert save_big_vision(tiny, path, overwrite=True) == path
    with pytest.raises(ValueError, match=r"\.npz files.*m.npz"):
        save_big_vision(tiny, tmp_path / "m.bin")


def test_bad_arguments_to_the_converters(tiny, tmp_path):
    from keras_siglip import SigLIP
    from keras_siglip.convert import load_big_vision

    path = save_big_vision(tiny, tmp_path / "m.npz")
    cases = [
        (TypeError, "overwrite must be True or False; received 'no'",
         lambda: save_big_vision(tiny, path, overwrite="no")),
        (TypeError, "overwrite must be True or False; received 1",
         lambda: save_transformers(tiny, tmp_path / "hf", overwrite=1)),
        (TypeError, "save_big_vision writes a SigLIP (both towers); received SigLIPVisionEncoder",
         lambda: save_big_vision(tiny.vision_encoder, tmp_path / "v.npz")),
        (TypeError, "save_transformers writes a SigLIP or one of its towers; received str",
         lambda: save_transformers("model", tmp_path / "hf")),
        (TypeError, "load_transformers takes a checkpoint folder (str or path) or a "
                    "transformers model; received int", lambda: load_transformers(5)),
        (TypeError, "load_big_vision: image_size must be an int or a (height, width) pair",
         lambda: load_big_vision(path, image_size="20")),
        (ValueError, "load_big_vision: unknown argument(s) ['foo']. Architecture overrides go "
                     "with preset=NAME", lambda: load_big_vision(path, foo=1)),
    ]
    for error, words, call in cases:
        with pytest.raises(error) as info:
            call()
        assert words in str(info.value), (words, str(info.value))
    assert path.read_bytes() and not (tmp_path / "hf").exists() and _leftovers(tmp_path) == []
    # load_weights=False on a path: the checkpoint's architecture, with fresh random weights.
    fresh = SigLIP.from_preset(str(path), load_weights=False)
    assert {**fresh.get_config(), "name": None} == {**tiny.get_config(), "name": None}
    ours, theirs = fresh.get_weights(), tiny.get_weights()
    assert [w.shape for w in ours] == [w.shape for w in theirs]
    assert any(not np.array_equal(a, b) for a, b in zip(ours, theirs) if a.size > 4)


# ---------------------------------------------------------------------------------------------
# Interrupted writes, modes.


_CHILD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("safe_write", sys.argv[1])
safe_write = importlib.util.module_from_spec(spec)
spec.loader.exec_module(safe_write)
with safe_write.atomic_output(sys.argv[2], folder=True) as tmp:
    (tmp / "model.safetensors").write_bytes(b"0" * 100000)
    print("writing", flush=True)
    time.sleep(60)
"""


@independent
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_killed_write_leaves_nothing_after_the_next_run(tmp_path, sig):
    dst = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(SAFE_WRITE), str(dst)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    assert len(_leftovers(tmp_path)) == 1
    child.send_signal(getattr(signal, sig))
    assert child.wait(timeout=30) == -getattr(signal, sig)
    if sig == "SIGTERM":
        assert _leftovers(tmp_path) == []  # removed by the handler
    else:
        assert len(_leftovers(tmp_path)) == 1  # nobody can act on SIGKILL ...
        with atomic_output(dst, folder=True) as tmp:  # ... the next write cleans it
            (tmp / "config.json").write_text("{}")
        assert _leftovers(tmp_path) == []
    assert not dst.exists() or sig == "SIGKILL"


@independent
def test_stale_temporaries_only_of_dead_writers(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          check=True, capture_output=True, text=True)
    dead = int(done.stdout)
    me = os.getpid()
    names = {
        f".out.keras-siglip-tmp-{dead}-abc1_xyz": True,  # its writer is gone
        f".out.keras-siglip-old-{dead}-abc1_xyz": True,
        f".out.keras-siglip-tmp-{me}-abc1_xyz": False,  # a live writer (this process)
        f".other.npz.keras-siglip-tmp-{dead}-k2_x9q0z.npz": True,  # another destination's
        f".other.keras-siglip-tmp-{me}-k2_x9q0z": False,  # another destination's, writer alive
        # Look-alikes a user (or another program) made: never touched, however old.
        f".out.tmp-{dead}-abc1_xyz": False,
        f".out.old-{dead}-abc1_xyz": False,
        f".notes.txt.tmp-{dead}-abcdefgh": False,
        ".out.keras-siglip-tmp-xyz": False,  # no pid
        f".out.keras-siglip-tmp-{dead}-short": False,  # not tempfile's 8 characters
        f"out.keras-siglip-tmp-{dead}-abc1_xyz": False,  # not hidden
    }
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / f".data.csv.tmp-{dead}-abcdefgh.csv").write_text("a user's file")
    removed = {p.name for p in clean_stale_temporaries(tmp_path / "out")}
    assert removed == {n for n, stale in names.items() if stale}
    old = time.time() + 3 * 24 * 3600  # pid reuse: the destination's own, if old, go too
    assert {p.name for p in clean_stale_temporaries(tmp_path / "out", now=old)} == {
        f".out.keras-siglip-tmp-{me}-abc1_xyz"}
    assert (tmp_path / f".data.csv.tmp-{dead}-abcdefgh.csv").read_text() == "a user's file"


@independent
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with atomic_output(tmp_path / "hf", folder=True) as tmp:
            (tmp / "config.json").write_text("{}")
        with atomic_output(tmp_path / "m.npz") as tmp:
            tmp.write_bytes(b"PK")
    finally:
        os.umask(previous)
    assert (tmp_path / "hf").stat().st_mode & 0o777 == 0o777 & ~umask
    for path in (tmp_path / "hf" / "config.json", tmp_path / "m.npz"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_transformers_modes(tiny, tmp_path):
    previous = os.umask(0o022)
    try:
        dst = save_transformers(tiny, tmp_path / "hf")
    finally:
        os.umask(previous)
    assert dst.stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in dst.iterdir()} == {0o644}


# ---------------------------------------------------------------------------------------------
# Reading: shard indexes, .npz entries, .keras files.


@independent
@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/hostname", "sub/x.safetensors"])
def test_shard_index_cannot_point_outside_the_folder(tmp_path, shard):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    index = {"metadata": {}, "weight_map": {"logit_scale": shard}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="not a file name inside .*save_pretrained"):
        load_transformers(folder)


def _npy(array):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


@independent
def test_unused_entries_are_never_inflated(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("t.npy", _npy(np.ones(1, np.float32)))
        with archive.open("opt/state/huge.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (64 << 20,)})
            for _ in range(64):
                member.write(bytes(1 << 20))  # 64 MiB of zeros, ~64 KiB compressed
    assert path.stat().st_size < 1 << 20
    from keras_siglip.convert.big_vision import _is_parameter

    tracemalloc.start()
    tree = read_npz(path, keep=_is_parameter)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert list(tree) == ["t"] and peak < 4 << 20


@independent
def test_needed_entry_inflating_too_far_is_refused(tmp_path):
    from keras_siglip.convert import io

    path = tmp_path / "bomb.npz"
    size = io.MAX_SMALL_ENTRY + (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("img/embedding/kernel.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "|u1", "fortran_order": False, "shape": (size,)})
            for _ in range(size >> 20):
                member.write(bytes(1 << 20))  # 65 MiB of zeros, ~65 KiB stored
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"'img/embedding/kernel' would inflate \d+ stored bytes "
                                         r"to \d+ bytes \(\d+-fold; at most 100-fold.*crafted"):
        read_npz(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20  # refused before inflating


@independent
def test_entry_larger_than_its_header_is_refused(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("t.npy", _npy(np.ones(1, np.float32)) + bytes(32 << 20))
    with pytest.raises(ValueError, match=r"'t' would inflate to \d+ bytes.*\(1,\) float32.*"
                                         "re-export"):
        read_npz(path)


@independent
@pytest.mark.parametrize("content, what", [
    (b"this is text", "not a zip archive"),
    (_npy(np.ones(3)), "single .npy array"),
])
def test_non_zip_npz_says_what_it_is(tmp_path, content, what):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=what) as info:
        read_npz(path)
    assert "allow_pickle" not in str(info.value) and "Re-download" in str(info.value)


@independent
def test_pickled_entry_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, t=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled Python objects.*plain numeric arrays"):
        read_npz(path)


def test_truncated_keras_file(tiny, tmp_path, capsys):
    good = tmp_path / "m.keras"
    tiny.save(good)
    bad = tmp_path / "bad.keras"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable .keras file.*truncated.*model.save"):
        load_keras_file(bad)
    with pytest.raises(FileNotFoundError, match="No .keras file at"):
        load_keras_file(tmp_path / "absent.keras")
    assert cli.main(["convert", str(bad), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert "truncated" in err and "File not found" not in err
    assert not (tmp_path / "out.npz").exists()


def test_config_values_the_shapes_cannot_check_are_reported(tiny, tmp_path, caplog):
    folder = save_transformers(tiny, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["num_attention_heads"] = 4  # trained with 2: same shapes
    del config["text_config"]["num_attention_heads"]
    (folder / "config.json").write_text(json.dumps(config))
    with caplog.at_level("INFO", logger="keras_siglip.convert"):
        model = load_transformers(folder)
    assert model.vision_encoder.num_heads == 4
    (record,) = [r for r in caplog.records if r.name == "keras_siglip.convert"]
    assert record.levelname == "WARNING"  # a default was assumed for the text tower
    message = record.getMessage()
    assert "vision num_attention_heads=4 (head dim 6)" in message
    assert "text num_attention_heads=12" in message and "not in config.json" in message
    assert "not checkable against the tensor shapes" in message


def test_head_count_that_contradicts_the_variant_is_a_warning(tmp_path, caplog):
    from keras_siglip.builders import build_model

    # Towers of the size of the tiny "pico" variant (width 48, depth 2, MLP 96: 3 heads).
    size = dict(width=48, depth=2, mlp_dim=96, num_heads=3)
    model = build_model(False, dict(image_size=16, patch_size=4, **size),
                        dict(vocabulary_size=50, sequence_length=5, **size))
    folder = save_transformers(model, tmp_path / "hf")
    records = []
    for heads in (3, 4):  # as trained; then an edited config (same shapes, other numbers)
        config = json.loads((folder / "config.json").read_text())
        config["vision_config"]["num_attention_heads"] = heads
        (folder / "config.json").write_text(json.dumps(config))
        caplog.clear()
        with caplog.at_level("INFO", logger="keras_siglip.convert"):
            assert load_transformers(folder).vision_encoder.num_heads == heads
        records += [r for r in caplog.records if r.name == "keras_siglip.convert"]
    assert [r.levelname for r in records] == ["INFO", "WARNING"]
    assert "vision num_attention_heads=3 (head dim 16)" in records[0].getMessage()
    assert ("vision num_attention_heads=4 (head dim 12) [but the pico variant of this width, "
            "depth and MLP size has 3 heads]") in records[1].getMessage()


# ---------------------------------------------------------------------------------------------
# Conformance kits: trust, overwrite, folders of kits.


@independent
def test_verify_on_a_file_or_missing_path(tmp_path, capsys):
    (tmp_path / "file.npz").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    for path, words in ((tmp_path / "file.npz", "is a file"), (tmp_path / "nope", "does not exist"),
                        (tmp_path / "empty", "holds no conformance kit")):
        assert cli.main(["verify", str(path)]) == 1
        captured = capsys.readouterr()
        assert words in captured.err and ("vectors" in captured.err or "folder" in captured.err)
        assert "Traceback" not in captured.err + captured.out


@independent
def test_edited_kit_data_is_refused(kit, tmp_path, capsys):
    folder = conformance.write_kit(kit, tmp_path / "kit")
    with zipfile.ZipFile(folder / "kit.npz") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    key = "expected/logits.npy"
    members[key] = _npy(np.zeros_like(kit["expected"]["logits"]))
    with zipfile.ZipFile(folder / "kit.npz", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(KitDataError, match="sha256 mismatch.*changed after it was written"):
        conformance.load_kit(folder)
    assert not conformance.run_verify(folder).ok  # verify fails the kit, naming the cause
    assert "sha256 mismatch" in capsys.readouterr().err


@independent
@pytest.mark.parametrize("edit, words", [
    ("atol", "looser than the library's"),
    ("drop_stage", "in the data but not in the manifest"),
    ("valid_rows", "valid_rows"),
])
def test_manifest_may_only_tighten(kit, edit, words):
    edited = dict(kit, manifest=json.loads(json.dumps(kit["manifest"])))
    stages = edited["manifest"]["stages"]
    if edit == "atol":
        stages[0]["atol"] = 1e9
    elif edit == "drop_stage":
        del stages[-1]
    else:
        stages[0]["valid_rows"] = "token_ids"
    with pytest.raises(KitDataError, match=words):
        conformance.verify(edited, lambda params, inputs: {})
    tightened = dict(kit, manifest=json.loads(json.dumps(kit["manifest"])))
    tightened["manifest"]["stages"][0]["atol"] /= 10  # tighter is allowed
    assert conformance.verify(tightened, lambda params, inputs: {}).ok


@independent
def test_vectors_over_an_existing_kit(kit, tmp_path, capsys):
    folder = conformance.write_kit(kit, tmp_path / "kit")
    digest = (folder / "kit.npz").read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        conformance.write_kit(kit, folder)
    assert cli.main(["vectors", str(folder), "--tiny", "fixture_like"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["vectors", str(folder), "--tiny", "fixture_like", "--overwrite"]) == 0
    assert (folder / "kit.npz").read_bytes() == digest  # same config and seed: same bytes
    (folder / "notes.txt").write_text("mine")
    assert cli.main(["vectors", str(folder), "--tiny", "fixture_like", "--overwrite"]) == 1
    assert "notes.txt" in capsys.readouterr().err and (folder / "notes.txt").exists()
    assert _leftovers(tmp_path) == []


def test_verify_a_folder_of_kits(kit, tmp_path, capsys):
    for name in ("a", "b"):
        conformance.write_kit(kit, tmp_path / "kits" / name)
    assert cli.main(["verify", str(tmp_path / "kits"), "--against", "keras"]) == 0
    out = capsys.readouterr().out
    assert out.count("all stages within tolerance") == 2 and "2 of 2 kits pass" in out
    manifest = json.loads((tmp_path / "kits" / "b" / "manifest.json").read_text())
    manifest["files"]["kit.npz"]["sha256"] = "0" * 64
    (tmp_path / "kits" / "b" / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(["verify", str(tmp_path / "kits")]) == 1
    captured = capsys.readouterr()
    assert "1 of 2 kits pass; failing: b" in captured.out and "sha256 mismatch" in captured.err


def test_verify_a_folder_of_kits_against_transformers(kit, tmp_path, capsys):
    pytest.importorskip("transformers")
    for name in ("a", "b"):
        conformance.write_kit(kit, tmp_path / "kits" / name)
    assert cli.main(["verify", str(tmp_path / "kits"), "--against", "transformers"]) == 0
    assert "2 of 2 kits pass" in capsys.readouterr().out
    assert cli.main(["verify", str(tmp_path / "kits"), "--against", "transformers",
                     "--variant", "ln_eps"]) == 1
    out = capsys.readouterr().out
    assert out.count("FIRST FAILING STAGE: img/block00/sa") == 2 and "0 of 2 kits pass" in out
