"""The pip extras: `keras_siglip.extras` matches pyproject.toml, and the demo checks its own first."""

import importlib.util
import tomllib
from pathlib import Path

import pytest

from keras_siglip import extras

pytestmark = pytest.mark.backend_independent

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _declared():
    return tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]


def _name(requirement):
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop)[0]
    return requirement.lower()


@pytest.mark.parametrize("extra", sorted(extras.EXTRAS))
def test_extras_table_matches_pyproject(extra):
    declared = sorted(_name(r) for r in _declared()[extra])
    assert declared == sorted(dist for _, dist in extras.EXTRAS[extra])


def test_all_extra_holds_every_optional_feature():
    # Backends are chosen separately, and `transformers` (the comparison target) brings torch.
    skip = ("jax", "tensorflow", "torch", "transformers")
    wanted = {d for e, rows in extras.EXTRAS.items() if e not in skip for _, d in rows}
    assert {_name(r) for r in _declared()["all"]} == wanted


def _hide(monkeypatch, hidden):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in hidden else real(name, *a))


def test_require_names_the_extra_and_the_packages(monkeypatch):
    _hide(monkeypatch, {"sklearn", "matplotlib"})
    assert extras.missing("demo") == ["scikit-learn", "matplotlib"]
    with pytest.raises(extras.MissingDependencyError) as error:
        extras.require("demo", "the thing")
    message = str(error.value)
    assert "the thing needs scikit-learn, matplotlib" in message
    assert "pip install 'keras-siglip[demo]'" in message
    assert isinstance(error.value, ImportError)


def test_unknown_extra_is_refused():
    with pytest.raises(ValueError, match="Unknown extra 'dmeo'"):
        extras.require("dmeo", "x")


def test_demo_stops_before_any_work_without_its_extra(monkeypatch, capsys, tmp_path):
    import keras_siglip.apps.digits as digits
    from keras_siglip.cli import main

    def must_not_run(**kwargs):
        raise AssertionError("the demo started without its dependencies")

    monkeypatch.setattr(digits, "run_demo", must_not_run)
    _hide(monkeypatch, {"matplotlib"})
    assert main(["demo", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "needs matplotlib" in err and "keras-siglip[demo]" in err
    assert not (tmp_path / "out").exists()


_REAL_FIND_SPEC = importlib.util.find_spec


def _fresh_import(monkeypatch, tmp_path, installed, config=None):
    """Call `choose_backend` as on a first import: no Keras yet, no KERAS_BACKEND."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    if config is not None:
        (tmp_path / "keras.json").write_text(config)
    monkeypatch.delitem(__import__("sys").modules, "keras", raising=False)
    backends = {"jax", "tensorflow", "torch"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        None if name in backends - set(installed) else _REAL_FIND_SPEC(name, *a)))
    return extras.choose_backend()


def test_choose_backend_picks_an_installed_one(monkeypatch, tmp_path, capsys):
    import os

    # `pip install keras-siglip[jax]`: Keras' default (tensorflow) is missing.
    assert _fresh_import(monkeypatch, tmp_path, {"jax"}) == "jax"
    assert os.environ["KERAS_BACKEND"] == "jax"
    assert "not installed; using jax" in capsys.readouterr().err


def test_choose_backend_respects_an_installed_choice(monkeypatch, tmp_path):
    assert _fresh_import(monkeypatch, tmp_path, {"jax", "torch"}, '{"backend": "torch"}') is None
    (tmp_path / "keras.json").unlink()
    assert _fresh_import(monkeypatch, tmp_path, {"tensorflow"}) is None


def test_choose_backend_without_any_backend_names_the_extras(monkeypatch, tmp_path):
    with pytest.raises(extras.MissingDependencyError, match=r"keras-siglip\[jax\]"):
        _fresh_import(monkeypatch, tmp_path, set())
