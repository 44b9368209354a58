"""Leases as rows of the PostgreSQL task store: one holder per (task, kind) across replicas.

A lease is a row ``(task_id, kind, holder_id, holder, token, expires_at)``. It is taken
with ``INSERT ... ON CONFLICT ... DO UPDATE ... WHERE expires_at < now()`` (free, or its
holder stopped renewing: a *takeover*, counted in ``gravitex_lease_takeovers``), renewed
by :meth:`LeaseRows.heartbeat` every third of its time while held, and deleted on
release. Expiry is the database's ``now()``: one clock for every replica. Each take
draws a larger fencing ``token`` from ``lease_tokens``; a renewal that finds its row
taken over marks the lease :attr:`PgLease.lost`.

A claimed key's submit holds a ``submit`` lease on its local id (:data:`SUBMIT_LEASE`),
written in the claim's transaction and deleted in the answer's.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import anyio

from ..errors import JournalError
from ..metrics import Metrics
from .pg_rows import Conn, one
from .seam import Clock, LeaseBusy

logger = logging.getLogger(__name__)

SUBMIT_LEASE = "submit"
#: ``%s`` the local id: a submit lease that has not lapsed (its holder lives).
SUBMIT_ALIVE = (
    "SELECT 1 AS alive FROM leases WHERE task_id = %s AND kind = 'submit' AND expires_at >= now()"
)
_TAKE = (
    "INSERT INTO leases AS l (task_id, kind, holder_id, holder, token, expires_at)"
    " VALUES (%s, %s, %s, %s, nextval('lease_tokens'), now() + %s * interval '1 second')"
    " ON CONFLICT (task_id, kind) DO UPDATE SET holder_id = excluded.holder_id,"
    " holder = excluded.holder, token = excluded.token, taken_at = now(),"
    " expires_at = excluded.expires_at WHERE l.expires_at < now()"
    # xmax is 0 on a row this statement inserted: else it updated a lapsed holder's row
    " RETURNING token, xmax <> 0 AS took_over"
)
#: Take the lease, or say who holds it: one statement. Neither when the holder's row
#: is newer than the statement's snapshot (or was released meanwhile): then again.
_TAKE_OR_REPORT = (
    f"WITH took AS ({_TAKE}) SELECT token, took_over, NULL AS holder FROM took"  # noqa: S608
    " UNION ALL SELECT NULL, NULL, holder FROM leases"
    " WHERE task_id = %s AND kind = %s AND NOT EXISTS (SELECT FROM took)"
)


class PgLease:
    """A held lease row; renewed by its replica's heartbeat until released or lost."""

    def __init__(self, rows: LeaseRows, task_id: str, kind: str, token: int) -> None:
        self._rows = rows
        self.task_id = task_id
        self.kind = kind
        self.token = token
        """The fencing token: larger for each later holder of the same lease."""
        self.lost = False
        """Set when a renewal found the lease taken over (this holder stalled too long)."""

    async def release(self) -> None:
        """Delete the row (only while it is still this take of it); idempotent, and
        completes in a cancelled scope."""
        await self._rows.release(self)


