"""Checkpoint files: formats by path, reading tensors, fit checks, progress.

Every writer goes through `atomic_output` (in `safe_write`, re-exported here): an output appears
at its destination complete, or not at all, and `overwrite` replaces only what the tool wrote.
The layouts themselves are described in docs/checkpoints.md.
"""

import ast
import math
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from keras_siglip.convert.safe_write import (  # noqa: F401  (re-exported: the writers' API)
    TRANSFORMERS_FILES,
    apply_umask,
    atomic_output,
    check_destination,
    clean_stale_temporaries,
)

# --------------------------------------------------------------------------------------
# Formats by path.

_SUFFIXES = {".keras": "keras", ".npz": "big_vision"}


# A suffix that reads as a file extension (".txt", ".bin", ".h5"), not a version (".1", ".v2").
_FILE_SUFFIX = re.compile(r"\.(?![vV]\d+$)[A-Za-z][A-Za-z0-9]{0,7}")


def known_suffixes():
    """The file suffixes `path_format` recognises, for messages: `".keras (keras), ..."`."""
    return ", ".join(f"{suffix} ({kind})" for suffix, kind in _SUFFIXES.items())


def path_format(path):
    """`"keras"`, `"big_vision"` or `"transformers"` from the path alone, or None.

    A `.keras` or `.npz` suffix (any case) names a file format; an existing folder, or a path
    that does not exist and has no file-like suffix, names a transformers folder (which need
    not exist yet: an output). Another file, or a new path such as `out.txt`, gives None:
    writing a folder named like a file would surprise everyone.
    """
    path = Path(path)
    found = _SUFFIXES.get(path.suffix.lower())
    if found is not None:
        return found
    if path.is_dir():
        return "transformers"
    if path.exists() or _FILE_SUFFIX.fullmatch(path.suffix):
        return None
    return "transformers"


def unknown_format_message(path):
    """Why `path_format(path)` is None, and what would work instead."""
    path = Path(path)
    what = "is a file" if path.is_file() else f"has the file suffix {path.suffix!r}"
    return (
        f"{path} {what} of no checkpoint format this tool knows; known suffixes: "
        f"{known_suffixes()}; a transformers checkpoint is a folder (a name without a file "
        "suffix)."
    )


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


# Entries up to this size are read whatever their compression ratio (zero-initialised tensors
# compress ~1000-fold); larger ones at most MAX_INFLATION times their stored size.
MAX_SMALL_ENTRY = 64 << 20
MAX_INFLATION = 100


def _npy_header(member, name):
    """`(shape, fortran_order, dtype, header bytes)` of a `.npy` stream, without its data."""
    magic = member.read(8)
    if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
        raise ValueError(f"entry {name!r} is not a .npy array")
    major = magic[6]
    size_bytes = 2 if major == 1 else 4
    length = int.from_bytes(member.read(size_bytes), "little")
    if length > 1 << 20:
        raise ValueError(f"entry {name!r} has a {length}-byte .npy header")
    header = ast.literal_eval(member.read(length).decode("latin1" if major < 3 else "utf8"))
    if not isinstance(header, dict) or not {"descr", "fortran_order", "shape"} <= set(header):
        raise ValueError(f"entry {name!r} has a malformed .npy header")
    dtype = np.lib.format.descr_to_dtype(header["descr"])
    shape = tuple(int(d) for d in header["shape"])
    return shape, bool(header["fortran_order"]), dtype, 8 + size_bytes + length


