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
    wanted = {d for e, rows in extras.EXTRAS.items() if e not in ("jax", "tensorflow", "torch")
              for _, d in rows}  # fmt: skip
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
