"""The task store on PostgreSQL, shared by every replica of a team's server (issue 17).

The same behaviour as the SQLite :class:`~gravitex_mcp.store.journal.Journal`, on a
database many replicas use at once:

* **Rows as the journal's**: ``tasks`` with their ``task_events`` history, and
  ``idempotency_keys`` whose primary key is the claim: ``INSERT ... ON CONFLICT DO
  NOTHING RETURNING`` (the loser of a race finds the winner's submission).
* **Leases are rows** ``(task_id, kind, holder, token, expires_at)``: taken with
  ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE expires_at < now()``, renewed by
  a heartbeat every third of their time while held, deleted on release. A replica
  that dies stops renewing, so its leases lapse within :data:`DEFAULT_LEASE_SECONDS`
  and the work is taken over. Each take gets a larger fencing ``token``. A claimed
  key's submit holds a ``submit`` lease on its local id: a ``submitting`` holder
  whose lease lapsed was left by a dead replica, and its key's next claim answers
  "outcome unknown" (the journal tells the same from its flock files).
* **Expiry is the database's clock** (``now()``), one clock for every replica; the
  injected :class:`~gravitex_mcp.store.seam.Clock` only paces the renewals and waits,
  and the injected ``now`` stamps the records (as the journal's does).
* **Changes are notified**: a recorded status sends ``NOTIFY`` on
  :data:`~gravitex_mcp.store.pg_schema.CHANGES_CHANNEL`; :meth:`wait_for_change` and
  :meth:`changes` let a replica's waiters wake without asking the upstream.
* **A database that is down, restarting or failing over** raises
  :class:`~gravitex_mcp.errors.StoreUnavailableError` (retryable); the pool checks
  each connection before lending it, so calls work again once it is back.

Open it with ``async with PostgresTaskStore.open(dsn) as store`` (start-up: pool,
migrations, heartbeat and listener; shutdown: its leases released, pool closed).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from anyio.streams.memory import MemoryObjectReceiveStream
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from ..domain import LOCAL_USER, JournalStatus, TaskStatus, as_utc, utc_now
from ..errors import JournalError, StoreUnavailableError
from ..metrics import Metrics
from .pg_changes import ChangeFeed, TaskChange, notify
from .pg_leases import SUBMIT_ALIVE, SUBMIT_LEASE, LeaseRows
from .pg_rows import (
    BY_LOCAL,
    DEFAULT_LIST_LIMIT,
    FIND,
    OBSERVED,
    Conn,
    add_event,
    checked_listing,
    clean_text,
    encodable,
    first_line,
    one,
    record,
    where,
)
from .pg_schema import migrate
from .records import (
    KeyClaim,
    OverBudget,
    Reservation,
    TaskEvent,
    TaskRecord,
    Usage,
    parse_url_expiry,
)
from .seam import Clock, Lease, LeaseBusy, LeaseKind, RealClock, UserView
from .sqlite_rows import encode_arguments, event_detail

logger = logging.getLogger(__name__)

#: How long a lease lasts unless renewed; a dead replica's work is taken over after it.
DEFAULT_LEASE_SECONDS = 15.0
MAX_LEASE_SECONDS = 20.0
DEFAULT_POOL_MIN = 1
DEFAULT_POOL_MAX = 10
#: How long a call waits for a connection (the database down: then it says so).
DEFAULT_POOL_TIMEOUT = 5.0
_STOPPED_MID_SUBMIT = "The server stopped before the submit answered; a task may exist upstream."

_Changes = MemoryObjectReceiveStream[TaskChange]
#: The claim: the key's primary key lets one submission in.
_CLAIM = (
    "INSERT INTO idempotency_keys (key, arguments_hash, local_id, created_at, user_id)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, key) DO NOTHING RETURNING key"
)
#: A refused submission's key (no task exists) goes to the next claim.
_RECLAIM = (
    "UPDATE idempotency_keys SET arguments_hash = %s, local_id = %s, created_at = %s"
    " WHERE key = %s AND user_id = %s RETURNING key"
)


class PostgresTaskStore(UserView):
    """The task store on PostgreSQL. Build it with :meth:`open`; share one per process."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Conn],
        *,
        dsn: str,
        now: Callable[[], datetime],
        clock: Clock,
        lease_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool: AsyncConnectionPool[Conn] | None = pool
        self._dsn = dsn
        self._where = where(dsn)
        self._now = now
        self._clock = clock
        self._metrics = metrics
        self._leases = LeaseRows(
            self._connection, clock=clock, lease_seconds=lease_seconds, metrics=metrics
        )
        self._feed = ChangeFeed(dsn, clock=clock, metrics=metrics)
        self._user = LOCAL_USER

    # --- users

    async def is_foreign(self, task_id: str) -> bool:
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

    # --- budgets

    async def reserve_seconds(
        self, seconds: Sequence[float], *, budget: float | None
    ) -> Reservation | OverBudget:
        """Reserve ``seconds`` (one per job) against today's (UTC) budget, all or none:
        one transaction holding this user's budget lock (``pg_advisory_xact_lock``), so
        two replicas cannot both fit a budget only one fits."""
        wanted = [float(x) for x in seconds]
        now = self._stamp()
        day = now.date()
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"gravitex-budget:{self._user}",),
            )
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

    async def release_seconds(self, reservation_id: int) -> None:
        """Give one job's reserved seconds back."""
        async with self._connection() as conn:
            await conn.execute(
                "DELETE FROM budget_reservations WHERE id = %s AND user_id = %s",
                (reservation_id, self._user),
            )

    async def usage(self) -> Usage:
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

    @property
    def leases(self) -> LeaseRows:
        """This replica's leases (its holder name, lease time, renewals)."""
        return self._leases

    @property
    def feed(self) -> ChangeFeed:
        """This replica's LISTEN connection and its waiters."""
        return self._feed

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = DEFAULT_POOL_MIN,
        max_size: int = DEFAULT_POOL_MAX,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        now: Callable[[], datetime] = utc_now,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
    ) -> AsyncIterator[PostgresTaskStore]:
        """Open the pool, migrate the schema, run the heartbeat and the listener; at
        exit release this replica's leases and close the pool. A database that cannot
        be reached raises :class:`StoreUnavailableError`. ``metrics`` counts lease
        takeovers and database errors (by operation: connection, statement, listen)."""
        if not 0 < lease_seconds <= MAX_LEASE_SECONDS:
            raise ValueError(f"lease_seconds must be in (0, {MAX_LEASE_SECONDS:g}]")
        if not 1 <= min_size <= max_size:
            raise ValueError("the pool needs 1 <= min_size <= max_size")
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=pool_timeout,
            open=False,
            connection_class=AsyncConnection[DictRow],
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5},
            check=AsyncConnectionPool.check_connection,
            name="gravitex-tasks",
        )
        at = where(dsn)
        try:
            await pool.open(wait=True, timeout=pool_timeout)
        except psycopg.OperationalError as exc:
            await pool.close()
            logger.error("task database %s unreachable at start-up: %s", at, first_line(exc))
            raise StoreUnavailableError(f"{at}: {first_line(exc)}") from exc
        store = cls(
            pool,
            dsn=dsn,
            now=now,
            clock=clock or RealClock(),
            lease_seconds=lease_seconds,
            metrics=metrics,
        )
        try:
            async with store._connection() as conn:
                await migrate(conn, where=at)
            failed: BaseException | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(store._leases.heartbeat)
                tg.start_soon(store._feed.listen)
                try:
                    yield store
                except BaseException as exc:  # noqa: BLE001 - raised as is below, ungrouped
                    failed = exc
                finally:
                    tg.cancel_scope.cancel()
            if failed is not None:
                raise failed
        finally:
            with anyio.CancelScope(shield=True):
                await store._leases.release_all()
                store._pool = None
                await pool.close()

    # --- plumbing

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Conn]:
        pool = self._pool
        if pool is None:
            raise JournalError(f"The task database {self._where} is closed.")
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:  # PoolTimeout too: down, restarting
            logger.warning("task database %s unavailable: %s", self._where, first_line(exc))
            self._count_error("connection")
            raise StoreUnavailableError(f"{self._where}: {first_line(exc)}") from exc
        except psycopg.Error as exc:
            self._count_error("statement")
            raise JournalError(f"Task database {self._where}: {first_line(exc)}") from exc

    def _count_error(self, operation: str) -> None:
        if self._metrics is not None:
            self._metrics.database_errors.labels(operation).inc()

    def _stamp(self) -> datetime:
        return as_utc(self._now())

    # --- leases

    async def try_lease(self, task_id: str, kind: LeaseKind) -> Lease | LeaseBusy:
        """The lease of ``task_id``: a row this replica holds (renewing it) until
        released; else who holds it. A row whose holder stopped renewing is taken over."""
        return await self._leases.take(task_id, str(kind))

    # --- changes across replicas

    async def wait_for_change(self, task_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Whether any replica recorded a change of ``task_id`` (upstream or local id)
        within ``timeout`` s (woken by ``NOTIFY``; :attr:`feed` tells which change)."""
        return await self._feed.wait_for_change(task_id, timeout) is not None

    def changes(
        self,
    ) -> contextlib.AbstractAsyncContextManager[MemoryObjectReceiveStream[TaskChange]]:
        """Every change any replica records while the block runs: ``async with
        store.changes() as stream: async for change in stream``."""
        return self._feed.changes()

    # --- submissions

    async def begin_submission(
        self,
        *,
        model: str,
        family: str,
        arguments: Mapping[str, Any],
        arguments_hash: str | None = None,
    ) -> str:
        """Record a submission about to be sent; its local id (see the journal's)."""
        encoded = await anyio.to_thread.run_sync(encode_arguments, dict(arguments))
        local_id = str(uuid.uuid4())
        async with self._connection() as conn, conn.transaction():
            await self._insert(conn, local_id, model, family, encoded, arguments_hash)
        return local_id

    async def _insert(
        self,
        conn: Conn,
        local_id: str,
        model: str,
        family: str,
        encoded: str,
        arguments_hash: str | None,
    ) -> datetime:
        at = self._stamp()
        await conn.execute(
            "INSERT INTO tasks (local_id, model, family, arguments, arguments_hash, status,"
            " created_at, updated_at, user_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                local_id,
                str(model),
                str(family),
                encoded,
                arguments_hash,
                "submitting",
                at,
                at,
                self._user,
            ),
        )
        await add_event(conn, local_id, JournalStatus.SUBMITTING, at, None)
        return at

    async def _mark_unknown(self, conn: Conn, local_id: str) -> None:
        at = self._stamp()
        await conn.execute(
            "UPDATE tasks SET status = %s, error_message = %s, updated_at = %s WHERE local_id = %s",
            (JournalStatus.SUBMIT_UNKNOWN.value, _STOPPED_MID_SUBMIT, at, local_id),
        )
        await add_event(conn, local_id, JournalStatus.SUBMIT_UNKNOWN, at, _STOPPED_MID_SUBMIT)

    async def claim_key(
        self,
        key: str,
        *,
        arguments_hash: str,
        model: str,
        family: str,
        arguments: Mapping[str, Any],
    ) -> KeyClaim:
        """Claim idempotency ``key`` and begin the submission, or find its holder (a
        holder still ``submitting`` whose submit lease lapsed is marked
        ``submit_unknown`` first). See :meth:`Journal.claim_key`."""
        encoded = await anyio.to_thread.run_sync(encode_arguments, dict(arguments))
        find_key = (
            "SELECT k.arguments_hash AS key_hash, t.* FROM idempotency_keys k"
            " JOIN tasks t ON t.local_id = k.local_id WHERE k.key = %s AND k.user_id = %s"
            " FOR UPDATE OF k, t"
        )
        for _ in range(5):
            try:
                return await self._claim(key, find_key, arguments_hash, model, family, encoded)
            except _RetryError:
                continue
        raise JournalError(f"Could not claim idempotency key {key!r}: it kept changing hands.")

    async def _claim(
        self,
        key: str,
        find_key: str,
        arguments_hash: str,
        model: str,
        family: str,
        encoded: str,
    ) -> KeyClaim:
        local_id = str(uuid.uuid4())
        committed = False
        try:
            async with self._connection() as conn:
                async with conn.transaction():
                    held = await one(conn, find_key, (key, self._user))
                    if held is not None and held["status"] == JournalStatus.SUBMITTING.value:
                        alive = await one(conn, SUBMIT_ALIVE, (held["local_id"],))
                        if alive is None:
                            await self._mark_unknown(conn, held["local_id"])
                            held = await one(conn, find_key, (key, self._user))
                    if held is not None and held["status"] != JournalStatus.SUBMIT_FAILED.value:
                        holder = record(held)
                        return KeyClaim(
                            local_id=None, holder=holder, arguments_hash=held["key_hash"]
                        )
                    at = await self._insert(conn, local_id, model, family, encoded, arguments_hash)
                    # The lease is in the same transaction: whoever sees the row finds it held.
                    token = await self._leases.take_submit(conn, local_id)
                    if held is not None:  # submit_failed: no task exists, the key is free again
                        claimed = await one(
                            conn, _RECLAIM, (arguments_hash, local_id, at, key, self._user)
                        )
                    else:
                        claimed = await one(
                            conn, _CLAIM, (key, arguments_hash, local_id, at, self._user)
                        )
                    if claimed is None:
                        # Another replica claimed it meanwhile: undo ours, then find its holder.
                        raise _RetryError
                    # Renewed from before the commit: a cancellation after it cannot drop it.
                    self._leases.hold_submit(local_id, token)
                committed = True
        except BaseException:
            if not committed:
                self._leases.end_submit(local_id)  # the row was not written
            raise
        return KeyClaim(local_id=local_id, holder=None, arguments_hash=arguments_hash)

    async def recent_with_arguments(
        self, arguments_hash: str, *, within: timedelta
    ) -> builtins.list[TaskRecord]:
        """Submissions with these arguments created in the last ``within``, newest first."""
        cutoff = self._stamp() - within
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT * FROM tasks WHERE user_id = %s AND arguments_hash = %s"
                " AND created_at >= %s ORDER BY created_at DESC, seq DESC LIMIT 5",
                (self._user, arguments_hash, cutoff),
            )
            return [record(row) for row in await cur.fetchall()]

    async def complete_submission(
        self, local_id: str, *, task_id: str, status: TaskStatus | JournalStatus
    ) -> TaskRecord:
        """The submit answered with ``task_id`` (also after :meth:`fail_submission`)."""
        new_status = JournalStatus(status)
        try:
            async with self._connection() as conn, conn.transaction():
                row = await one(conn, BY_LOCAL + " FOR UPDATE", (local_id, self._user))
                if row is None:
                    raise JournalError(f"No submission {local_id!r} in the task journal.")
                if row["task_id"] not in (None, task_id):
                    raise JournalError(
                        f"Submission {local_id!r} already has task id {row['task_id']!r}."
                    )
                other = await one(
                    conn,
                    "SELECT local_id FROM tasks WHERE task_id = %s AND local_id <> %s",
                    (task_id, local_id),
                )
                if other is not None:
                    raise JournalError(
                        f"Task id {task_id!r} is already recorded for submission "
                        f"{other['local_id']!r}."
                    )
                at = self._stamp()
                updated = await one(
                    conn,
                    "UPDATE tasks SET task_id = %s, status = %s, updated_at = %s"
                    " WHERE local_id = %s RETURNING *",
                    (task_id, new_status.value, at, local_id),
                )
                assert updated is not None
                if new_status.value != row["status"]:
                    await add_event(conn, local_id, new_status, at, f"task id {task_id}")
                await self._leases.drop_submit(conn, local_id)
                await notify(conn, updated)
            return record(updated)
        finally:
            self._leases.end_submit(local_id)  # the submit is over, recorded or not

    async def fail_submission(self, local_id: str, *, message: str, outcome_unknown: bool) -> None:
        """The submit gave no task id: ``submit_unknown`` or ``submit_failed``."""
        new_status = (
            JournalStatus.SUBMIT_UNKNOWN if outcome_unknown else JournalStatus.SUBMIT_FAILED
        )
        detail = clean_text(message)
        try:
            async with self._connection() as conn, conn.transaction():
                row = await one(conn, BY_LOCAL + " FOR UPDATE", (local_id, self._user))
                if row is None:
                    raise JournalError(f"No submission {local_id!r} in the task journal.")
                at = self._stamp()
                updated = await one(
                    conn,
                    "UPDATE tasks SET status = %s, error_message = %s, updated_at = %s"
                    " WHERE local_id = %s RETURNING *",
                    (new_status.value, detail, at, local_id),
                )
                assert updated is not None
                if new_status.value != row["status"]:
                    await add_event(conn, local_id, new_status, at, detail)
                await self._leases.drop_submit(conn, local_id)
                await notify(conn, updated)
        finally:
            self._leases.end_submit(local_id)

    async def expire_stale_submissions(self, *, older_than: timedelta) -> int:
        """Submissions still ``submitting`` after ``older_than`` whose submit lease
        lapsed (a live replica's are left alone) become ``submit_unknown``."""
        cutoff = self._stamp() - older_than
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT local_id FROM tasks t WHERE status = %s AND created_at < %s"
                " AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.task_id = t.local_id"
                " AND l.kind = %s AND l.expires_at >= now()) FOR UPDATE",
                (JournalStatus.SUBMITTING.value, cutoff, SUBMIT_LEASE),
            )
            rows = await cur.fetchall()
            for row in rows:
                await self._mark_unknown(conn, row["local_id"])
        return len(rows)

    # --- observations

    async def record_status(
        self,
        task_id: str,
        *,
        status: TaskStatus | JournalStatus,
        raw_status: str | None = None,
        url: str | None = None,
        error_code: str | int | None = None,
        error_message: str | None = None,
    ) -> TaskRecord | None:
        """What a query of ``task_id`` showed (see :meth:`Journal.record_status`); a
        change is notified to every replica."""
        if not encodable(task_id):
            return None
        seen = JournalStatus(status)
        code = None if error_code is None else str(error_code)
        message = clean_text(error_message)

        def merged(row: Mapping[str, Any]) -> tuple[Any, ...]:
            regression = JournalStatus(row["status"]).is_terminal and not seen.is_terminal
            return (
                row["status"] if regression else seen.value,
                row["raw_status"] if regression or raw_status is None else raw_status,
                row["url"] if url is None else url,
                row["error_code"] if code is None else code,
                row["error_message"] if message is None else message,
            )

        def observed(row: Mapping[str, Any]) -> tuple[Any, ...]:
            return tuple(row[k] for k in OBSERVED)

        async with self._connection() as conn:
            row = await one(conn, FIND, (task_id, task_id, self._user, task_id))
            if row is not None and merged(row) == observed(row):
                return record(row)  # most polls change nothing: nothing written
            async with conn.transaction():
                row = await one(conn, FIND + " FOR UPDATE", (task_id, task_id, self._user, task_id))
                if row is None:
                    logger.debug("record_status: task %s is not in the journal", task_id)
                    return None
                now = self._stamp()
                new = merged(row)
                expires = row["url_expires_at"]
                if url is not None and url != row["url"]:
                    expires = parse_url_expiry(url, seen_at=now)
                updated_at = now if new != observed(row) else row["updated_at"]
                updated = await one(
                    conn,
                    "UPDATE tasks SET status = %s, raw_status = %s, url = %s, error_code = %s,"
                    " error_message = %s, url_expires_at = %s, checked_at = %s, updated_at = %s"
                    " WHERE local_id = %s RETURNING *",
                    (*new, expires, now, updated_at, row["local_id"]),
                )
                assert updated is not None
                if new[0] != row["status"]:
                    detail = event_detail(seen, seen_raw=raw_status, code=new[3], message=new[4])
                    await add_event(conn, row["local_id"], seen, now, detail)
                    await notify(conn, updated)
            return record(updated)

    async def record_download(
        self,
        task_id: str,
        *,
        path: Path | str,
        size_bytes: int,
        sha256: str,
        identity: str | None = None,
    ) -> None:
        """Where the video of ``task_id`` was saved (nothing for an unknown task)."""
        if not encodable(task_id):
            return
        at = self._stamp()
        async with self._connection() as conn, conn.transaction():
            row = await one(conn, FIND + " FOR UPDATE", (task_id, task_id, self._user, task_id))
            if row is None:
                logger.debug("record_download: task %s is not in the journal", task_id)
                return
            await conn.execute(
                "UPDATE tasks SET saved_path = %s, size_bytes = %s, sha256 = %s,"
                " saved_identity = %s, downloaded_at = %s, updated_at = %s WHERE local_id = %s",
                (str(path), int(size_bytes), sha256, identity, at, at, row["local_id"]),
            )

    async def record_identity(self, task_id: str, *, path: Path | str, identity: str) -> None:
        """The identity the saved file at ``path`` has now (nothing for another file)."""
        if not encodable(task_id):
            return
        async with self._connection() as conn, conn.transaction():
            row = await one(conn, FIND + " FOR UPDATE", (task_id, task_id, self._user, task_id))
            if row is None or row["saved_path"] != str(path):
                return
            await conn.execute(
                "UPDATE tasks SET saved_identity = %s WHERE local_id = %s",
                (identity, row["local_id"]),
            )

    # --- reading

    async def get(self, task_id: str) -> TaskRecord | None:
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
        self, *, limit: int = DEFAULT_LIST_LIMIT, status: str | None = None
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
        self, prefix: str, *, limit: int
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


class _RetryError(Exception):
    """A claim lost a race: its transaction is rolled back and the claim tried again."""
