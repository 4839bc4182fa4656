"""Optional dependencies, grouped as the package's pip extras, checked before work starts.

The library itself needs only Keras and NumPy. A command that needs more (the demo needs
scikit-learn, matplotlib and SentencePiece) calls `require(extra)` first, so that a missing
package stops it at once with the `pip install` line that fixes it, not after minutes of work.
`EXTRAS` lists the importable module and the PyPI name of each extra's packages; it is kept
equal to `pyproject.toml`'s `[project.optional-dependencies]` by a test.
"""

import importlib.util
import json
import os
import sys

# extra -> ((module to import, PyPI distribution), ...)
EXTRAS = {
    "jax": (("jax", "jax"),),
    "tensorflow": (("tensorflow", "tensorflow"),),
    "torch": (("torch", "torch"),),
    "convert": (("safetensors", "safetensors"), ("ml_dtypes", "ml_dtypes")),
    "text": (("sentencepiece", "sentencepiece"),),
    "images": (("PIL", "pillow"),),
    # `verify --against transformers` and comparisons with Hugging Face models
    "transformers": (("transformers", "transformers"), ("torch", "torch")),
    "demo": (
        ("sklearn", "scikit-learn"),
        ("matplotlib", "matplotlib"),
        ("sentencepiece", "sentencepiece"),
        ("tqdm", "tqdm"),
    ),
}


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message names the extra that installs it."""


def missing(extra):
    """The PyPI names of `extra`'s packages that cannot be imported here."""
    if extra not in EXTRAS:
        raise ValueError(f"Unknown extra {extra!r}; the extras are {sorted(EXTRAS)}.")
    return [dist for module, dist in EXTRAS[extra] if importlib.util.find_spec(module) is None]


def require(extra, purpose):
    """Raise `MissingDependencyError` unless every package of `extra` can be imported.

    Args:
        extra: a key of `EXTRAS`, e.g. `"demo"`.
        purpose: what needs them, for the message (e.g. `"python -m keras_siglip demo"`).
    """
    absent = missing(extra)
    if absent:
        raise MissingDependencyError(
            f"{purpose} needs {', '.join(absent)}, which {'is' if len(absent) == 1 else 'are'} "
            f"not installed. Install the '{extra}' extra: pip install 'keras-siglip[{extra}]' "
            f"(or pip install {' '.join(absent)})."
        )


# Keras' backends, in the order `choose_backend` tries them.
BACKENDS = ("jax", "torch", "tensorflow")


def _configured_backend():
    """The backend Keras will use when KERAS_BACKEND is unset: its keras.json, else tensorflow."""
    home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~") if os.access(os.path.expanduser("~"), os.W_OK) else "/tmp",
        ".keras")  # fmt: skip
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend") or "tensorflow"
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def choose_backend():
    """Before Keras is imported: if KERAS_BACKEND is unset and the backend Keras would use is
    not installed (e.g. `pip install keras-siglip[jax]` leaves Keras' default, TensorFlow,
    out), set KERAS_BACKEND to an installed one, with a note on stderr saying so.

    Returns the backend chosen, or None when nothing was changed. With no backend installed
    at all, raises `MissingDependencyError` naming the extras.
    """
    if os.environ.get("KERAS_BACKEND") or "keras" in sys.modules:
        return None
    configured = _configured_backend()
    if configured not in BACKENDS or importlib.util.find_spec(configured) is not None:
        return None
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is not None:
            os.environ["KERAS_BACKEND"] = backend
            # One line on stderr, not a warning with a source location: users of the command
            # line see it first, and the library's users can silence it by setting the variable.
            print(f"note: KERAS_BACKEND is not set and Keras' configured backend ({configured}) "
                  f"is not installed; using {backend}. Set KERAS_BACKEND to choose.",
                  file=sys.stderr)
            return backend
    raise MissingDependencyError(
        "keras-siglip needs a Keras backend and none is installed: pip install "
        "'keras-siglip[jax]' (or [tensorflow], [torch])."
    )
