"""Atomic writes: an output appears at its destination complete, or not at all."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


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
