"""What ``/readyz`` and the tasks gauge read from the embedded store: the state folder's
journal (read-only, its own short-lived connection) and the output folder.

Each function blocks (run it in a worker thread) and raises ``OSError`` or
``sqlite3.Error`` when the store cannot serve; the message stays in the server's log,
never in an answer. The team backends add their database's and storage's own.
"""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from .sqlite_open import DB_FILENAME

#: How long a read waits for a writer's lock before the store counts as not ready.
BUSY_SECONDS = 2.0


def _read_only(state_dir: Path) -> sqlite3.Connection:
    # mode=ro: a check must never create (or migrate) the journal it looks at.
    uri = (state_dir / DB_FILENAME).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_SECONDS)


def journal_readable(state_dir: Path) -> None:
    """The journal opens and its tasks table reads; before it exists, the state folder
    takes a file (over SSE the journal is made at the first connection, and a load
    balancer waiting for ready would never send one)."""
    if not (state_dir / DB_FILENAME).exists():
        folder_writable(state_dir)
        return
    with closing(_read_only(state_dir)) as conn:
        conn.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()


def folder_writable(folder: Path) -> None:
    """A file can be made (and is removed again) in ``folder``."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def task_counts(state_dir: Path) -> dict[str, int]:
    """How many tasks the journal holds in each status."""
    with closing(_read_only(state_dir)) as conn:
        rows = conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}
