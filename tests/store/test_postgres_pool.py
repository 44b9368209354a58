"""The PostgreSQL task store's connections under load (store/pg_pool.py): a busy pool is
not an unreachable database, a call waits for a connection until its own deadline, reads
do not queue behind writes, and a submit the upstream accepted is recorded once the
database can take it (busy, or back from a stop), even if the caller gave up meanwhile.
The test makes the pool busy by holding its connections; the real PostgreSQL
(``postgres_db``) is stopped to make it unreachable."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from gravitex_mcp.domain import JournalStatus, TaskStatus
from gravitex_mcp.errors import (
    STORE_BUSY_MESSAGE,
    STORE_UNAVAILABLE_MESSAGE,
    StoreBusyError,
    StoreUnavailableError,
)
from gravitex_mcp.metrics import Metrics
from gravitex_mcp.store.pg_leases import PgLease
from gravitex_mcp.store.pg_pool import read_size
from gravitex_mcp.store.postgres import PostgresTaskStore
from gravitex_mcp.store.seam import LeaseKind
from tests.conftest import PostgresDatabase

pytestmark = pytest.mark.slow  # a real PostgreSQL server, stopped and started

BUSY = re.escape(STORE_BUSY_MESSAGE)
UNAVAILABLE = re.escape(STORE_UNAVAILABLE_MESSAGE)


@asynccontextmanager
async def _store(
    db: PostgresDatabase, size: int, metrics: Metrics | None = None
) -> AsyncIterator[PostgresTaskStore]:
    async with PostgresTaskStore.open(
        db.dsn, min_size=1, max_size=size, pool_timeout=0.3, metrics=metrics
    ) as store:
        yield store


@asynccontextmanager
async def _all_held(store: PostgresTaskStore, count: int) -> AsyncIterator[None]:
    """The test holds ``count`` of the store's (writing) connections."""
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(store.pool.connection())
        yield


async def _release_after(seconds: float, held: AsyncExitStack) -> None:
    await anyio.sleep(seconds)
    await held.aclose()


async def test_a_busy_pool_says_busy_and_a_stopped_database_unreachable(
    postgres_db: PostgresDatabase,
) -> None:
    metrics = Metrics()

    def errors(operation: str) -> float | None:
        labels = {"operation": operation}
        return metrics.registry.get_sample_value("gravitex_database_errors_total", labels)

    async with _store(postgres_db, 1, metrics) as store:
        async with _all_held(store, 1):
            with pytest.raises(StoreBusyError, match=BUSY) as busy:
                await store.list(limit=1)  # no deadline of its own: the pool's 0.3 s
        assert busy.value.retryable
        assert (errors("busy"), errors("connection")) == (1, None)
        assert await store.list(limit=1) == []  # given back: it answers
        postgres_db.server.stop()
        try:
            with pytest.raises(StoreUnavailableError, match=UNAVAILABLE) as down:
                await store.list(limit=1)
            assert not isinstance(down.value, StoreBusyError)
            with pytest.raises(StoreUnavailableError, match=UNAVAILABLE) as down:
                await store.list(limit=1)  # no connection to lend: it cannot connect
            assert not isinstance(down.value, StoreBusyError)
            assert (errors("busy"), errors("connection")) == (1, 2)
        finally:
            postgres_db.server.start()


async def test_a_call_outwaits_a_pool_busy_for_a_few_of_its_time_outs(
    postgres_db: PostgresDatabase,
) -> None:
    async with _store(postgres_db, 1) as store, AsyncExitStack() as held:
        await held.enter_async_context(store.pool.connection())
        async with anyio.create_task_group() as tg:
            tg.start_soon(_release_after, 0.8, held)  # over two of the pool's 0.3 s
            assert await store.list(limit=1) == []


