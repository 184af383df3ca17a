"""Atomic file writes and file hashes: the one implementation of each.

A file is written to ``.{name}.tmp-{pid}`` beside its final path (the name
``tracker gc`` recognises as an orphan once its process is gone), fsynced, renamed over
the final path and the directory fsynced; on any error the temporary file is removed, so
a crash never leaves a half-written file at the final path.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.core.errors import DataFormatError

#: bytes read per step when hashing a file
CHUNK_BYTES = 8 * 1024 * 1024


def temp_path_for(path: str | Path) -> Path:
    """The temporary name used while ``path`` is being written: ``.{name}.tmp-{pid}``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(directory: str | Path) -> None:
    """fsync a directory so a rename into it survives a crash (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a closed file's data to the disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextmanager
def atomic_path(path: str | Path, *, while_syncing: Callable[[Path], None] | None = None
                ) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``.

    Parameters
    ----------
    path : the final path (its directory must exist).
    while_syncing : optional ``f(tmp)`` run in a thread while the temporary file is
        fsynced (for example hashing the finished file); its exception is re-raised and
        the final path is then left untouched.

    The body writes the temporary file and closes it. On an exception in the body, in
    ``while_syncing`` or in the fsync, the temporary file is removed and the exception
    propagates; ``path`` keeps its old content (or stays absent).
    """
    final = Path(path)
    tmp = temp_path_for(final)
    try:
        yield tmp
        errors: list[BaseException] = []
        worker = None
        if while_syncing is not None:
            def run() -> None:
                try:
                    while_syncing(tmp)
                except BaseException as exc:  # re-raised below, in the caller's thread
                    errors.append(exc)
            worker = threading.Thread(target=run, name="atomic-while-syncing")
            worker.start()
        try:
            fsync_file(tmp)
        finally:
            if worker is not None:
                worker.join()
        if errors:
            raise errors[0]
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path``.

    ``mode`` (e.g. ``0o600``): the file's permissions, set before any byte is written,
    so a private file is never readable by others, not even for a moment.
    """
    with atomic_path(path) as tmp:
        if mode is None:
            tmp.write_bytes(data)
        else:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            os.fchmod(fd, mode)  # the umask may have cleared bits of ``mode``
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", mode: int | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`); returns ``path``."""
    return atomic_write_bytes(path, text.encode(encoding), mode)


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) if needed and make it readable by its owner only (0700)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def sha256_file(path: str | Path, chunk_size: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file, read in 8 MB chunks (DataFormatError if it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(chunk_size):
                h.update(chunk)
    except OSError as exc:
        raise DataFormatError(f"file {path} could not be read ({exc.strerror or exc}).") from exc
    return h.hexdigest()


@contextmanager
def exclusive_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the lock file ``path`` (created 0600) for the block:
    one process at a time, across processes (released when the holder dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
