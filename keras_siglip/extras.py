"""Optional dependencies, grouped as the package's pip extras, checked before work starts.

The library itself needs only Keras and NumPy. A command that needs more (the demo needs
scikit-learn, matplotlib and SentencePiece) calls `require(extra)` first, so that a missing
package stops it at once with the `pip install` line that fixes it, not after minutes of work.
`EXTRAS` lists the importable module and the PyPI name of each extra's packages; it is kept
equal to `pyproject.toml`'s `[project.optional-dependencies]` by a test.
"""

import importlib.util

# extra -> ((module to import, PyPI distribution), ...)
EXTRAS = {
    "jax": (("jax", "jax"),),
    "tensorflow": (("tensorflow", "tensorflow"),),
    "torch": (("torch", "torch"),),
    "convert": (("safetensors", "safetensors"), ("ml_dtypes", "ml_dtypes")),
    "text": (("sentencepiece", "sentencepiece"),),
    "images": (("PIL", "pillow"),),
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
