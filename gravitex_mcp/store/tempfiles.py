"""The one rule every writer in the output folder follows: a held temp file, then a
no-clobber publish under the first free name.

* A writer streams into ``.{stem}.{random}.part`` in the output folder and holds an
  exclusive ``fcntl.flock`` on it for as long as it writes (:func:`create_temp`).
  The kernel drops the lock when its holder exits, however it exits, so a temp
  file nobody holds a lock on belongs to no live process: :func:`sweep_temp_files`
  (start-up) removes those and leaves the held ones (another server sharing the
  folder is writing them).
* A finished file is published with :func:`publish_first_free`: ``name``, else
  ``stem-1.ext``, ``stem-2.ext``..., each placed with a hard link or an ``O_EXCL``
  reservation (:func:`link_or_reserve`), so an existing file is never replaced.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from ..errors import StorageError

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

#: The suffix of a writer's temporary file.
TEMP_SUFFIX: Final = ".part"

#: ``.{stem}.{random}.part``: a dot name, a stem, a random token.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_-]+\.part$", re.DOTALL)
#: ``stem-N`` names tried (``name`` included) before giving up.
MAX_UNIQUE_TRIES: Final = 10_000
_TEMP_FLAGS: Final = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)
OpenFn = Callable[[str, int, int], int]


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a writer's temporary file name."""
    return _TEMP_NAME.match(name) is not None


def create_temp(directory: Path, stem: str, *, open_file: OpenFn = os.open) -> tuple[int, Path]:
    """A new temp file for ``stem`` in ``directory`` (0o644, never an existing name),
    opened for writing and held; blocking. ``OSError`` when it cannot be made.

    The hold is best effort: on a file system without ``flock`` the file is unmarked,
    and the sweep cannot tell it from a leftover (it then leaves every file it cannot
    lock).
    """
    for _ in range(100):
        tmp = directory / f".{stem}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
        try:
            fd = open_file(str(tmp), _TEMP_FLAGS, 0o644)
        except FileExistsError:
            continue
        if sys.platform != "win32":  # no sweep there either
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd, tmp
    raise StorageError(f"Could not find a free temporary name in {directory}.")


def candidate_names(name: str) -> Iterator[str]:
    """``name``, then ``stem-1.ext``, ``stem-2.ext``, ...: the names a new file may
    take, in order (:data:`MAX_UNIQUE_TRIES` of them)."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    yield name
    for i in range(1, MAX_UNIQUE_TRIES):
        yield f"{stem}-{i}{suffix}"


def publish_first_free(
    tmp: Path, directory: Path, name: str, place: Callable[[Path, Path], bool]
) -> Path:
    """Put ``tmp``'s content under the first free name of :func:`candidate_names` in
    ``directory`` with ``place`` (False: taken); blocking. Never replaces a file."""
    for candidate in candidate_names(name):
        final = directory / candidate
        if final.parent != directory or final.name.startswith("."):
            raise StorageError(f"Refusing to save {final.name!r} outside {directory}.")
        if place(tmp, final):
            return final
    raise StorageError(
        f"Could not find a free name for {name} in {directory} after "
        f"{MAX_UNIQUE_TRIES} tries; pass another filename."
    )


def link_or_reserve(tmp: Path, final: Path) -> bool:
    """Put ``tmp`` at ``final`` unless ``final`` exists; False if it does."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    except OSError:
        return place_without_link(tmp, final)  # no hard links here
    return True


def place_without_link(tmp: Path, final: Path) -> bool:
    """:func:`link_or_reserve` where there are no hard links: reserve ``final`` with
    ``O_EXCL`` (never clobbers), then move ``tmp`` onto that empty placeholder."""
    if os.name == "nt":
        try:
            os.rename(tmp, final)  # refuses to replace an existing file on Windows
        except FileExistsError:
            return False
        return True
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(final, flags, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    try:
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(final)
        raise
    return True


def sweep_temp_files(directory: Path) -> list[Path]:
    """Remove the temporary files in ``directory`` that no process holds; blocking.

    Returns the removed paths. Held files, other names, symlinks and
    subdirectories are left alone; a file that cannot be opened or locked is kept.
    """
    if sys.platform == "win32":  # pragma: no cover - no flock to tell live from stale
        return []
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        logger.warning("could not look for leftover temporary files in %s: %s", directory, exc)
        return removed
    for entry in entries:
        if not is_temp_name(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if _remove_if_unheld(Path(entry.path)):
                removed.append(Path(entry.path))
        except OSError as exc:
            logger.warning("could not remove the leftover %s: %s", entry.path, exc)
    if removed:
        logger.info(
            "removed %d leftover temporary file(s) from %s (downloads of a process that died)",
            len(removed),
            directory,
        )
    return removed


def _remove_if_unheld(path: Path) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        # Unlink only the file that was locked, not one renamed into its place.
        opened, now = os.fstat(fd), os.lstat(path)
        if (opened.st_dev, opened.st_ino) != (now.st_dev, now.st_ino):
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)
