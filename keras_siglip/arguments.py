"""Checks of user arguments: one rule for every public function and every tower configuration.

A wrong *type* (a str, a float or a bool where an int is wanted) raises a `TypeError`; a value
of the right type outside its range raises a `ValueError`. Either message names the argument,
the value received and what is allowed, and is the same on every Keras backend (nothing here
imports Keras). A value outside a fixed set of choices (a mode name such as `resize="bicubic"`)
raises a `ValueError` listing the choices, whatever its type.

`check_tower_config(kind, config)` checks a tower's keyword arguments against the schema of
that tower (`TOWER_SCHEMAS`): every path that builds a tower (presets and their overrides,
checkpoint conversion, kits, the test helpers) goes through it in `keras_siglip.builders`.
"""

import math
import numbers

import numpy as np


def _describe(value):
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _where(where):
    return f"{where}: " if where else ""


def check_int(name, value, *, minimum=1, where=None, allow_none=False):
    """`value` as an int `>= minimum` (any int when `minimum` is None).

    bools, floats (even `2.0`) and strings are refused with a `TypeError`; an int below
    `minimum` with a `ValueError`.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        none = " or None" if allow_none else ""
        hint = ""
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and (
            math.isfinite(value) and float(value).is_integer()
        ):
            hint = f" Pass {name}={int(value)}."
        raise TypeError(
            f"{_where(where)}{name} must be an int{none}; received {_describe(value)}.{hint}"
        )
    if minimum is not None and value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{_where(where)}{name} must be {kind}; received {int(value)}.")
    return int(value)


def check_bool(name, value, *, where=None):
    """`value` as a bool; ints (even 0 and 1), strings and None are refused (`TypeError`)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{_where(where)}{name} must be True or False; received {_describe(value)}."
        )
    return bool(value)


def check_optional_bool(name, value, *, where=None):
    """`value` as None, True or False; anything else is refused (`TypeError`)."""
    if value is None:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{_where(where)}{name} must be True, False or None; received {_describe(value)}."
        )
    return bool(value)


def check_float(name, value, *, positive=False, where=None):
    """`value` as a finite float (`> 0` when `positive`); bools and strings are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{_where(where)}{name} must be a float; received {_describe(value)}.")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        kind = "a finite float > 0" if positive else "a finite float"
        raise ValueError(f"{_where(where)}{name} must be {kind}; received {value!r}.")
    return value


def check_size(name, value, *, where=None):
    """An int `S` or a pair `(height, width)` of positive ints, as `(height, width)`.

    A str is refused even though it is a sequence ("224" is not the size (2, 2, 4)).
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        side = check_int(name, value, where=where)
        return (side, side)
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list, np.ndarray)):
        raise TypeError(
            f"{_where(where)}{name} must be an int or a (height, width) pair of ints; received "
            f"{_describe(value)}. Pass e.g. {name}=224 or {name}=(224, 224)."
        )
    if len(value) != 2:
        raise ValueError(
            f"{_where(where)}{name} must be an int or a (height, width) pair; received "
            f"{len(value)} values {tuple(value)!r}."
        )
    height, width = (check_int(f"{name}[{i}]", v, where=where) for i, v in enumerate(value))
    return (height, width)


def check_choice(name, value, choices, *, where=None):
    """`value` if it is one of `choices` (compared with `==`), else a `ValueError` listing them."""
    if isinstance(value, (str, int, float, type(None))) and value in choices:
        return value
    raise ValueError(
        f"{_where(where)}{name} must be one of {', '.join(repr(c) for c in choices)}; "
        f"received {_describe(value)}."
    )


