"""Small image files (contact sheets, frames) saved beside the videos, never clobbering.

The bytes are written to a hidden temp file in the same folder, fsynced, then
hard-linked to the first free name (``name``, ``stem-1.ext``, ...): a reader never
sees a partial image under a final name, and an existing file is never replaced.
Blocking: call from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from .errors import StorageError
from .storage import _place_without_link as place_without_link

#: How many ``stem-N`` names to try before giving up.
MAX_TRIES = 1000


def _link_or_reserve(tmp: Path, final: Path) -> bool:
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
    tmp = directory / f".{stem}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        for i in range(MAX_TRIES):
            final = directory / (name if i == 0 else f"{stem}-{i}{suffix}")
            if _link_or_reserve(tmp, final):
                return final
    except OSError as exc:
        raise StorageError(f"Could not save {name} in {directory}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    raise StorageError(f"Could not find a free name for {name} in {directory}.")
