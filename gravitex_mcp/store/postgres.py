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
* **One statement per change**: a status change, a submit's answer, a new submission
  and a task's reading are each one statement in autocommit (data-modifying CTEs), no
  ``BEGIN``/``COMMIT`` round trips (:mod:`.pg_recording`); only a key's claim and the
  per-user budget and rate, which must hold a lock across a check, are transactions.
* **A database that is down, restarting or failing over** raises
  :class:`~gravitex_mcp.errors.StoreUnavailableError`, and one whose connections are all
  in use :class:`~gravitex_mcp.errors.StoreBusyError` (both retryable; the wait for a
  connection and what it means: :mod:`.pg_pool`). The answer to an accepted submit is
  recorded however long that takes, up to :data:`RECORD_PATIENCE_SECONDS`: its task
  exists and is paid for.

Open it with ``async with PostgresTaskStore.open(dsn) as store`` (start-up: pool,
migrations, heartbeat and listener; shutdown: its leases released, pool closed).
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.streams.memory import MemoryObjectReceiveStream

from ..domain import LOCAL_USER, JournalStatus, TaskStatus, as_utc, utc_now
from ..errors import JournalError, StoreUnavailableError
from ..metrics import Metrics
from ..settings import DEFAULT_POOL_MAX, DEFAULT_POOL_MIN
from .pg_changes import ChangeFeed, TaskChange, notify_sql
from .pg_leases import SUBMIT_ALIVE, SUBMIT_LEASE, LeaseRows
from .pg_pool import DEFAULT_POOL_TIMEOUT, TaskPool
from .pg_reading import PgReading
from .pg_recording import PgRecording
from .pg_rows import Conn, add_event, clean_text, one, record
from .pg_schema import migrate
from .pg_usage import PgUsage
from .records import KeyClaim, TaskRecord
from .seam import Clock, Lease, LeaseBusy, LeaseKind, RealClock, UserView
from .sqlite_rows import encode_arguments

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How long a lease lasts unless renewed; a dead replica's work is taken over after it.
DEFAULT_LEASE_SECONDS = 15.0
MAX_LEASE_SECONDS = 20.0
#: How long a submit's answer is retried while the database is busy or unreachable (a
#: failover's time), before the row is left ``submitting`` and the id only logged.
RECORD_PATIENCE_SECONDS = 30.0
_STOPPED_MID_SUBMIT = "The server stopped before the submit answered; a task may exist upstream."

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
#: A new submission and its first event, in one statement.
_INSERT = """
WITH task AS (
    INSERT INTO tasks (local_id, model, family, arguments, arguments_hash, status,
        created_at, updated_at, user_id)
    VALUES (%(local)s, %(model)s, %(family)s, %(arguments)s, %(hash)s, %(status)s,
        %(at)s, %(at)s, %(user)s)
    RETURNING local_id, status, created_at
)
INSERT INTO task_events (local_id, status, at) SELECT local_id, status, created_at FROM task
"""


def _answered(old: str, changes: str) -> str:
    """A submit's answer in one statement: the submission (``old``: its conditions,
    locked) gets ``changes``, its event when its status changed (``%(detail)s``), its
    submit lease ends, and every replica is told. No row: the conditions failed."""
    return f"""
WITH old AS (
    SELECT local_id, status FROM tasks
    WHERE local_id = %(local)s AND user_id = %(user)s AND {old} FOR UPDATE
),
new AS (
    UPDATE tasks t SET {changes}, updated_at = %(at)s FROM old WHERE t.local_id = old.local_id
    RETURNING t.*, old.status AS was
),
event AS (
    INSERT INTO task_events (local_id, status, at, detail)
    SELECT local_id, status, %(at)s, %(detail)s FROM new WHERE status <> was
),
lease AS (
    DELETE FROM leases WHERE task_id = %(local)s AND kind = '{SUBMIT_LEASE}'
    AND holder_id = %(holder)s AND EXISTS (SELECT FROM new)
)
SELECT new.*, {notify_sql("new")} AS notified FROM new
"""  # noqa: S608 - constants only, as every statement here


#: The upstream id recorded; the submission had none yet, or this one (a retry), and no
#: other submission has it.
_COMPLETE = _answered(
    "coalesce(task_id, %(task)s) = %(task)s AND NOT EXISTS"
    " (SELECT FROM tasks o WHERE o.task_id = %(task)s AND o.local_id <> %(local)s)",
    "task_id = %(task)s, status = %(status)s",
)
_FAIL = _answered("true", "status = %(status)s, error_message = %(detail)s")
#: Why :data:`_COMPLETE` wrote nothing.
_NOT_COMPLETED = (
    "SELECT (SELECT task_id FROM tasks WHERE local_id = %(local)s AND user_id = %(user)s)"
    " AS mine, EXISTS (SELECT FROM tasks WHERE local_id = %(local)s AND user_id = %(user)s)"
    " AS found, (SELECT local_id FROM tasks WHERE task_id = %(task)s"
    " AND local_id <> %(local)s) AS other"
)


