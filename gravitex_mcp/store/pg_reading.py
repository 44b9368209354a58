"""Reading the PostgreSQL task store: one task with its history, the newest tasks, and
task ids by prefix (completion), always of the store's user.

:class:`PgReading` holds these :class:`~gravitex_mcp.store.seam.TaskStore` methods;
:class:`~gravitex_mcp.store.postgres.PostgresTaskStore` mixes it in.
"""

from __future__ import annotations

import builtins

from .pg_rows import (
    TARGET,
    StoreParts,
    encodable,
    one,
    record,
)
from .records import TaskEvent, TaskRecord
from .seam import DEFAULT_LIST_LIMIT, checked_listing

#: A task with its history in one statement: the events' columns as arrays, oldest first.
_GET = (
    "SELECT t.*, e.statuses, e.ats, e.details FROM tasks t, LATERAL (SELECT"  # noqa: S608
    " array_agg(status ORDER BY id) AS statuses, array_agg(at ORDER BY id) AS ats,"
    " array_agg(detail ORDER BY id) AS details FROM task_events WHERE local_id = t.local_id) e"
    f" WHERE t.local_id = ({TARGET})"
)
#: Upstream ids by prefix: how many match, and the newest ``limit`` (one snapshot).
_PREFIXED = (
    "WITH m AS (SELECT task_id, created_at, seq FROM tasks"
    " WHERE user_id = %(user)s AND task_id LIKE %(pattern)s)"
    " SELECT (SELECT count(*) FROM m) AS n, (SELECT array_agg(task_id ORDER BY created_at DESC,"
    " seq DESC) FROM (SELECT * FROM m ORDER BY created_at DESC, seq DESC LIMIT %(limit)s) x) AS ids"
)


class PgReading:
    """A task, the newest tasks, task ids by prefix (see the module notes)."""

    async def get(self: StoreParts, task_id: str) -> TaskRecord | None:
        """One entry with its status history, by upstream task id or local id (one
        statement: the row, its events as arrays). On the writers' connections: following
        a task reads it at every change, and a listing must not queue behind that."""
        if not encodable(task_id):
            return None
        async with self._connection() as conn:
            row = await one(conn, _GET, {"id": task_id, "user": self._user})
        if row is None:
            return None
        history = zip(row["statuses"] or (), row["ats"] or (), row["details"] or (), strict=True)
        events = [TaskEvent(status=s, at=at, detail=d) for s, at, d in history]
        return record(row, events)

    async def list(
        self: StoreParts, *, limit: int = DEFAULT_LIST_LIMIT, status: str | None = None
    ) -> builtins.list[TaskRecord]:
        """The newest entries first, optionally of one status (the journal's checks)."""
        wanted = checked_listing(limit, status)
        async with self._reading() as conn:
            if wanted is None:
                cur = await conn.execute(
                    "SELECT * FROM tasks WHERE user_id = %s"
                    " ORDER BY created_at DESC, seq DESC LIMIT %s",
                    (self._user, limit),
                )
            else:
                cur = await conn.execute(
                    "SELECT * FROM tasks WHERE user_id = %s AND status = %s"
                    " ORDER BY created_at DESC, seq DESC LIMIT %s",
                    (self._user, wanted.value, limit),
                )
            return [record(row) for row in await cur.fetchall()]

    async def task_ids_starting_with(
        self: StoreParts, prefix: str, *, limit: int
    ) -> tuple[builtins.list[str], int]:
        """Upstream task ids starting with ``prefix`` (case-sensitive), newest first:
        at most ``limit`` of them, and how many match in all."""
        if not encodable(prefix):
            return [], 0
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        async with self._reading() as conn:
            row = await one(
                conn, _PREFIXED, {"user": self._user, "pattern": pattern, "limit": max(0, limit)}
            )
        assert row is not None  # aggregates: always one row
        return [str(i) for i in row["ids"] or ()], int(row["n"])
