"""Crash-safe file writing: write to a temporary sibling, fsync, then rename.

A killed job leaves either the old file or the new one, never half of one; what it leaves
is at most a temporary (`.NAME.XXXX.tmp`), which the next job swept up by `sweep_temps`
while it holds the lock (`file_lock`) that guards the folder's writers.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it over `path` on success.

    A destination that cannot be written (a read-only folder or file system) is an OSError whose
    filename is `path` itself, not the temporary's name: its message names what the caller asked for.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write here ({e.strerror or e})", str(path)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp (and writers such as safetensors that replace the file) leave 0600;
        # results and weights are meant to be read by others, so apply the usual umask.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


class LockedError(BlockingIOError):
    """file_lock(blocking=False) found the lock held; the message names the folder and the holder's pid."""


def temp_files(folder: str | Path, name: str | None = None) -> list[Path]:
    """The temporaries atomic_path leaves when killed: of `name`, or of every file in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*{TEMP_SUFFIX}" if name is not None else f".*{TEMP_SUFFIX}"
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def sweep_temps(paths: list[Path]) -> int:
    """Delete stale temporaries; returns the bytes freed. Only call it while holding the lock
    of the job that writes them: a running writer's temporary is not stale."""
    freed = 0
    for p in paths:
        try:
            size = p.stat().st_size
            p.unlink()
            freed += size
        except FileNotFoundError:  # another sweeper (of another lock) got there first
            continue
    return freed


@contextlib.contextmanager
def file_lock(path: str | Path, *, blocking: bool = True, what: str = "this file") -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path` for the duration of the block.

    The lock goes with the open file, so a SIGKILLed holder releases it at once: nothing
    stale is left to clean. `blocking=False` raises LockedError naming the holder's pid
    (written into the lock file) instead of waiting. `what` names the guarded thing in that
    message. Without fcntl (Windows) it does not lock; atomic renames still keep files whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "?"
            raise LockedError(f"{path.parent}: {what} is in use by another process (pid {holder})") from None
        try:
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing or malformed file is one clear error naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{p}: {what} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None


def sha256_of(path: str | Path) -> str:
    """A file's sha256 (hex), read in 1 MiB blocks: checkpoints and archives may be gigabytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
