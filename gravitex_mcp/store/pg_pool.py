"""The PostgreSQL task store's connections (psycopg_pool): how long a call waits for
one, what a failed wait means, which calls queue apart, and no round trip spent
checking a connection in use.

* **Busy is not down.** A wait for a connection that times out while no connection
  attempt has failed since the last one succeeded found the database up and every
  connection lent: :class:`~gravitex_mcp.errors.StoreBusyError` ("busy, call again in
  a moment"). One while attempts fail (down, restarting, failing over, refusing), or a
  statement that loses its connection:
  :class:`~gravitex_mcp.errors.StoreUnavailableError` ("unreachable"). Both retryable.
* **The call's own deadline bounds the wait.** A call waits for a connection in slices
  of the pool's time-out, and an outage ends the wait at the end of a slice. Within a
  cancel scope with a deadline (a tool call's wait) it waits until that deadline ends
  it; with none (a plain tool call, a shielded write), :data:`BUSY_SLICES` slices.
* **Listings and leases do not queue behind the tasks' work.** A fifth of the
  connections (:data:`READ_SHARE`, from five up) are a pool of their own for calls
  answered from the store alone (a listing, completion, usage), so a burst of submits,
  status changes and the reads of following tasks that takes every other connection
  does not hold up a listing; of ``min_size`` kept open, this pool keeps one. The lease
  heartbeat has a connection of its own besides, so a busy pool cannot make a replica's
  leases lapse.
* **No check round trip per call.** A connection given back less than
  :data:`FRESH_SECONDS` ago is lent as it is (under load, every one); one idle longer is
  checked first with an empty query, so a database restarted meanwhile costs no call. A
  connection that broke within those seconds fails its one statement, as any statement
  in flight at an outage does, and is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Literal, NoReturn
from weakref import WeakKeyDictionary

import anyio
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from ..errors import JournalError, StoreBusyError, StoreUnavailableError
from ..metrics import Metrics
from .pg_rows import Conn, first_line, where

logger = logging.getLogger(__name__)

#: How long one slice of a wait for a connection lasts: an outage is told after one.
DEFAULT_POOL_TIMEOUT = 5.0
#: A call with no deadline of its own waits this many slices for a busy pool (30 s).
BUSY_SLICES = 6
#: A connection given back this recently is lent without a check.
FRESH_SECONDS = 2.0
#: One in this many connections is the listings' (none below five: then all are shared).
READ_SHARE = 5
#: Seconds to connect before an attempt counts as failed.
CONNECT_SECONDS = 5
_ERRORS = "connections_errors"  # psycopg_pool's count of failed connection attempts


#: Which pool a call takes its connection from (see the module notes).
Lane = Literal["write", "read", "leases"]


def read_size(max_size: int) -> int:
    """Of ``max_size`` connections, how many are the listings' own (the "read" lane)."""
    return max_size // READ_SHARE


