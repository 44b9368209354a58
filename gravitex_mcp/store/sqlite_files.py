"""Telling a damaged SQLite file, and setting it aside for a new one.

No knowledge of any schema: the task journal and the simulator's task store (the fake
upstream's own file) both set a damaged file aside this way.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from datetime import datetime
from pathlib import Path

from ..domain import as_utc


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the file is damaged or not a database (not: busy, unreadable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


_SIDE_FILES = ("-wal", "-shm", "-journal")


def move_aside(path: Path, at: datetime) -> Path:
    """Rename ``path`` and its side files to ``<name>.corrupt-<UTC time>[.N]``; the new name."""
    base = f"{path.name}.corrupt-{as_utc(at).strftime('%Y%m%dT%H%M%SZ')}"
    aside = path.with_name(base)
    counter = 0
    while any(Path(f"{aside}{s}").exists() for s in ("", *_SIDE_FILES)):
        counter += 1
        aside = path.with_name(f"{base}.{counter}")
    for suffix in ("", *_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside
