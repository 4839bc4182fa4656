"""The `vectors` and `verify` commands of `python -m keras_siglip`."""

import os
import subprocess
import sys
from pathlib import Path

import keras

from keras_siglip.conformance.adapters.keras import (
    break_keras_model,
    keras_fn,
    keras_model,
)
from keras_siglip.conformance.adapters.transformers import transformers_fn
from keras_siglip.conformance.kit import (
    DEFAULT_KITS,
    KitDataError,
    build_kit,
    check_kit_destination,
    write_kit,
)
from keras_siglip.conformance.presets import KitWeightsError, write_preset_kit
from keras_siglip.conformance.verify import load_kit, verify


def run_vectors(out_dir, tiny=None, preset=None, seed=0, overwrite=False):
    """`python -m keras_siglip vectors`: write one kit (or the default set when nothing given).

    Every destination is checked before anything is computed: an existing kit is replaced only
    with `overwrite`, and a folder holding other files never.
    """
    if preset is not None:
        return [write_preset_kit(preset, out_dir, seed, overwrite=overwrite)]
    names = [tiny] if tiny else list(DEFAULT_KITS)
    folders = [Path(out_dir) if tiny else Path(out_dir) / name for name in names]
    for folder in folders:
        check_kit_destination(folder, overwrite)
    written = []
    for name, folder in zip(names, folders):
        write_kit(build_kit(name, seed), folder, overwrite=overwrite)
        written.append(folder)
    return written


def find_kits(path):
    """The kit folders at `path`: the folder itself if it is a kit, else its kit sub-folders.

    Raises `FileNotFoundError` / `NotADirectoryError` naming what is wrong and what to pass.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"No conformance kit at {path}: the path does not exist. Write kits with "
            f"`python -m keras_siglip vectors {path}`."
        )
    if not path.is_dir():
        raise NotADirectoryError(
            f"{path} is a file; pass a kit folder (holding manifest.json, kit.npz, "
            "kit_float32.npz) or a folder of kit folders."
        )
    if (path / "manifest.json").is_file():
        return [path]
    kits = sorted(p for p in path.iterdir() if p.is_dir() and (p / "manifest.json").is_file())
    if not kits:
        raise FileNotFoundError(
            f"{path} holds no conformance kit: no manifest.json in it or in any of its "
            "sub-folders. Write kits with `python -m keras_siglip vectors`."
        )
    return kits


class _ChildReport:
    """The outcome of a verification run in a child process (its report is already printed)."""

    def __init__(self, returncode):
        self.ok = returncode == 0
        self.first_failure = None if self.ok else "(see above)"


def run_verify(kit_path, against="keras", backend=None, variant=None):
    """`python -m keras_siglip verify`: print the report; `.ok` is False on a failing stage.

    Keras fixes its backend when first imported (importing keras_siglip does), so a `backend`
    other than the current one reruns the command in a child process with `KERAS_BACKEND` set.
    `kit_path` is a kit folder or a folder of kit folders (`vectors OUT_DIR`): each is
    verified, with its own table, and `.ok` only when all pass.
    """
    kits = find_kits(kit_path)
    if backend is not None and against == "keras" and keras.backend.backend() != backend:
        command = [sys.executable, "-m", "keras_siglip", "verify", str(kit_path),
                   "--against", against]
        if variant:
            command += ["--variant", variant]
        env = {**os.environ, "KERAS_BACKEND": backend}
        return _ChildReport(subprocess.call(command, env=env))
    reports = []
    for folder in kits:
        if len(kits) > 1:
            print(f"\n== kit {folder} ==")
        reports.append((folder, _verify_one(folder, against, variant)))
    if len(kits) == 1:
        return reports[0][1]
    failing = [str(folder.name) for folder, report in reports if not report.ok]
    print(f"\n{len(kits) - len(failing)} of {len(kits)} kits pass"
          + (f"; failing: {', '.join(failing)}" if failing else ""))
    return _MultiReport(reports)


class _MultiReport:
    """The outcome of verifying a folder of kits: ok when every kit passes."""

    def __init__(self, reports):
        self.reports = reports
        failing = [(folder, r) for folder, r in reports if not r.ok]
        self.ok = not failing
        self.first_failure = (
            None if self.ok else f"{failing[0][0].name}: {failing[0][1].first_failure}"
        )


def _verify_one(kit_path, against, variant):
    try:
        kit = load_kit(kit_path)
    except (KitWeightsError, KitDataError, OSError) as error:  # edited data, missing checkpoint
        print(f"error: {error}", file=sys.stderr)
        return _ChildReport(1)
    if against == "keras":
        print(f"keras-siglip on the {keras.backend.backend()} backend")
        model = None
        if variant:
            model = keras_model(kit)
            break_keras_model(model, variant)
        fn = keras_fn(kit, model)
    elif against == "transformers":
        import transformers  # optional: only this choice needs it

        print(f"transformers {transformers.__version__} (torch, eager attention, float32)")
        fn = transformers_fn(kit, variant)
    else:
        raise ValueError(f"--against must be 'keras' or 'transformers', got {against!r}")
    try:
        report = verify(kit, fn)
    except KitDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return _ChildReport(1)
    print(report)
    return report