class LeaseRows:
    """The leases one replica (one store) holds, and the statements on the table."""

    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[Conn]],
        *,
        renewing: Callable[[], AbstractAsyncContextManager[Conn]] | None = None,
        clock: Clock,
        lease_seconds: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._connection = connection
        # Renewals (and the shutdown's release) on a connection no other call waits for.
        self._renewing = renewing or connection
        self._clock = clock
        self._metrics = metrics
        self.lease_seconds = lease_seconds
        self.holder_id = uuid.uuid4().hex
        self.holder = f"pid {os.getpid()} on {socket.gethostname()}"
        """Who, for a waiter's message (:class:`LeaseBusy`)."""
        self._held: dict[tuple[str, str], PgLease] = {}

    @property
    def renew_every(self) -> float:
        """Seconds between renewals: a third of the lease time."""
        return self.lease_seconds / 3

    async def take(self, task_id: str, kind: str) -> PgLease | LeaseBusy:
        """The lease now, or who holds it."""
        params = (task_id, kind, self.holder_id, self.holder, self.lease_seconds, task_id, kind)
        async with self._connection() as conn:
            for _ in range(3):
                row = await one(conn, _TAKE_OR_REPORT, params)
                if row is None:
                    continue
                if row["holder"] is not None:
                    return LeaseBusy(str(row["holder"]))
                if row["took_over"]:
                    logger.info("took over lease %s/%s: its holder stopped renewing", task_id, kind)
                    if self._metrics is not None:
                        self._metrics.lease_takeovers.labels(kind).inc()
                return self._hold(task_id, kind, int(row["token"]))
        return LeaseBusy("pid unknown")

    def _hold(self, task_id: str, kind: str, token: int) -> PgLease:
        lease = PgLease(self, task_id, kind, token)
        self._held[(task_id, kind)] = lease
        return lease

    async def take_submit(self, conn: Conn, local_id: str) -> int:
        """In a claim's transaction: the new submission's lease row; its token."""
        row = await one(
            conn,
            "INSERT INTO leases (task_id, kind, holder_id, holder, token, expires_at)"
            " VALUES (%s, %s, %s, %s, nextval('lease_tokens'), now() + %s * interval '1 second')"
            " RETURNING token",
            (local_id, SUBMIT_LEASE, self.holder_id, self.holder, self.lease_seconds),
        )
        assert row is not None  # a fresh UUID: no row can be there
        return int(row["token"])

    def hold_submit(self, local_id: str, token: int) -> None:
        """The claim committed: renew its submit lease from now on."""
        self._hold(local_id, SUBMIT_LEASE, token)

    async def drop_submit(self, conn: Conn, local_id: str) -> None:
        """In the answer's transaction: the submit lease's row goes."""
        await conn.execute(
            "DELETE FROM leases WHERE task_id = %s AND kind = %s AND holder_id = %s",
            (local_id, SUBMIT_LEASE, self.holder_id),
        )

    def end_submit(self, local_id: str) -> None:
        """The submit is over (recorded or not): stop renewing its lease."""
        self._held.pop((local_id, SUBMIT_LEASE), None)

    async def release(self, lease: PgLease) -> None:
        key = (lease.task_id, lease.kind)
        if self._held.get(key) is not lease:
            return  # released already, or lost
        del self._held[key]
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.lease_seconds):
            try:
                async with self._connection() as conn:
                    await conn.execute(
                        "DELETE FROM leases WHERE task_id = %s AND kind = %s AND token = %s",
                        (lease.task_id, lease.kind, lease.token),
                    )
            except JournalError as exc:  # it lapses by itself
                logger.warning("could not release lease %s/%s: %s", *key, exc)

    async def release_all(self) -> None:
        """Shutting down: every lease of this replica goes (others need not wait)."""
        self._held.clear()
        with anyio.move_on_after(self.lease_seconds):
            try:
                async with self._renewing() as conn:
                    await conn.execute("DELETE FROM leases WHERE holder_id = %s", (self.holder_id,))
            except JournalError as exc:
                logger.warning("could not release this replica's leases: %s", exc)

    async def renew(self) -> None:
        """Push every held lease's expiry on; those taken over meanwhile are lost."""
        # Only leases held before the statement: one taken while it runs is not in it.
        before = list(self._held.items())
        if not before:
            return
        async with self._renewing() as conn:
            cur = await conn.execute(
                "UPDATE leases SET expires_at = now() + %s * interval '1 second'"
                " WHERE holder_id = %s RETURNING task_id, kind, token",
                (self.lease_seconds, self.holder_id),
            )
            renewed = {(r["task_id"], r["kind"], int(r["token"])) for r in await cur.fetchall()}
        for key, lease in before:
            if (lease.task_id, lease.kind, lease.token) not in renewed and self._held.get(
                key
            ) is lease:
                lease.lost = True
                del self._held[key]
                logger.warning("lease %s/%s was lost: not renewed in time", *key)

    async def heartbeat(self) -> None:
        """Renew every :attr:`renew_every` s (on the injected clock), forever."""
        while True:
            await self._clock.sleep(self.renew_every)
            try:
                await self.renew()
            except JournalError as exc:
                logger.warning("could not renew leases: %s", exc)
