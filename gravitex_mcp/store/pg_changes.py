"""Task changes across replicas of the PostgreSQL task store: ``LISTEN``/``NOTIFY``.

A statement that changes a task's status selects :func:`notify_sql` of the changed row
(sent on commit, to every replica). Each store runs :meth:`ChangeFeed.listen` on a connection of
its own (reconnecting after a failover), which wakes :meth:`ChangeFeed.wait_for_change`
and feeds :meth:`ChangeFeed.changes`. A change that comes while nobody here waits on its
task is kept for the next wait, so a waiter that reads the task between two waits misses
none. A waiter that is not woken (the listener down) times out and looks, as it did
before.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import psycopg
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from psycopg import AsyncConnection

from ..metrics import Metrics
from .pg_rows import first_line
from .pg_schema import CHANGES_CHANNEL
from .seam import Clock

logger = logging.getLogger(__name__)

_REMEMBERED = 10_000  # last changes kept for waiters that wake (then forgotten at once)


@dataclass(frozen=True, slots=True)
class TaskChange:
    """A recorded change of a task, as notified to every replica."""

    task_id: str | None
    local_id: str
    status: str


def notify_sql(row: str) -> str:
    """``pg_notify`` of the task row named ``row`` in a statement (its task id, local id
    and status, as JSON), an expression for the statement's select list."""
    fields = ", ".join(f"'{k}', {row}.{k}" for k in ("task_id", "local_id", "status"))
    return f"pg_notify('{CHANGES_CHANNEL}', json_build_object({fields})::text)::text"


class ChangeFeed:
    """One replica's listener and the waiters on it."""

    def __init__(self, dsn: str, *, clock: Clock, metrics: Metrics | None = None) -> None:
        self._dsn = dsn
        self._clock = clock
        self._metrics = metrics
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._last: dict[str, TaskChange] = {}
        self._unclaimed: set[str] = set()  # changed while nobody here waited on them
        self._subscribers: set[MemoryObjectSendStream[TaskChange]] = set()
        self.listening = anyio.Event()
        """Set while LISTEN is in force (tests wait for it)."""

    async def wait_for_change(self, task_id: str, timeout: float) -> TaskChange | None:  # noqa: ASYNC109
        """The next change of ``task_id`` (upstream or local id) any replica records,
        or ``None`` after ``timeout`` s; one recorded since the last wait for it ended
        is returned at once."""
        if task_id in self._unclaimed:
            self._unclaimed.discard(task_id)
            return self._last.get(task_id)
        event = anyio.Event()
        self._waiters.setdefault(task_id, set()).add(event)
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
                return self._last.get(task_id)
            return None
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]

    @contextlib.asynccontextmanager
    async def changes(self) -> AsyncIterator[MemoryObjectReceiveStream[TaskChange]]:
        """Every change any replica records while the block runs (``async for``)."""
        send, receive = anyio.create_memory_object_stream[TaskChange](100)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def dispatch(self, change: TaskChange) -> None:
        if len(self._last) > _REMEMBERED:
            self._last.clear()
            self._unclaimed.clear()
        for key in (change.task_id, change.local_id):
            if key is None:
                continue
            self._last[key] = change
            waiters = self._waiters.get(key)
            if not waiters:
                self._unclaimed.add(key)
            for event in waiters or ():
                event.set()
        for send in list(self._subscribers):
            try:
                send.send_nowait(change)
            except anyio.WouldBlock:
                logger.warning("a task change reader is not keeping up; dropped a change")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)

    async def listen(self) -> None:
        """LISTEN on a connection of its own, forever; reconnect after a failure."""
        while True:
            try:
                # Shielded (bounded by its time-out): a connect cancelled mid-handshake
                # leaves the server's backend waiting for its authentication_timeout.
                with anyio.CancelScope(shield=True):
                    conn = await AsyncConnection.connect(
                        self._dsn, autocommit=True, connect_timeout=5
                    )
                async with conn:
                    await conn.execute(f"LISTEN {CHANGES_CHANNEL}".encode())
                    self.listening.set()
                    async for message in conn.notifies():
                        try:
                            body = json.loads(message.payload)
                            change = TaskChange(body["task_id"], body["local_id"], body["status"])
                        except (ValueError, KeyError, TypeError):
                            continue
                        self.dispatch(change)
            except psycopg.Error as exc:
                logger.info("task change listener: %s; reconnecting", first_line(exc))
                if self._metrics is not None:
                    self._metrics.database_errors.labels("listen").inc()
            self.listening = anyio.Event()
            await self._clock.sleep(1.0)
