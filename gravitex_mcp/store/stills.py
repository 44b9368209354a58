"""Small image files (contact sheets, frames) saved beside the videos, never clobbering.

The bytes are written to a held temp file in the same folder, fsynced, then
published under the first free name (``name``, ``stem-1.ext``, ...; the rule is
:mod:`.tempfiles`'): a reader never sees a partial image under a final name, and an
existing file is never replaced.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StorageError
from .ondisk import read_regular
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
        return read_regular(path, limit=len(data)) == data  # a longer file: EFBIG
    except FileNotFoundError:
        return None
    except OSError:
        return False  # a symlink, a folder, unreadable: not ours to reuse


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


def find_still(
    directory: Path, name: str, *, made_ns: int, limit: int, usable: Callable[[bytes], bool]
) -> tuple[Path, bytes] | None:
    """The newest still :func:`save_new` saved as ``name`` (or a ``stem-N`` copy) at or
    after ``made_ns``, that is a regular file of at most ``limit`` bytes and ``usable``.

    An older one belongs to an earlier file of the same name as the video it was made
    of (one deleted, then a new video saved under its name): it is never returned.
    """
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    pattern = glob.escape(stem) + (f"-*.{ext}" if ext else "-*")
    found = []
    for path in [directory / name, *directory.glob(pattern)]:
        try:
            info = path.lstat()  # not followed: a symlink under a still's name is not ours
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mtime_ns >= made_ns:
            found.append((info.st_mtime_ns, path))
    for _, path in sorted(found, reverse=True):
        try:
            data = read_regular(path, limit=limit)
        except OSError:
            continue  # swapped since the listing: not this one
        if usable(data):
            return path, data
    return None
