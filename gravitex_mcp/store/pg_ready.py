"""What ``/readyz`` and the tasks gauge read from the PostgreSQL task store: each a short
connection of its own (blocking: run it in a worker thread), never the store's pool, so
a check cannot starve the calls. Raises ``psycopg.Error`` when the database cannot serve;
the message stays in the server's log."""

from __future__ import annotations

import psycopg

#: Seconds a check waits to connect before the database counts as not ready.
CONNECT_SECONDS = 2


def database_readable(dsn: str) -> None:
    """The database answers and its tasks table reads (before the first replica has
    migrated it, a plain query answering is enough)."""
    with psycopg.connect(dsn, connect_timeout=CONNECT_SECONDS, autocommit=True) as conn:
        conn.execute("SELECT 1").fetchall()
        found = conn.execute("SELECT to_regclass('tasks') IS NOT NULL").fetchone()
        if found is not None and found[0]:
            conn.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()


def task_counts(dsn: str) -> dict[str, int]:
    """How many tasks the database holds in each status (every replica's)."""
    with psycopg.connect(dsn, connect_timeout=CONNECT_SECONDS, autocommit=True) as conn:
        rows = conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}