class PostgresTaskStore(PgReading, PgRecording, PgUsage, UserView):
    """The task store on PostgreSQL. Build it with :meth:`open`; share one per process.
    Reading tasks: :class:`~.pg_reading.PgReading`; recording what became of them:
    :class:`~.pg_recording.PgRecording`; whose a task is, budgets and submit slots:
    :class:`~.pg_usage.PgUsage`."""

    def __init__(
        self,
        pool: TaskPool,
        *,
        dsn: str,
        now: Callable[[], datetime],
        clock: Clock,
        lease_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._pool: TaskPool | None = pool
        self._where = pool.where
        self._now = now
        self._clock = clock
        self._leases = LeaseRows(
            self._connection,
            renewing=lambda: self.pool.connection("leases"),
            clock=clock,
            lease_seconds=lease_seconds,
            metrics=metrics,
        )
        self._feed = ChangeFeed(dsn, clock=clock, metrics=metrics)
        self._user = LOCAL_USER

    @property
    def leases(self) -> LeaseRows:
        """This replica's leases (its holder name, lease time, renewals)."""
        return self._leases

    @property
    def pool(self) -> TaskPool:
        """This replica's connections (tests hold them all to make it busy)."""
        if self._pool is None:
            raise JournalError(f"The task database {self._where} is closed.")
        return self._pool

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
        takeovers and database errors (by operation: connection, busy, statement,
        listen)."""
        if not 0 < lease_seconds <= MAX_LEASE_SECONDS:
            raise ValueError(f"lease_seconds must be in (0, {MAX_LEASE_SECONDS:g}]")
        pool = TaskPool(
            dsn, min_size=min_size, max_size=max_size, timeout=pool_timeout, metrics=metrics
        )
        await pool.open()
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
                await migrate(conn, where=store._where)
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

    def _connection(self) -> contextlib.AbstractAsyncContextManager[Conn]:
        return self.pool.connection()

    def _reading(self) -> contextlib.AbstractAsyncContextManager[Conn]:
        return self.pool.connection("read")

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
        async with self._connection() as conn:
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
        params = {
            "local": local_id,
            "model": str(model),
            "family": str(family),
            "arguments": encoded,
            "hash": arguments_hash,
            "status": JournalStatus.SUBMITTING.value,
            "at": at,
            "user": self._user,
        }
        await conn.execute(_INSERT.encode(), params)
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
        """The submit answered with ``task_id`` (also after :meth:`fail_submission`).
        Retried while the database is busy or unreachable, up to
        :data:`RECORD_PATIENCE_SECONDS`, and not cancelled: the task exists upstream."""
        params: dict[str, Any] = {
            "local": local_id,
            "user": self._user,
            "task": task_id,
            "status": JournalStatus(status).value,
            "detail": f"task id {task_id}",
            "holder": self._leases.holder_id,
        }

        async def complete() -> TaskRecord:
            params["at"] = self._stamp()
            async with self._connection() as conn:
                row = await one(conn, _COMPLETE, params)
                if row is not None:
                    return record(row)
                why = await one(conn, _NOT_COMPLETED, params)
            if why is None or not why["found"]:
                raise JournalError(f"No submission {local_id!r} in the task journal.")
            if why["mine"] not in (None, task_id):
                raise JournalError(f"Submission {local_id!r} already has task id {why['mine']!r}.")
            raise JournalError(
                f"Task id {task_id!r} is already recorded for submission {why['other']!r}."
            )

        try:
            return await self._patiently(f"task {task_id}", complete)
        finally:
            self._leases.end_submit(local_id)  # the submit is over, recorded or not

    async def fail_submission(self, local_id: str, *, message: str, outcome_unknown: bool) -> None:
        """The submit gave no task id: ``submit_unknown`` or ``submit_failed`` (retried
        as :meth:`complete_submission` is)."""
        new_status = (
            JournalStatus.SUBMIT_UNKNOWN if outcome_unknown else JournalStatus.SUBMIT_FAILED
        )
        params: dict[str, Any] = {
            "local": local_id,
            "user": self._user,
            "status": new_status.value,
            "detail": clean_text(message),
            "holder": self._leases.holder_id,
        }

        async def fail() -> None:
            params["at"] = self._stamp()
            async with self._connection() as conn:
                if await one(conn, _FAIL, params) is None:
                    raise JournalError(f"No submission {local_id!r} in the task journal.")

        try:
            await self._patiently(f"the end of submission {local_id}", fail)
        finally:
            self._leases.end_submit(local_id)

    async def _patiently(self, what: str, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt``, shielded from cancellation, again while the database is busy or
        unreachable (each try waits for a connection as long as the pool lets it), for
        up to :data:`RECORD_PATIENCE_SECONDS`; then its error."""
        with anyio.CancelScope(shield=True):
            give_up = self._clock.monotonic() + RECORD_PATIENCE_SECONDS
            pause = 0.25
            while True:
                try:
                    return await attempt()
                except StoreUnavailableError as exc:
                    if self._clock.monotonic() >= give_up:
                        raise
                    logger.warning("could not record %s yet (%s); trying again", what, exc)
                await self._clock.sleep(pause)
                pause = min(pause * 2, 4.0)
        raise AssertionError("unreachable: a shielded scope is never cancelled")

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


class _RetryError(Exception):
    """A claim lost a race: its transaction is rolled back and the claim tried again."""
