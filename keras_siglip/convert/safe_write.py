"""Safe writing: one `overwrite` rule for every format, atomic outputs, no stale temporaries.

The rule: an output appears at its destination complete or not
at all, and `overwrite=True` may only replace what the tool itself would write there: a file of
the destination's format, or a folder that holds only files the tool writes (`owned` patterns).
Never a folder with other files in it, never anything that is or contains a source.

Temporaries are named `.{destination}.keras-siglip-tmp-{pid}-{random}` (and
`.{destination}.keras-siglip-old-{pid}-{random}` for a folder being swapped out) beside the
destination: a marker no other program uses, so that cleaning up never touches a user's file.
SIGTERM during the write removes them; after a SIGKILL (or a power cut) the next write into the
same folder removes those whose process is gone (and those of the same destination older than a
day, when pids may have been reused).
"""

import contextlib
import fnmatch
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import zipfile
from pathlib import Path

# The files `save_transformers` writes in a checkpoint folder (the weights, the config, and with a
# processor its SentencePiece model and two configs): these, and only these, `overwrite=True` may
# replace. A folder holding anything else (a README, shards, `tokenizer.json` that another tool
# wrote) is never replaced.
TRANSFORMERS_FILES = (
    "config.json",
    "model.safetensors",
    "spiece.model",
    "tokenizer.model",
    "tokenizer_config.json",
    "preprocessor_config.json",
)
# Zip-based single-file formats: a file in the way must be a zip to count as "of that format".
_ZIP_SUFFIXES = (".keras", ".npz")
STALE_AGE_S = 24 * 3600  # a temporary this old is stale even if its pid is alive (pid reuse)
MARKER = "keras-siglip"  # in every temporary's name: `.{name}.keras-siglip-tmp-{pid}-{random}`