async def test_a_call_waits_for_a_connection_until_its_own_deadline(
    postgres_db: PostgresDatabase,
) -> None:
    """Inside a deadline (a tool call's wait), a call outwaits the pool's 0.3 s."""
    async with _store(postgres_db, 1) as store, AsyncExitStack() as held:
        await held.enter_async_context(store.pool.connection())
        async with anyio.create_task_group() as tg:
            tg.start_soon(_release_after, 1.0, held)
            with anyio.fail_after(20):
                began = anyio.current_time()
                assert await store.list(limit=1) == []
        assert anyio.current_time() - began >= 0.9
        await held.enter_async_context(store.pool.connection())
        with anyio.move_on_after(0.5) as scope:  # a deadline ends the wait, not an error
            await store.list(limit=1)
        assert scope.cancelled_caught


async def test_listings_do_not_queue_behind_the_tasks_work(postgres_db: PostgresDatabase) -> None:
    """Submits, status changes and following a task (``get``) take every other
    connection: a listing, completion and usage still answer at once."""
    size = 10
    async with _store(postgres_db, size) as store:
        local_id = await store.begin_submission(model="m", family="veo", arguments={})
        await store.complete_submission(local_id, task_id="t-listed", status=TaskStatus.QUEUED)
        async with _all_held(store, size - read_size(size)):
            with pytest.raises(StoreBusyError):
                await store.begin_submission(model="m", family="veo", arguments={})
            with pytest.raises(StoreBusyError):
                await store.get("t-listed")
            with anyio.fail_after(1):
                assert [t.local_id for t in await store.list(limit=5)] == [local_id]
                assert await store.task_ids_starting_with("t-", limit=5) == (["t-listed"], 1)
                assert (await store.usage()).tasks_today == 1


async def test_an_accepted_submit_is_recorded_once_a_connection_is_free(
    postgres_db: PostgresDatabase,
) -> None:
    """The pool stays busy for over three of its time-outs and the caller gives up at
    once: the task id the upstream gave is recorded all the same."""
    async with _store(postgres_db, 1) as store, AsyncExitStack() as held:
        local_id = await store.begin_submission(model="m", family="veo", arguments={})
        await held.enter_async_context(store.pool.connection())
        async with anyio.create_task_group() as tg:
            tg.start_soon(_release_after, 1.0, held)
            with anyio.CancelScope() as caller:
                caller.cancel()  # the caller went away: the answer is recorded anyway
                await store.complete_submission(
                    local_id, task_id="t-paid", status=TaskStatus.QUEUED
                )
        got = await store.get("t-paid")
    assert got is not None
    assert got.local_id == local_id
    assert got.status is JournalStatus.QUEUED
    assert [e.status for e in got.events] == [JournalStatus.SUBMITTING, JournalStatus.QUEUED]


async def test_an_accepted_submit_is_recorded_once_the_database_is_back(
    postgres_db: PostgresDatabase,
) -> None:
    async with _store(postgres_db, 2) as store:
        local_id = await store.begin_submission(model="m", family="veo", arguments={})
        postgres_db.server.stop()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: store.complete_submission(
                        local_id, task_id="t-kept", status=TaskStatus.QUEUED
                    )
                )
                await anyio.sleep(1.0)  # it has failed and is trying again
                await anyio.to_thread.run_sync(postgres_db.server.start)
        finally:
            postgres_db.server.start()
        got = await store.get("t-kept")
    assert got is not None
    assert got.local_id == local_id
    assert got.status is JournalStatus.QUEUED


async def test_leases_are_renewed_while_every_connection_is_busy(
    postgres_db: PostgresDatabase,
) -> None:
    async with _store(postgres_db, 1) as store:
        lease = await store.try_lease("t-held", LeaseKind.SAVE)
        assert isinstance(lease, PgLease)
        async with _all_held(store, 1):
            with pytest.raises(StoreBusyError):
                await store.get("t-held")
            with anyio.fail_after(5):
                await store.leases.renew()  # on the heartbeat's own connection
        assert not lease.lost
        await lease.release()
