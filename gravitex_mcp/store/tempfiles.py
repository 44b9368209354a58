"""Temporary files left by a server that died mid-download, swept at start-up.

A writer streams into ``.{stem}.{random}.part`` in the output folder and holds an
exclusive ``fcntl.flock`` on it for as long as it writes (:func:`hold_temp_file`).
The kernel drops the lock when its holder exits, however it exits, so a temp
file nobody holds a lock on belongs to no live process: :func:`sweep_temp_files`
removes those and leaves the held ones (another server sharing the folder is
writing them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import Final

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

#: The suffix of a writer's temporary file.
TEMP_SUFFIX: Final = ".part"

#: ``.{stem}.{random}.part``: a dot name, a stem, a random token.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_-]+\.part$", re.DOTALL)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a writer's temporary file name."""
    return _TEMP_NAME.match(name) is not None


def hold_temp_file(fd: int) -> None:
    """Take the writer's exclusive lock on a temp file it just created (``fd``).

    Best effort: on a file system without ``flock`` the file is unmarked, and the
    sweep cannot tell it from a leftover (it then leaves every file it cannot lock).
    """
    if sys.platform == "win32":  # pragma: no cover - no sweep there either
        return
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


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