def _is_safetensors(path):
    """Whether `path` starts as a safetensors file does: an 8-byte header length, then JSON."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= os.path.getsize(path) - 8


def _foreign_files(folder, owned):
    """Files under `folder` (relative, sorted) that match none of the `owned` patterns."""
    foreign = []
    for entry in sorted(folder.rglob("*")):
        if entry.is_dir() and not entry.is_symlink():
            continue
        name = entry.relative_to(folder).as_posix()
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in owned):
            foreign.append(name)
    return foreign


def _contains(outer, inner):
    """Whether `inner` is `outer` or lies inside it (after resolving links)."""
    outer, inner = Path(outer).resolve(), Path(inner).resolve()
    return inner == outer or outer in inner.parents


def _listing(names, limit=5):
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_destination(path, overwrite, *, folder=None, owned=TRANSFORMERS_FILES, sources=()):
    """Raise unless writing to `path` may proceed under the overwrite rule.

    Args:
        path: the destination.
        overwrite: bool. Without it an existing file or non-empty folder is refused
            (`FileExistsError`); an empty folder holds nothing to lose.
        folder: True for a folder output, False for a file output, None to judge by what is
            there (backward compatible).
        owned: glob patterns (relative paths) of the files the tool writes in a folder output;
            `overwrite` replaces a folder only when every file in it matches one.
        sources: paths being read. A destination that is, or contains, one is always refused.

    Raises:
        TypeError: `overwrite` is not a bool.
        ValueError: the destination is or contains a source.
        FileExistsError: something is in the way that the tool did not write (the message names
            it), or anything at all without `overwrite`.
        IsADirectoryError / NotADirectoryError: a folder where a file goes, or the reverse.
    """
    if not isinstance(overwrite, bool):  # `overwrite="no"` must not mean yes
        raise TypeError(f"overwrite must be True or False; received {overwrite!r}.")
    path = Path(path)
    for source in sources:
        if source is not None and Path(source).exists() and _contains(path, source):
            what = "is" if Path(path).resolve() == Path(source).resolve() else "contains"
            raise ValueError(
                f"The destination {path} {what} the source {source}; no option replaces a "
                "source. Choose a destination outside it (for example a new folder beside it)."
            )
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        entries = list(path.iterdir())
        if folder is False:
            raise IsADirectoryError(
                f"{path} is a folder, but the output is a file: choose a file name (e.g. "
                f"{path.name}{path.suffix or '.keras'} inside it, or beside it)."
            )
        if not entries:
            return  # an empty folder holds nothing to lose
        foreign = _foreign_files(path, owned)
        if foreign:
            raise FileExistsError(
                f"{path} already exists and holds files this tool does not write "
                f"({_listing(foreign)}); it is never replaced, with or without overwrite. "
                "Write to a new folder instead."
            )
        if not overwrite:
            raise FileExistsError(
                f"{path} already exists (holding {_listing(sorted(e.name for e in entries))}); "
                "pass overwrite=True (--overwrite) to replace it, or choose another destination."
            )
        return
    if folder is True:
        raise NotADirectoryError(
            f"{path} is a file, but the output is a folder: choose another destination."
        )
    if path.suffix.lower() in _ZIP_SUFFIXES and not zipfile.is_zipfile(path):
        raise FileExistsError(
            f"{path} already exists and is not a {path.suffix} file this tool writes (not a zip "
            "archive); it is never replaced, with or without overwrite. Choose another "
            "destination."
        )
    if path.suffix.lower() == ".safetensors" and not _is_safetensors(path):
        raise FileExistsError(
            f"{path} already exists and is not a safetensors file (no safetensors header); it "
            "is never replaced, with or without overwrite. Choose another destination."
        )
    if not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (--overwrite) to replace it, or choose "
            "another destination."
        )


# --------------------------------------------------------------------------------------
# Modes, stale temporaries, signals.


def _umask():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


def apply_umask(path):
    """Give `path` (and a folder's contents) the modes a plain `open` / `mkdir` would.

    `mkstemp` and `mkdtemp` create 0600 files and 0700 folders whatever the umask.
    """
    mask = _umask()
    path = Path(path)
    items = [path] + (list(path.rglob("*")) if path.is_dir() else [])
    for item in items:
        if item.is_symlink():
            continue
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    except OSError:
        return False
    return True


# Any destination's temporary, as `atomic_output` names it (tempfile's 8 random characters, the
# destination's suffix kept for files).
_TEMPORARY = re.compile(
    r"\.(?P<name>.+)\." + MARKER + r"-(?:tmp|old)-(?P<pid>\d+)-[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)?"
)


def _temporary_name(path, kind):
    return f".{Path(path).name}.{MARKER}-{kind}-{os.getpid()}-"


def clean_stale_temporaries(path, *, now=None):
    """Remove temporaries that interrupted writes left beside `path`; return them.

    Only names that `atomic_output` makes are considered (they carry the `keras-siglip` marker).
    One is stale when the process in its name is gone; a temporary of `path` itself also when it
    is older than `STALE_AGE_S` (the pid may have been reused). Temporaries of other destinations
    in the same folder are removed when their process is gone (a killed run to another name
    leaves nothing behind either).
    """
    path = Path(path)
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in candidates:
        match = _TEMPORARY.fullmatch(entry.name)
        if not match:
            continue
        try:
            age = now - entry.lstat().st_mtime
        except OSError:
            continue
        stale = not _pid_alive(int(match.group("pid")))
        if match.group("name") == path.name and age > STALE_AGE_S:
            stale = True
        if stale:
            _remove(entry)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def _remove_on_sigterm(tmp):
    """Remove `tmp` if SIGTERM arrives, then let the previous handler act (default: exit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN:
        yield
        return

    def handler(signum, frame):
        _remove(tmp)
        signal.signal(signal.SIGTERM, previous)
        if callable(previous):
            previous(signum, frame)
        else:  # SIG_DFL (or None: set outside Python): terminate as the signal would
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, previous)


# --------------------------------------------------------------------------------------
# Atomic outputs.


@contextlib.contextmanager
def atomic_output(path, *, overwrite=False, folder=False, owned=TRANSFORMERS_FILES, sources=()):
    """Yield a temporary path beside `path`; move it to `path` only if the block succeeds.

    The destination is checked first (`check_destination`, with `owned` and `sources`) and
    again just before it is replaced. The temporary lives in the destination's parent, so the
    final rename does not cross file systems, and keeps the destination's suffix (Keras insists
    on `.keras`). On any error, and on SIGTERM, it is removed and the destination is left as it
    was; stale temporaries of earlier interrupted writes to the same destination are removed
    first. A replaced folder is swapped out whole: renamed aside, the new one renamed in, then
    the old one deleted. The output gets the modes the umask gives.
    """
    path = Path(path)
    check_destination(path, overwrite, folder=folder, owned=owned, sources=sources)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    prefix = _temporary_name(path, "tmp")
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        tmp.unlink()  # writers such as keras' save want to create the file themselves
    try:
        with _remove_on_sigterm(tmp):
            yield tmp
            if not tmp.exists():
                raise FileNotFoundError(f"The writer for {path} produced nothing.")
            apply_umask(tmp)
            check_destination(path, overwrite, folder=folder, owned=owned, sources=sources)
            if folder:
                _swap_folder(tmp, path)
            else:
                os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _swap_folder(tmp, path):
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        aside = Path(tempfile.mkdtemp(prefix=_temporary_name(path, "old"), dir=path.parent))
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
        try:
            path.unlink()
        except FileNotFoundError:
            pass
