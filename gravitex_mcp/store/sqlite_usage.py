"""What the SQLite task journal keeps per user (issue 18), every process on the state
folder sharing it: whose a task id is, the seconds reserved against each user's daily
budget, and the submit slots of the rate limit.

:class:`SqliteUsage` holds these :class:`~gravitex_mcp.store.seam.TaskStore` methods;
:class:`~gravitex_mcp.store.journal.Journal` mixes it in (its connections, its user,
its clock). A budget or a rate is checked and taken in one write transaction
(``BEGIN IMMEDIATE``), so two processes cannot both take what only one fits. The day
and the rate window are the journal's clock (injected: tests move it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, time
from typing import Protocol, TypeVar

from ..domain import JournalStatus, as_utc
from .records import (
    SUBMIT_WINDOW_SECONDS,
    OverBudget,
    RateLimited,
    Reservation,
    Usage,
    slots_to_take,
)
from .sqlite_rows import iso
from .sqlite_schema import read as _read
from .sqlite_schema import write as _write

_T = TypeVar("_T")


class _Journal(Protocol):
    """What the methods below use of the journal they are mixed into."""

    _user: str
    _now: Callable[[], datetime]

    async def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T: ...

    async def _run_read(
        self, operation: Callable[[sqlite3.Connection], _T], *, listing: bool = False
    ) -> _T: ...


def _today(now: datetime) -> tuple[str, str]:
    """The UTC date of ``now``, and when that day began (iso)."""
    now = as_utc(now)
    return now.date().isoformat(), iso(datetime.combine(now.date(), time(), now.tzinfo))


class SqliteUsage:
    """Whose a task is, budgets and submit slots (see the module notes)."""

    async def is_foreign(self: _Journal, task_id: str) -> bool:
        """Whether ``task_id`` (upstream id) is another user's task: answered as an id
        that does not exist, and never asked upstream."""
        user = self._user

        def operation(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM tasks WHERE task_id = ? AND user_id <> ? LIMIT 1", (task_id, user)
            ).fetchone()
            return row is not None

        return await self._run_read(operation)

    async def reserve_seconds(
        self: _Journal, seconds: Sequence[float], *, budget: float | None
    ) -> Reservation | OverBudget:
        """Reserve ``seconds`` (one entry per job) against today's (UTC) ``budget`` of
        this user, all or nothing, in one write transaction (``BEGIN IMMEDIATE``: two
        processes cannot both fit a budget only one fits). ``budget`` None: no cap,
        the seconds are counted all the same (:meth:`usage`)."""
        user = self._user
        wanted = [float(s) for s in seconds]

        def operation(conn: sqlite3.Connection) -> Reservation | OverBudget:
            now = self._now()
            day, _ = _today(now)
            at = iso(now)
            with _write(conn):
                used = float(
                    conn.execute(
                        "SELECT coalesce(sum(seconds), 0) FROM budget_reservations "
                        "WHERE user_id = ? AND day = ?",
                        (user, day),
                    ).fetchone()[0]
                )
                if budget is not None and used + sum(wanted) > budget:
                    return OverBudget(used=used, budget=float(budget))
                ids = [
                    int(
                        conn.execute(
                            "INSERT INTO budget_reservations (user_id, day, seconds, created_at) "
                            "VALUES (?, ?, ?, ?) RETURNING id",
                            (user, day, amount, at),
                        ).fetchone()[0]
                    )
                    for amount in wanted
                ]
            return Reservation(ids=tuple(ids))

        return await self._run(operation)

    async def release_seconds(self: _Journal, reservation_id: int) -> None:
        """Give one job's reserved seconds back (its submit was refused, or replayed)."""
        user = self._user

        def operation(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "DELETE FROM budget_reservations WHERE id = ? AND user_id = ?",
                    (reservation_id, user),
                )

        await self._run(operation)

    async def usage(self: _Journal) -> Usage:
        """Seconds reserved today (UTC) by this user, and the tasks they submitted today."""
        user = self._user

        def operation(conn: sqlite3.Connection) -> Usage:
            day, start = _today(self._now())
            with _read(conn):
                seconds = conn.execute(
                    "SELECT coalesce(sum(seconds), 0) FROM budget_reservations "
                    "WHERE user_id = ? AND day = ?",
                    (user, day),
                ).fetchone()[0]
                tasks = conn.execute(
                    "SELECT count(*) FROM tasks WHERE user_id = ? AND created_at >= ? "
                    "AND status <> ?",
                    (user, start, JournalStatus.SUBMIT_FAILED.value),
                ).fetchone()[0]
            return Usage(seconds_today=float(seconds), tasks_today=int(tasks))

        return await self._run_read(operation, listing=True)

    async def take_submits(self: _Journal, count: int, *, per_minute: int) -> RateLimited | None:
        """Take ``count`` submit slots of this user, all or none, in one write
        transaction; the window is the journal's clock. ``None``: taken."""
        user = self._user

        def operation(conn: sqlite3.Connection) -> RateLimited | None:
            now = as_utc(self._now()).timestamp()
            with _write(conn):
                conn.execute(
                    "DELETE FROM submit_slots WHERE user_id = ? AND at <= ?",
                    (user, now - SUBMIT_WINDOW_SECONDS),
                )
                taken = [
                    float(row[0])
                    for row in conn.execute(
                        "SELECT at FROM submit_slots WHERE user_id = ? ORDER BY at", (user,)
                    )
                ]
                got = slots_to_take(taken, count, per_minute=per_minute, now=now)
                if isinstance(got, RateLimited):
                    return got
                conn.executemany(
                    "INSERT INTO submit_slots (user_id, at) VALUES (?, ?)", [(user, now)] * got
                )
            return None

        return await self._run(operation)
