"""Read-only access to the flat big_vision parameter dict.

The oracle reads big_vision names (docs/checkpoints.md) so that it can be checked against big_vision
fixtures without any conversion. Everything is cast to float64 on the way out, so that the oracle's
rounding error is far below the float32 error of the implementations it checks.
"""

import re

import numpy as np


def f64(x):
    """Return `x` as a float64 ndarray (a copy only when needed)."""
    return np.asarray(x, dtype=np.float64)


class Params:
    """A view of a flat `{"img/...": array}` dict.

    Accepts an optional leading `params/` on every key, and scan-stacked blocks
    (`.../encoderblock/<leaf>` with a leading depth axis) as well as the unrolled
    `.../encoderblock_{i}/<leaf>` form; both appear in released checkpoints (docs/checkpoints.md).
    """

    def __init__(self, params):
        flat = {}
        for key, value in params.items():
            if key.startswith("params/"):
                key = key[len("params/"):]
            flat[key] = value
        self._flat = flat

    def has(self, name):
        return name in self._flat

    def get(self, name):
        """The parameter `name` as float64; raises KeyError with the name if it is missing."""
        if name not in self._flat:
            raise KeyError(f"missing parameter {name!r}")
        return f64(self._flat[name])

    def depth(self, encoder):
        """Number of encoder blocks under the prefix `encoder` (e.g. "img/Transformer")."""
        pattern = re.compile(re.escape(encoder) + r"/encoderblock_(\d+)/")
        indices = {int(m.group(1)) for k in self._flat for m in [pattern.match(k)] if m}
        if indices:
            if indices != set(range(len(indices))):
                raise ValueError(f"non-contiguous block indices under {encoder}: {sorted(indices)}")
            return len(indices)
        stacked = [k for k in self._flat if k.startswith(encoder + "/encoderblock/")]
        if stacked:
            return int(np.shape(self._flat[stacked[0]])[0])
        raise KeyError(f"no encoder blocks under {encoder!r}")

    def block(self, encoder, i):
        """A `Params` view of block `i` of `encoder`, with keys relative to the block."""
        prefix = f"{encoder}/encoderblock_{i}/"
        sub = {k[len(prefix):]: v for k, v in self._flat.items() if k.startswith(prefix)}
        if not sub:
            prefix = f"{encoder}/encoderblock/"
            sub = {k[len(prefix):]: np.asarray(v)[i] for k, v in self._flat.items() if k.startswith(prefix)}
        if not sub:
            raise KeyError(f"no block {i} under {encoder!r}")
        return Params(sub)

    def sub(self, prefix):
        """A `Params` view of the keys under `prefix/`, relative to it."""
        prefix = prefix.rstrip("/") + "/"
        return Params({k[len(prefix):]: v for k, v in self._flat.items() if k.startswith(prefix)})
