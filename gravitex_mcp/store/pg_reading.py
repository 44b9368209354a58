"""Reading the PostgreSQL task store: one task with its history, the newest tasks, and
task ids by prefix (completion), always of the store's user.

:class:`PgReading` holds these :class:`~gravitex_mcp.store.seam.TaskStore` methods;
:class:`~gravitex_mcp.store.postgres.PostgresTaskStore` mixes it in.
"""

from __future__ import annotations

import builtins

from .pg_rows import (
    DEFAULT_LIST_LIMIT,
    FIND,
    StoreParts,
    checked_listing,
    encodable,
    one,
    record,
)
from .records import TaskEvent, TaskRecord


class PgReading:
    """A task, the newest tasks, task ids by prefix (see the module notes)."""

    async def get(self: StoreParts, task_id: str) -> TaskRecord | None:
        """One entry with its status history, by upstream task id or local id."""
        if not encodable(task_id):
            return None
        async with self._connection() as conn, conn.transaction():
            row = await one(conn, FIND, (task_id, task_id, self._user, task_id))
            if row is None:
                return None
            cur = await conn.execute(
                "SELECT status, at, detail FROM task_events WHERE local_id = %s ORDER BY id",
                (row["local_id"],),
            )
            events = [TaskEvent.model_validate(dict(e)) for e in await cur.fetchall()]
        return record(row, events)

    async def list(
        self: StoreParts, *, limit: int = DEFAULT_LIST_LIMIT, status: str | None = None
    ) -> builtins.list[TaskRecord]:
        """The newest entries first, optionally of one status (the journal's checks)."""
        wanted = checked_listing(limit, status)
        async with self._connection() as conn:
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
        matching = "FROM tasks WHERE user_id = %s AND task_id LIKE %s"
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            total = await one(conn, f"SELECT count(*) AS n {matching}", (self._user, pattern))
            cur = await conn.execute(
                f"SELECT task_id {matching} ORDER BY created_at DESC, seq DESC LIMIT %s".encode(),
                (self._user, pattern, max(0, limit)),
            )
            ids = [str(row["task_id"]) for row in await cur.fetchall()]
        return ids, int(total["n"]) if total is not None else 0
