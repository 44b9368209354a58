"""Small image files (contact sheets, frames) saved beside the videos, never clobbering.

The bytes are written to a held temp file in the same folder, fsynced, then
published under the first free name (``name``, ``stem-1.ext``, ...; the rule is
:mod:`.tempfiles`'): a reader never sees a partial image under a final name, and an
existing file is never replaced.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import StorageError
from .tempfiles import candidate_names, create_temp, link_or_reserve, publish_first_free

#: Where the folder cannot be locked (no ``flock``): this process's saves take turns.
_NO_FLOCK_LOCK = threading.Lock()


def save_new(directory: Path, name: str, data: bytes) -> Path:
    """Save ``data`` as ``directory/name`` (or ``stem-N.ext`` when taken); return the path."""
    fd: int | None = None
    tmp: Path | None = None
    try:
        # Named and locked as every writer's temp file is: swept after a crash only.
        fd, tmp = create_temp(directory, name.rpartition(".")[0] or name)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return publish_first_free(tmp, directory, name, link_or_reserve)
    except OSError as exc:
        raise StorageError(f"Could not save {name} in {directory}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if fd is not None:
            os.close(fd)


def _holds(path: Path, data: bytes) -> bool | None:
    """Whether the regular file at ``path`` holds ``data``; None when there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError:
        return False  # a symlink, a folder, unreadable: not ours to reuse
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
            return False
        with os.fdopen(os.dup(fd), "rb") as file:
            return file.read(len(data) + 1) == data
    finally:
        os.close(fd)


@contextlib.contextmanager
def _folder_turn(directory: Path) -> Iterator[None]:
    """Saves in ``directory`` by this and other processes take turns while held: an
    exclusive ``flock`` on the folder itself (each open is its own lock, so threads of
    one process wait for each other too). Blocking: from a worker thread."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        with _NO_FLOCK_LOCK:
            yield
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: this process's turns only
            with _NO_FLOCK_LOCK:
                yield
            return
        yield
    finally:
        os.close(fd)  # releases the lock


def save_or_reuse(directory: Path, name: str, data: bytes) -> Path:
    """:func:`save_new`, unless ``name`` (or a ``stem-N`` copy) already holds exactly
    ``data``: then that file. Asking for the same frame twice, or by several calls at
    once, gives one file, not a ``-1``, ``-2``, ... copy per call: the look and the
    save are one turn in the folder, so a second caller finds the first's file
    complete (and checks its bytes) rather than the name taken."""
    try:
        with _folder_turn(directory):
            for each in candidate_names(name):
                candidate = directory / each
                same = _holds(candidate, data)
                if same is None:
                    break  # the first free name: no copy beyond it
                if same:
                    return candidate
            return save_new(directory, name, data)
    except OSError as exc:
        raise StorageError(f"Could not read {name} in {directory}: {exc.strerror or exc}") from exc