def check_str_list(name, value, *, where=None, allow_empty=False):
    """A list or tuple of str as a list; a bare str is refused (it is not a list of one)."""
    if isinstance(value, str):
        raise TypeError(
            f"{_where(where)}{name} must be a list of str; received the str {value!r}. "
            f"Pass a list, e.g. {name}=[{value!r}]."
        )
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{_where(where)}{name} must be a list of str; received {_describe(value)}.")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(
                f"{_where(where)}{name}[{i}] must be a str; received {_describe(item)}."
            )
    if not value and not allow_empty:
        raise ValueError(f"{_where(where)}{name} is empty; pass at least one str.")
    return list(value)


# name -> (checker, required). Checkers take (name, value, where) and return the clean value.
def _positive(name, value, where):
    return check_int(name, value, where=where)


def _epsilon(name, value, where):
    return check_float(name, value, positive=True, where=where)


def _embed_dim(name, value, where):
    return check_int(name, value, where=where, allow_none=True)


def _bool(name, value, where):
    return check_bool(name, value, where=where)


def _size(name, value, where):
    return check_size(name, value, where=where)


_COMMON = {
    "width": (_positive, True),
    "depth": (_positive, True),
    "mlp_dim": (_positive, True),
    "num_heads": (_positive, True),
    "layer_norm_epsilon": (_epsilon, False),
}
TOWER_SCHEMAS = {
    "vision": {"image_size": (_size, True), "patch_size": (_positive, True), **_COMMON},
    "naflex": {"patch_size": (_positive, True), "position_grid_size": (_positive, False),
               **_COMMON},
    "text": {"vocabulary_size": (_positive, True), "sequence_length": (_positive, True),
             **_COMMON, "embed_dim": (_embed_dim, False), "use_head": (_bool, False)},
}
_TOWER_NAMES = {"vision": "vision tower", "naflex": "NaFlex vision tower", "text": "text tower"}


def check_tower_config(kind, config, where=None):
    """Check the keyword arguments of a tower and return them cleaned (ints as int, sizes as pairs).

    Args:
        kind: `"vision"` (fixed resolution), `"naflex"` or `"text"`.
        config: dict of the tower's keyword arguments (`layer_norm_epsilon`, `position_grid_size`,
            `embed_dim` and `use_head` may be left out).
        where: optional text naming the source (a preset, a file) put before the message.

    Raises:
        TypeError: a value of the wrong type (a str, a float or a bool for an int; a str for a
            size), naming the key.
        ValueError: an unknown or missing key, a value out of range, `width` not divisible by
            `num_heads`, an image smaller than one patch, `embed_dim` without a text head.
    """
    schema = TOWER_SCHEMAS[kind]
    tower = _TOWER_NAMES[kind]
    where = where or tower
    if not isinstance(config, dict):
        raise TypeError(f"{where}: the {tower} configuration must be a dict; got {_describe(config)}.")
    unknown = sorted(set(config) - set(schema), key=str)
    if unknown:
        raise ValueError(
            f"{where}: unknown {tower} argument(s) {unknown}; valid: {', '.join(schema)}."
        )
    missing = [key for key, (_, required) in schema.items() if required and key not in config]
    if missing:
        raise ValueError(f"{where}: the {tower} needs {', '.join(missing)}.")
    clean = {key: schema[key][0](key, value, where) for key, value in config.items()}
    if clean["width"] % clean["num_heads"]:
        raise ValueError(
            f"{where}: width={clean['width']} is not divisible by num_heads={clean['num_heads']}; "
            "the head width is width // num_heads. Pick num_heads among the divisors of width."
        )
    if kind == "vision":
        height, width = clean["image_size"]
        p = clean["patch_size"]
        if height < p or width < p:
            raise ValueError(
                f"{where}: image_size={clean['image_size']} is smaller than one {p}x{p} patch "
                f"(patch_size={p}); image_size must be at least patch_size on both sides."
            )
    if kind == "text" and clean.get("use_head") is False and clean.get("embed_dim") not in (
        None, clean["width"]
    ):
        raise ValueError(
            f"{where}: a text tower without a head outputs its width ({clean['width']}); "
            f"embed_dim={clean['embed_dim']} needs use_head=True."
        )
    return clean
