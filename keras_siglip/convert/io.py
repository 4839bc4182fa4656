"""Checkpoint files: atomic writing, formats by path, reading tensors, fit checks, progress.

Every writer goes through `atomic_output`: an output appears at its destination complete, or
not at all. The layouts themselves are described in docs/checkpoints.md.
"""

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def check_destination(path, overwrite):
    """Raise `FileExistsError` if `path` is a file or a non-empty folder, unless `overwrite`."""
    path = Path(path)
    if overwrite or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return  # an empty folder holds nothing to lose
    raise FileExistsError(
        f"{path} already exists; pass overwrite=True (--overwrite) to replace it."
    )


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False, folder=False):
    """Yield a temporary path beside `path`; move it to `path` only if the block succeeds.

    The temporary file or folder lives in the destination's parent, so the
    final rename does not cross file systems. It keeps the destination's
    suffix (Keras insists on `.keras`). On any error it is removed and the
    destination is left as it was. A replaced folder is swapped out whole:
    renamed aside, the new one renamed in, then the old one deleted.
    """
    path = Path(path)
    check_destination(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()  # writers such as keras' save want to create the file themselves
    try:
        yield tmp
        if folder:
            _swap_folder(tmp, path)
        else:
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a folder; expected a file destination.")
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _swap_folder(tmp, path):
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        aside.rmdir()
        os.replace(path, aside)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(aside, path)
            raise
        _remove(aside)
    else:
        if path.exists():
            path.rmdir()  # empty
        os.replace(tmp, path)


def _remove(path):
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


# --------------------------------------------------------------------------------------
# Formats by path.

_SUFFIXES = {".keras": "keras", ".npz": "big_vision"}


def path_format(path):
    """`"keras"`, `"big_vision"` or `"transformers"` from the path alone, or None.

    A `.keras` or `.npz` suffix (any case) names a file format; any other path that is not a
    file names a transformers folder, which need not exist yet (an output). Another file gives
    None.
    """
    path = Path(path)
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None and not path.is_file():
        found = "transformers"
    return found


# --------------------------------------------------------------------------------------
# Reading tensors.


def _bfloat16_to_float32(array):
    # bfloat16 is the top half of a float32: widen the bits, no library needed.
    bits = np.ascontiguousarray(array).view(np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32)


def as_float_array(name, array):
    """`array` as a NumPy array of a numeric dtype; bfloat16 (also as 2-byte void) to float32."""
    array = np.asarray(array)
    if array.dtype.kind == "V" and array.dtype.itemsize == 2:
        return _bfloat16_to_float32(array)
    if array.dtype.name == "bfloat16":
        return array.astype(np.float32)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"Tensor {name!r} has unsupported dtype {array.dtype}.")
    return array


def to_float32(name, array):
    """A floating-point tensor as float32; any other dtype is an error."""
    if array.dtype.kind != "f":
        raise ValueError(f"Tensor {name!r} has dtype {array.dtype}; expected floating point.")
    return np.asarray(array, dtype=np.float32)


def read_npz(path):
    """`{name: ndarray}` of a big_vision `.npz` checkpoint (no pickles)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No big_vision checkpoint at {path}.")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as error:  # zipfile, pickle and format errors alike
        raise ValueError(f"{path} is not a readable big_vision .npz checkpoint ({error}).") from error


def read_safetensors(file, names=None):
    """`{name: float32 ndarray}` of a safetensors file (all tensors, or `names`), without torch.

    `position_ids` buffers are skipped: they are not parameters.
    """
    try:
        import ml_dtypes  # noqa: F401  (registers numpy's bfloat16 for BF16 tensors)
    except ImportError:
        pass
    from safetensors import safe_open

    state = {}
    try:
        with safe_open(str(file), framework="np") as f:
            for name in f.keys() if names is None else names:
                if name.endswith("position_ids"):
                    continue  # persistent in some transformers v4 files
                state[name] = to_float32(name, f.get_tensor(name))
    except (OSError, TypeError) as error:
        hint = " (install ml_dtypes to read bfloat16 tensors)" if "bfloat16" in str(error) else ""
        raise ValueError(f"Cannot read {file}: {error}{hint}.") from error
    except Exception as error:  # safetensors' own error type: truncated or corrupt file
        if type(error).__name__ != "SafetensorError":
            raise
        raise ValueError(
            f"{file} is not a readable safetensors file ({error}); it may be truncated or corrupt."
        ) from error
    return state


# --------------------------------------------------------------------------------------
# Checking tensors against a model.


def check_fit(expected, found, header, *, expects="model expects", note=None):
    """Raise one ValueError listing every missing, unexpected and misshapen tensor, if any.

    Args:
        expected: `{name: shape}` the model needs.
        found: `{name: shape}` the checkpoint holds.
        header: the error's first line.
        expects: how a misshapen line names the expected shape's source.
        note: optional `name -> str`, appended to the lines of expected names.
    """
    note = note or (lambda name: "")
    expected = {n: tuple(int(d) for d in s) for n, s in expected.items()}
    found = {n: tuple(int(d) for d in s) for n, s in found.items()}
    missing = [f"{n} {expected[n]}{note(n)}" for n in expected if n not in found]
    unexpected = [f"{n} {found[n]}" for n in found if n not in expected]
    misshapen = [
        f"{n}: checkpoint {found[n]}, {expects} {expected[n]}{note(n)}"
        for n in expected
        if n in found and found[n] != expected[n]
    ]
    if missing or unexpected or misshapen:
        lines = [header]
        for title, items in (("missing", missing), ("unexpected", unexpected),
                             ("misshapen", misshapen)):
            if items:
                lines.append(f"{len(items)} {title} tensor(s):")
                lines += [f"  {item}" for item in items]
        raise ValueError("\n".join(lines))


# --------------------------------------------------------------------------------------
# Progress on stderr.


class _Quiet:
    def update(self, n=1):
        pass

    def close(self):
        pass


class _Counter:
    """A plain `desc: i/total unit` line, rewritten about 20 times, for when tqdm is missing."""

    def __init__(self, total, desc, unit):
        self.total, self.desc, self.unit, self.done = total, desc, unit, 0
        self.step = max(1, total // 20)

    def update(self, n=1):
        for _ in range(n):
            self.done += 1
            if self.done % self.step == 0 or self.done == self.total:
                print(f"\r{self.desc}: {self.done}/{self.total} {self.unit}s", end="",
                      file=sys.stderr, flush=True)

    def close(self):
        print(file=sys.stderr)


def progress_bar(total, desc, enabled=True, *, unit="batch", counter=False, use_tqdm=True):
    """A bar with `update(n=1)` and `close()`: tqdm on stderr, cleared when closed.

    Without tqdm (or with `use_tqdm=False`) a plain counter line when `counter`, else
    nothing; nothing at all unless `enabled`.
    """
    if not enabled:
        return _Quiet()
    if use_tqdm:
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)
    return _Counter(total, desc, unit) if counter else _Quiet()


def show_progress(items, total, desc, *, use_tqdm=True):
    """Yield `items` under a bar of tensors (a counter line without tqdm).

    This is the tqdm-like `progress(iterable, total=, desc=)` callable the converters take.
    """
    bar = progress_bar(total, desc, unit="tensor", counter=True, use_tqdm=use_tqdm)
    for item in items:
        yield item
        bar.update()
    bar.close()


def track(items, progress, desc):
    """`items` wrapped in the tqdm-like `progress(iterable, total=, desc=)`, if one is given."""
    items = list(items)
    return progress(items, total=len(items), desc=desc) if progress else items
