"""Small image files (contact sheets, frames) saved beside the videos, never clobbering.

The bytes are written to a hidden temp file in the same folder, fsynced, then
hard-linked to the first free name (``name``, ``stem-1.ext``, ...): a reader never
sees a partial image under a final name, and an existing file is never replaced.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StorageError
from .leftovers import TEMP_SUFFIX, hold_temp_file
from .ondisk import read_regular
from .storage import _place_without_link as place_without_link

#: How many ``stem-N`` names to try before giving up.
MAX_TRIES = 1000

#: Where the folder cannot be locked (no ``flock``): this process's saves take turns.
_NO_FLOCK_LOCK = threading.Lock()


def link_or_reserve(tmp: Path, final: Path) -> bool:
    """Put ``tmp`` at ``final`` unless ``final`` exists; False if it does."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError:
        return place_without_link(tmp, final)  # no hard links here: the videos' way
    return True


def save_new(directory: Path, name: str, data: bytes) -> Path:
    """Save ``data`` as ``directory/name`` (or ``stem-N.ext`` when taken); return the path."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    # Named and locked as every writer's temp file is: swept after a crash only.
    tmp = directory / f".{stem}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    fd: int | None = None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        hold_temp_file(fd)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        for i in range(MAX_TRIES):
            final = directory / (name if i == 0 else f"{stem}-{i}{suffix}")
            if link_or_reserve(tmp, final):
                return final
    except OSError as exc:
        raise StorageError(f"Could not save {name} in {directory}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if fd is not None:
            os.close(fd)
    raise StorageError(f"Could not find a free name for {name} in {directory}.")


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
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    try:
        with _folder_turn(directory):
            for i in range(MAX_TRIES):
                candidate = directory / (name if i == 0 else f"{stem}-{i}{suffix}")
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