def _read_member(archive, info, name, path):
    with archive.open(info) as member:
        shape, fortran, dtype, header = _npy_header(member, name)
        if dtype.hasobject:
            raise ValueError(
                f"entry {name!r} holds pickled Python objects (dtype {dtype}); checkpoints are "
                "read without pickles, for safety. Re-save it with plain numeric arrays."
            )
        nbytes = math.prod(shape) * dtype.itemsize
        # The zip's own size for the entry bounds what reading it inflates; it must be the
        # header plus exactly the array the header describes (no more: a zip bomb).
        if info.file_size != header + nbytes:
            raise ValueError(
                f"entry {name!r} would inflate to {info.file_size} bytes, but its header "
                f"describes a {shape} {dtype} array of {nbytes} bytes (+{header} header): the "
                f"file {path} is corrupt or crafted. Re-download or re-export it."
            )
        # And the inflation itself is capped: weights hardly compress (numpy.savez stores them
        # as they are), so a large entry that inflates 100-fold is a bomb, not a checkpoint.
        if info.file_size > max(MAX_SMALL_ENTRY, MAX_INFLATION * info.compress_size):
            raise ValueError(
                f"entry {name!r} would inflate {info.compress_size} stored bytes to "
                f"{info.file_size} bytes ({info.file_size // max(info.compress_size, 1)}-fold; "
                f"at most {MAX_INFLATION}-fold is read for entries over {MAX_SMALL_ENTRY >> 20} "
                f"MiB): the file {path} is corrupt or crafted. Re-download or re-export it."
            )
        data = member.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"entry {name!r} is truncated")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def read_npz(path, keep=None):
    """`{name: ndarray}` of a big_vision `.npz` checkpoint (no pickles), read lazily.

    Only the entries whose name `keep(name)` accepts (all without `keep`) are decompressed, one
    at a time, and each only after its zip size has been checked against the shape and dtype
    its `.npy` header declares and its inflation against `MAX_INFLATION`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No big_vision checkpoint at {path}.")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; a big_vision checkpoint is one .npz file.")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            start = f.read(6)
        what = ("a single .npy array, not a .npz archive of named arrays" if start == b"\x93NUMPY"
                else "not a zip archive: truncated, corrupt, or not a .npz at all")
        raise ValueError(
            f"{path} is not a readable big_vision .npz checkpoint ({what}). Re-download it, or "
            "re-export it with numpy.savez."
        )
    tree = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if info.is_dir() or (keep is not None and not keep(name)):
                    continue
                tree[name] = _read_member(archive, info, name, path)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, SyntaxError,
            NotImplementedError, RuntimeError) as error:
        raise ValueError(
            f"{path} is not a readable big_vision .npz checkpoint ({error}). It may be "
            "truncated or corrupt: re-download or re-export it."
        ) from error
    return tree


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


def load_keras_file(path):
    """`keras.saving.load_model(path)` with errors that say what is wrong with the file."""
    import keras

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No .keras file at {path}.")
    if path.is_dir():
        raise IsADirectoryError(
            f"{path} is a folder; a .keras model is one file (written by model.save)."
        )
    problem = None
    if not zipfile.is_zipfile(path):
        problem = "not a zip archive: truncated or corrupt"
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                members = set(archive.namelist())
        except (zipfile.BadZipFile, OSError) as error:
            members, problem = set(), f"unreadable zip archive: {error}"
        if problem is None and "config.json" not in members:
            problem = "a zip archive without the config.json of a Keras model"
    if problem is not None:
        raise ValueError(
            f"{path} is not a readable .keras file ({problem}). Re-save the model with "
            "model.save(path), or convert it again from its checkpoint."
        )
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # keras, h5py and zipfile errors alike
        raise ValueError(
            f"{path} is not a readable .keras model ({type(error).__name__}: {error}). It may "
            "be truncated or corrupt, or hold a model this version cannot rebuild: re-save it."
        ) from error


# --------------------------------------------------------------------------------------
# Checking tensors against a model.


def packed_rows(value, index, count):
    """Block `index` of the `count` equal row blocks of a packed tensor (a fused q/k/v)."""
    rows = value.shape[0] // count
    return value[index * rows:(index + 1) * rows]


def check_model(caller, model, kinds, what):
    """A `TypeError` naming `what` unless `model` is an instance of `kinds`."""
    if not isinstance(model, kinds):
        raise TypeError(f"{caller} writes {what}; received {type(model).__name__}.")


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
