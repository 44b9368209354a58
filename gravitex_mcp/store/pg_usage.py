"""What the PostgreSQL task store keeps per user (issue 18), every replica sharing it:
whose a task id is, the seconds reserved against each user's daily budget, and the
submit slots of the rate limit.

:class:`PgUsage` holds these :class:`~gravitex_mcp.store.seam.TaskStore` methods;
:class:`~gravitex_mcp.store.postgres.PostgresTaskStore` mixes it in (its connections,
its user, its clock). A budget or a rate is checked and taken in one transaction
holding that user's advisory lock (``pg_advisory_xact_lock``), so two replicas cannot
both take what only one fits (seconds with no budget to fit: one statement, no lock).
The rate window is the database's clock, one clock for every replica; the
budget's day is the injected one's, as the records' stamps.
"""

from __future__ import annotations

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

#: The seconds reserved (``%(seconds)s``, in job order: ascending ids) if they fit
#: ``%(budget)s`` (NULL: no cap, and nothing summed), and what was used before.
_RESERVE = """
WITH used AS (
    SELECT coalesce(sum(seconds), 0) AS n FROM budget_reservations
    WHERE user_id = %(user)s AND day = %(day)s AND %(budget)s::float8 IS NOT NULL
),
fits AS (
    SELECT %(budget)s IS NULL OR n + (SELECT coalesce(sum(x), 0)
        FROM unnest(%(seconds)s::float8[]) x) <= %(budget)s AS yes FROM used
),
taken AS (
    INSERT INTO budget_reservations (user_id, day, seconds, created_at)
    SELECT %(user)s, %(day)s, s, %(at)s FROM unnest(%(seconds)s) WITH ORDINALITY AS j (s, n)
    WHERE (SELECT yes FROM fits) ORDER BY j.n
    RETURNING id
)
SELECT (SELECT n FROM used) AS used, (SELECT yes FROM fits) AS fits,
    (SELECT array_agg(id ORDER BY id) FROM taken) AS ids
"""

#: Today's seconds reserved and tasks submitted (refused ones aside), one snapshot.
_USAGE = (
    "SELECT (SELECT coalesce(sum(seconds), 0) FROM budget_reservations"
    " WHERE user_id = %(user)s AND day = %(day)s) AS seconds,"
    " (SELECT count(*) FROM tasks WHERE user_id = %(user)s AND created_at >= %(start)s"
    " AND status <> %(refused)s) AS tasks"
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
        """Reserve ``seconds`` (one per job) against today's (UTC) budget, all or none.
        With no budget there is nothing to check: one statement. With one, the check
        and the rows are one statement under this user's budget lock, its transaction
        sent in one pipeline, so the lock is held for the database's work, not for
        round trips to a replica whose loop is busy."""
        now = self._stamp()
        params = {
            "user": self._user,
            "day": now.date(),
            "at": now,
            "seconds": [float(x) for x in seconds],
            "budget": None if budget is None else float(budget),
        }
        async with self._connection() as conn:
            if budget is None:
                cur = await conn.execute(_RESERVE.encode(), params)
            else:
                async with conn.pipeline(), conn.transaction():
                    await _lock_user(conn, "budget", self._user)
                    cur = await conn.execute(_RESERVE.encode(), params)
            row = await cur.fetchone()
        assert row is not None  # aggregates: always one row
        if budget is not None and not row["fits"]:
            return OverBudget(used=float(row["used"]), budget=float(budget))
        return Reservation(ids=tuple(int(i) for i in row["ids"] or ()))

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
        params = {
            "user": self._user,
            "day": now.date(),
            "start": start,
            "refused": JournalStatus.SUBMIT_FAILED.value,
        }
        async with self._reading() as conn:
            row = await one(conn, _USAGE, params)
        assert row is not None
        return Usage(seconds_today=float(row["seconds"]), tasks_today=int(row["tasks"]))

    async def take_submits(self: StoreParts, count: int, *, per_minute: int) -> RateLimited | None:
        """Take ``count`` submit slots of this user, all or none, holding their rate
        lock; the window is the database's clock once the lock is held
        (``statement_timestamp()``: a transaction's ``now()`` is when it began, before
        it waited, maybe before the slots it then finds were taken). ``None``: taken."""
        async with self._connection() as conn, conn.transaction():
            await _lock_user(conn, "submits", self._user)
            await conn.execute(
                "DELETE FROM submit_slots WHERE user_id = %s"
                " AND at <= statement_timestamp() - make_interval(secs => %s)",
                (self._user, SUBMIT_WINDOW_SECONDS),
            )
            row = await one(
                conn,
                "SELECT extract(epoch FROM statement_timestamp())::float8 AS now,"
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
                " SELECT %s, statement_timestamp() FROM generate_series(1, %s)",
                (self._user, got),
            )
        return None
