"""The task journal's SQLite schema: versioned steps, and the transactions they run in.

The schema is versioned with ``PRAGMA user_version``, one step per version in
:data:`_MIGRATIONS`, applied in one transaction when the journal is opened.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import JournalError


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE tasks (
            seq            INTEGER PRIMARY KEY AUTOINCREMENT,
            local_id       TEXT    NOT NULL UNIQUE,
            task_id        TEXT    UNIQUE,
            model          TEXT    NOT NULL,
            family         TEXT    NOT NULL,
            arguments      TEXT    NOT NULL,
            status         TEXT    NOT NULL,
            raw_status     TEXT,
            url            TEXT,
            url_expires_at TEXT,
            error_code     TEXT,
            error_message  TEXT,
            saved_path     TEXT,
            size_bytes     INTEGER,
            sha256         TEXT,
            created_at     TEXT    NOT NULL,
            updated_at     TEXT    NOT NULL,
            checked_at     TEXT,
            downloaded_at  TEXT
        )
        """
    )
    conn.execute("CREATE INDEX tasks_by_created ON tasks (created_at, seq)")
    conn.execute("CREATE INDEX tasks_by_status ON tasks (status, created_at, seq)")
    conn.execute(
        """
        CREATE TABLE task_events (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            local_id TEXT NOT NULL REFERENCES tasks (local_id) ON DELETE CASCADE,
            status   TEXT NOT NULL,
            at       TEXT NOT NULL,
            detail   TEXT
        )
        """
    )
    conn.execute("CREATE INDEX task_events_by_task ON task_events (local_id, id)")


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    # Never paying twice: which arguments a row was submitted with (a digest, to spot
    # repeats), and the idempotency keys, each claimed by exactly one submission.
    conn.execute("ALTER TABLE tasks ADD COLUMN arguments_hash TEXT")
    conn.execute("CREATE INDEX tasks_by_arguments ON tasks (arguments_hash, created_at)")
    conn.execute(
        """
        CREATE TABLE idempotency_keys (
            key            TEXT PRIMARY KEY,
            arguments_hash TEXT NOT NULL,
            local_id       TEXT NOT NULL REFERENCES tasks (local_id) ON DELETE CASCADE,
            created_at     TEXT NOT NULL
        )
        """
    )


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    # What is on disk is checked, not trusted: the saved file's identity (device, inode,
    # size, mtime, ctime) lets a reuse skip hashing it again while it is untouched.
    # Rows saved before have none: their files are hashed once when next reused.
    conn.execute("ALTER TABLE tasks ADD COLUMN saved_identity TEXT")


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    # Many users on one server: every task is one user's (rows from before belong to
    # the local user), an idempotency key is a key of one user (the same string from
    # two users is two keys), and the seconds each user reserved against their daily
    # budget (one row per job; a submit refused upstream deletes its row).
    conn.execute("ALTER TABLE tasks ADD COLUMN user_id TEXT NOT NULL DEFAULT 'local'")
    conn.execute("CREATE INDEX tasks_by_user ON tasks (user_id, created_at, seq)")
    conn.execute("CREATE INDEX tasks_by_user_status ON tasks (user_id, status, created_at, seq)")
    conn.execute(
        "CREATE INDEX tasks_by_user_arguments ON tasks (user_id, arguments_hash, created_at)"
    )
    conn.execute(
        """
        CREATE TABLE user_idempotency_keys (
            user_id        TEXT NOT NULL,
            key            TEXT NOT NULL,
            arguments_hash TEXT NOT NULL,
            local_id       TEXT NOT NULL REFERENCES tasks (local_id) ON DELETE CASCADE,
            created_at     TEXT NOT NULL,
            PRIMARY KEY (user_id, key)
        )
        """
    )
    conn.execute(
        "INSERT INTO user_idempotency_keys (user_id, key, arguments_hash, local_id, created_at) "
        "SELECT 'local', key, arguments_hash, local_id, created_at FROM idempotency_keys"
    )
    conn.execute("DROP TABLE idempotency_keys")
    conn.execute(
        """
        CREATE TABLE budget_reservations (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id    TEXT NOT NULL,
            day        TEXT NOT NULL,
            seconds    REAL NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX budget_by_user_day ON budget_reservations (user_id, day)")


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    # The submit rate limit shared by every process on the journal: one row per submit
    # slot a user took (at: epoch seconds by the journal's clock); rows that left the
    # window are deleted as it moves.
    conn.execute(
        """
        CREATE TABLE submit_slots (
            id      INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL,
            at      REAL NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX submit_slots_by_user ON submit_slots (user_id, at)")


_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_0_to_1,
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
]
"""``_MIGRATIONS[n]`` takes a database from ``user_version`` n to n + 1.

To change the schema, append a step; never edit a released one.
"""


def schema_version() -> int:
    """The ``user_version`` this code writes."""
    return len(_MIGRATIONS)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def write(conn: sqlite3.Connection) -> contextlib.AbstractContextManager[None]:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a
    # read inside the transaction never needs a lock upgrade.
    return _transaction(conn, "BEGIN IMMEDIATE")


def read(conn: sqlite3.Connection) -> contextlib.AbstractContextManager[None]:
    return _transaction(conn, "BEGIN")


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    target = schema_version()
    with write(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > target:
            raise JournalError(
                f"The task journal {path} has schema version {version}, newer than this "
                f"gravitex-mcp understands ({target}): upgrade gravitex-mcp, or point "
                "GRAVITEX_STATE_DIR at another directory."
            )
        for step in range(version, target):
            _MIGRATIONS[step](conn)
        if version != target:
            conn.execute(f"PRAGMA user_version = {int(target)}")
