"""What the PostgreSQL task store keeps per user (issue 18), every replica sharing it:
whose a task id is, the seconds reserved against each user's daily budget, and the
submit slots of the rate limit.

:class:`PgUsage` holds these :class:`~gravitex_mcp.store.seam.TaskStore` methods;
:class:`~gravitex_mcp.store.postgres.PostgresTaskStore` mixes it in (its connections,
its user, its clock). A budget or a rate is checked and taken in one transaction
holding that user's advisory lock (``pg_advisory_xact_lock``), so two replicas cannot
both take what only one fits. The rate window is the database's clock (``now()``), one
clock for every replica; the budget's day is the injected one's, as the records'
stamps.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from ..domain import JournalStatus
from .pg_rows import Conn, StoreParts, encodable, one
from .records import (
    SUBMIT_WINDOW_SECONDS,
    OverBudget,
    RateLimited,
    Reservation,
    Usage,
    slots_to_take,
)


async def _lock_user(conn: Conn, what: str, user: str) -> None:
    """Hold ``user``'s lock of ``what`` until the transaction ends."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"gravitex-{what}:{user}",)
    )


class PgUsage:
    """Whose a task is, budgets and submit slots (see the module notes)."""

    async def is_foreign(self: StoreParts, task_id: str) -> bool:
        """Whether ``task_id`` is another user's task (answered as a missing one)."""
        if not encodable(task_id):
            return False
        async with self._connection() as conn:
            row = await one(
                conn,
                "SELECT 1 AS yes FROM tasks WHERE task_id = %s AND user_id <> %s LIMIT 1",
                (task_id, self._user),
            )
        return row is not None

    async def reserve_seconds(
        self: StoreParts, seconds: Sequence[float], *, budget: float | None
    ) -> Reservation | OverBudget:
        """Reserve ``seconds`` (one per job) against today's (UTC) budget, all or none,
        holding this user's budget lock."""
        wanted = [float(x) for x in seconds]
        now = self._stamp()
        day = now.date()
        async with self._connection() as conn, conn.transaction():
            await _lock_user(conn, "budget", self._user)
            row = await one(
                conn,
                "SELECT coalesce(sum(seconds), 0) AS used FROM budget_reservations"
                " WHERE user_id = %s AND day = %s",
                (self._user, day),
            )
            used = float(row["used"]) if row is not None else 0.0
            if budget is not None and used + sum(wanted) > budget:
                return OverBudget(used=used, budget=float(budget))
            ids: builtins.list[int] = []
            for amount in wanted:
                got = await one(
                    conn,
                    "INSERT INTO budget_reservations (user_id, day, seconds, created_at)"
                    " VALUES (%s, %s, %s, %s) RETURNING id",
                    (self._user, day, amount, now),
                )
                assert got is not None
                ids.append(int(got["id"]))
        return Reservation(ids=tuple(ids))

    async def release_seconds(self: StoreParts, reservation_id: int) -> None:
        """Give one job's reserved seconds back."""
        async with self._connection() as conn:
            await conn.execute(
                "DELETE FROM budget_reservations WHERE id = %s AND user_id = %s",
                (reservation_id, self._user),
            )

    async def usage(self: StoreParts) -> Usage:
        """Seconds reserved and tasks submitted today (UTC) by this user."""
        now = self._stamp()
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        async with self._connection() as conn, conn.transaction():
            seconds = await one(
                conn,
                "SELECT coalesce(sum(seconds), 0) AS n FROM budget_reservations"
                " WHERE user_id = %s AND day = %s",
                (self._user, now.date()),
            )
            tasks = await one(
                conn,
                "SELECT count(*) AS n FROM tasks WHERE user_id = %s AND created_at >= %s"
                " AND status <> %s",
                (self._user, start, JournalStatus.SUBMIT_FAILED.value),
            )
        return Usage(
            seconds_today=float(seconds["n"]) if seconds is not None else 0.0,
            tasks_today=int(tasks["n"]) if tasks is not None else 0,
        )

    async def take_submits(self: StoreParts, count: int, *, per_minute: int) -> RateLimited | None:
        """Take ``count`` submit slots of this user, all or none, holding their rate
        lock; the window is the database's ``now()``. ``None``: taken."""
        async with self._connection() as conn, conn.transaction():
            await _lock_user(conn, "submits", self._user)
            await conn.execute(
                "DELETE FROM submit_slots WHERE user_id = %s"
                " AND at <= now() - make_interval(secs => %s)",
                (self._user, SUBMIT_WINDOW_SECONDS),
            )
            row = await one(
                conn,
                "SELECT extract(epoch FROM now())::float8 AS now,"
                " coalesce(array_agg(extract(epoch FROM at)::float8 ORDER BY at), '{}') AS taken"
                " FROM submit_slots WHERE user_id = %s",
                (self._user,),
            )
            assert row is not None  # an aggregate: always one row
            got = slots_to_take(row["taken"], count, per_minute=per_minute, now=row["now"])
            if isinstance(got, RateLimited):
                return got
            await conn.execute(
                "INSERT INTO submit_slots (user_id, at)"
                " SELECT %s, now() FROM generate_series(1, %s)",
                (self._user, got),
            )
        return None