class TaskPool:
    """One replica's pool of connections to the task database. ``open()`` it first."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int,
        max_size: int,
        timeout: float = DEFAULT_POOL_TIMEOUT,
        metrics: Metrics | None = None,
    ) -> None:
        if not 1 <= min_size <= max_size:
            raise ValueError("the pool needs 1 <= min_size <= max_size")
        self.where = where(dsn)
        """host:port/dbname, for messages (never the password)."""
        self.timeout = timeout
        self._metrics = metrics
        self._returned: WeakKeyDictionary[Conn, float] = WeakKeyDictionary()
        self._errors_when_connected = 0
        self.checks = 0
        """Connections checked before a call (idle too long): each one round trip."""
        reads = read_size(max_size)
        writes = max_size - reads
        kept = max(1, min_size - 1) if reads else min_size  # the listings' pool keeps one
        self._writes = self._make(dsn, min(kept, writes), writes, "gravitex-tasks")
        self._reads = self._make(dsn, 1, reads, "gravitex-task-reads") if reads else self._writes
        self._leases = self._make(dsn, 1, 1, "gravitex-task-leases")
        self._lanes: dict[Lane, AsyncConnectionPool[Conn]] = {
            "write": self._writes,
            "read": self._reads,
            "leases": self._leases,
        }
        self._pools = tuple({id(p): p for p in self._lanes.values()}.values())
        self._held_ms: dict[str, float] = {p.name: 0.0 for p in self._pools}

    def _make(self, dsn: str, min_size: int, max_size: int, name: str) -> AsyncConnectionPool[Conn]:
        return AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=self.timeout,
            open=False,
            connection_class=AsyncConnection[DictRow],
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": CONNECT_SECONDS,
            },
            check=self._check,
            configure=self._connected,
            name=name,
        )

    async def open(self) -> None:
        """Connect each pool's ``min_size`` connections, or raise
        :class:`StoreUnavailableError`."""
        try:
            for pool in self._pools:
                await pool.open(wait=True, timeout=self.timeout)
        except psycopg.OperationalError as exc:
            await self.close()
            logger.error(
                "task database %s unreachable at start-up: %s", self.where, first_line(exc)
            )
            raise StoreUnavailableError(f"{self.where}: {first_line(exc)}") from exc

    async def close(self) -> None:
        for pool in self._pools:
            stats = pool.get_stats()
            logger.info(
                "%s: %s calls held a connection %.0f ms in all; %s waited for one %s ms in"
                " all, %s in vain; %s connections made",
                pool.name,
                stats.get("requests_num", 0),
                self._held_ms[pool.name],
                stats.get("requests_queued", 0),
                stats.get("requests_wait_ms", 0),
                stats.get("requests_errors", 0),
                stats.get("connections_num", 0),
            )
            await pool.close()
        logger.info("task database: %s connections checked before a call", self.checks)

    def _connect_errors(self) -> int:
        return sum(p.get_stats().get(_ERRORS, 0) for p in self._pools)

    @property
    def reachable(self) -> bool:
        """Whether no connection attempt has failed since the last one succeeded."""
        return self._connect_errors() == self._errors_when_connected

    async def _connected(self, conn: Conn) -> None:
        self._errors_when_connected = self._connect_errors()

    async def _check(self, conn: Conn) -> None:
        if time.monotonic() - self._returned.get(conn, -math.inf) >= FRESH_SECONDS:
            self.checks += 1
            await AsyncConnectionPool.check_connection(conn)

    async def _lend(self, pool: AsyncConnectionPool[Conn]) -> Conn:
        """A connection of ``pool``, waited for in slices (see the module notes)."""
        now = anyio.current_time()
        deadline = anyio.current_effective_deadline()
        # Within a deadline its cancellation ends the wait; this bound only backs it.
        patience = BUSY_SLICES * self.timeout if math.isinf(deadline) else deadline - now
        give_up = now + max(patience, 0.0) + (0.0 if math.isinf(deadline) else self.timeout)
        while True:
            left = give_up - anyio.current_time()
            try:
                return await pool.getconn(max(min(self.timeout, left), 0.001))
            except PoolTimeout as exc:
                if not self.reachable:
                    self._unavailable(exc)
                if anyio.current_time() >= give_up:
                    logger.warning("task database %s busy: %s", self.where, first_line(exc))
                    self._count_error("busy")
                    raise StoreBusyError(f"{self.where}: {first_line(exc)}") from exc
            except PoolClosed as exc:
                raise JournalError(f"The task database {self.where} is closed.") from exc
            except psycopg.OperationalError as exc:
                self._unavailable(exc)

    @contextlib.asynccontextmanager
    async def connection(self, lane: Lane = "write") -> AsyncIterator[Conn]:
        """A connection for one call from ``lane``'s pool; its errors as the store's
        (see the module notes)."""
        pool = self._lanes[lane]
        conn = await self._lend(pool)
        lent = time.monotonic()
        try:
            async with conn:
                yield conn
        except psycopg.OperationalError as exc:  # the connection lost: down, restarting
            self._unavailable(exc)
        except psycopg.Error as exc:
            self._count_error("statement")
            raise JournalError(f"Task database {self.where}: {first_line(exc)}") from exc
        finally:
            self._returned[conn] = now = time.monotonic()
            self._held_ms[pool.name] += (now - lent) * 1000
            await pool.putconn(conn)

    def _unavailable(self, exc: psycopg.Error) -> NoReturn:
        logger.warning("task database %s unavailable: %s", self.where, first_line(exc))
        self._count_error("connection")
        raise StoreUnavailableError(f"{self.where}: {first_line(exc)}") from exc

    def _count_error(self, operation: str) -> None:
        if self._metrics is not None:
            self._metrics.database_errors.labels(operation).inc()
