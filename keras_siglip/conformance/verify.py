"""Reading a kit and checking an implementation against it, stage by stage.

`verify(kit, fn)` runs any implementation `fn(params, inputs) -> {stage: array}` and names the
first stage, in the manifest's order, whose error exceeds its tolerance (docs/conformance_kit.md).
"""

import math

import numpy as np

from keras_siglip.conformance.kit import check_manifest_stages, read_kit_folder
from keras_siglip.conformance.presets import checkpoint_params


def load_kit(path, float32=False, weights=None):
    """Read a kit folder (or pass an in-memory kit through) to `{"manifest", "params", ...}`.

    A preset kit's parameters come from its checkpoint (`checkpoint_params`): found in the cache
    (or at `weights`), checked against the manifest's sha256, then read.
    """
    if isinstance(path, dict):
        return path
    kit = read_kit_folder(path, float32)
    if "checkpoint" in kit["manifest"]:
        kit["params"] = checkpoint_params(kit["manifest"], weights)
    return kit


class Report:
    """Per-stage errors of one verification; `first_failure` is a stage name or None."""

    def __init__(self, rows, first_failure):
        self.rows = rows  # dicts: stage, max_abs, max_rel, atol, status
        self.first_failure = first_failure

    @property
    def ok(self):
        return self.first_failure is None

    def __str__(self):
        lines = [f"{'stage':<22} {'max abs err':>12} {'max rel err':>12} {'atol':>10}  status"]
        for r in self.rows:
            if r["status"] == "missing":
                lines.append(f"{r['stage']:<22} {'-':>12} {'-':>12} {r['atol']:>10.2e}  missing")
                continue
            lines.append(
                f"{r['stage']:<22} {r['max_abs']:>12.3e} {r['max_rel']:>12.3e} "
                f"{r['atol']:>10.2e}  {r['status']}"
            )
        lines.append(
            "all stages within tolerance"
            if self.ok
            else f"FIRST FAILING STAGE: {self.first_failure}"
        )
        return "\n".join(lines)


def _compare(stage, got, expected, inputs):
    """`(max_abs, max_rel, status)` of one returned stage against its expected value."""
    if got.shape != expected.shape:
        return math.nan, math.nan, f"shape {got.shape} != {expected.shape}"
    if stage.get("valid_rows"):
        keep = np.asarray(inputs[stage["valid_rows"]]).astype(bool)
        got, expected = got[keep], expected[keep]
    err = np.abs(got - expected)
    max_abs = float(np.max(err)) if err.size else 0.0
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    max_rel = max_abs / scale if scale > 0 else max_abs
    bad = not np.all(np.isfinite(got)) or max_abs > stage["atol"]
    return max_abs, max_rel, "FAIL" if bad else "ok"


def verify(kit, fn, *, require_all=False):
    """Check an implementation against a kit.

    Args:
        kit: a kit folder path, or an in-memory kit from `build_kit` / `load_kit`.
        fn: callable `fn(params, inputs) -> {stage: array}`; `params` is the flat big_vision dict
            (float32), `inputs` the kit's inputs. Stages it does not return are reported as
            missing.
        require_all: count a missing stage as a failure.

    Raises:
        KitDataError: the kit's data does not match its recorded sha256, or its manifest
            lists a tolerance looser than the library's, or omits a stage.

    Returns:
        `Report`, whose `first_failure` is the first stage in the manifest's order that exceeds
        its tolerance (or has the wrong shape, or NaNs), else None.
    """
    kit = load_kit(kit)
    check_manifest_stages(kit)  # an edited manifest must not make a broken model pass
    actual = fn(kit["params"], kit["inputs"])
    rows, first = [], None
    for stage in kit["manifest"]["stages"]:
        name = stage["name"]
        expected = np.asarray(kit["expected"][name], np.float64)
        row = {"stage": name, "atol": stage["atol"], "max_abs": math.nan, "max_rel": math.nan}
        if name not in actual:
            row["status"] = "missing"
            rows.append(row)
            if require_all and first is None:
                first = name
            continue
        got = np.asarray(actual[name], np.float64)
        row["max_abs"], row["max_rel"], row["status"] = _compare(
            stage, got, expected, kit["inputs"]
        )
        if row["status"] != "ok" and first is None:
            first = name
        rows.append(row)
    return Report(rows, first)
