"""The `vectors` and `verify` commands of `python -m keras_siglip`."""

import os
import subprocess
import sys
from pathlib import Path

import keras

from keras_siglip.conformance.adapters.keras import break_keras_model, keras_fn, keras_model
from keras_siglip.conformance.adapters.transformers import transformers_fn
from keras_siglip.conformance.kit import DEFAULT_KITS, build_kit, write_kit
from keras_siglip.conformance.presets import KitWeightsError, write_preset_kit
from keras_siglip.conformance.verify import load_kit, verify


def run_vectors(out_dir, tiny=None, preset=None, seed=0):
    """`python -m keras_siglip vectors`: write one kit (or the default set when nothing given)."""
    if preset is not None:
        return [write_preset_kit(preset, out_dir, seed)]
    names = [tiny] if tiny else list(DEFAULT_KITS)
    written = []
    for name in names:
        folder = Path(out_dir) if tiny else Path(out_dir) / name
        write_kit(build_kit(name, seed), folder)
        written.append(folder)
    return written


class _ChildReport:
    """The outcome of a verification run in a child process (its report is already printed)."""

    def __init__(self, returncode):
        self.ok = returncode == 0
        self.first_failure = None if self.ok else "(see above)"


def run_verify(kit_path, against="keras", backend=None, variant=None):
    """`python -m keras_siglip verify`: print the report; `.ok` is False on a failing stage.

    Keras fixes its backend when first imported (importing keras_siglip does), so a `backend`
    other than the current one reruns the command in a child process with `KERAS_BACKEND` set.
    """
    if backend is not None and against == "keras" and keras.backend.backend() != backend:
        command = [sys.executable, "-m", "keras_siglip", "verify", str(kit_path),
                   "--against", against]
        if variant:
            command += ["--variant", variant]
        env = {**os.environ, "KERAS_BACKEND": backend}
        return _ChildReport(subprocess.call(command, env=env))
    try:
        kit = load_kit(kit_path)
    except (KitWeightsError, FileNotFoundError) as error:  # a preset kit's checkpoint
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
    report = verify(kit, fn)
    print(report)
    return report
