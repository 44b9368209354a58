"""What only the PostgreSQL task store has (the shared behaviour is in
test_task_store_contract.py): migrations raced by replicas starting at once, leases
renewed and fenced, changes notified across replicas, and a database that goes away
and comes back. All against the tests' real PostgreSQL (``postgres_db``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import psycopg
import pytest

from gravitex_mcp.domain import JournalStatus, TaskStatus
from gravitex_mcp.errors import JournalError, StoreUnavailableError
from gravitex_mcp.store.pg_leases import PgLease
from gravitex_mcp.store.pg_schema import MIGRATION_LOCK, schema_version
from gravitex_mcp.store.postgres import PostgresTaskStore
from gravitex_mcp.store.seam import LeaseBusy, LeaseKind
from tests.conftest import PostgresDatabase

pytestmark = pytest.mark.slow  # a real PostgreSQL server, and processes killed

UNAVAILABLE = "database is unreachable; nothing was lost; call again in a few seconds"


class FrozenClock:
    """A clock whose sleeps end only when the test says: renewals happen on demand."""

    def __init__(self) -> None:
        self.now = 0.0
        self._tick = anyio.Event()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + seconds
        while self.now < target:
            await self._tick.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._tick.set()
        self._tick = anyio.Event()


@asynccontextmanager
async def _store(db: PostgresDatabase, **options: object) -> AsyncIterator[PostgresTaskStore]:
    async with PostgresTaskStore.open(db.dsn, **options) as store:  # type: ignore[arg-type]
        yield store


async def _submitted(store: PostgresTaskStore, task_id: str) -> str:
    local_id = await store.begin_submission(model="m", family="veo", arguments={"p": task_id})
    await store.complete_submission(local_id, task_id=task_id, status=TaskStatus.SUBMITTED)
    return local_id


# --- migrations ------------------------------------------------------------------


async def test_replicas_starting_at_once_all_migrate_once(postgres_db: PostgresDatabase) -> None:
    opened: list[int] = []

    async def replica() -> None:
        async with _store(postgres_db, min_size=1, max_size=2) as store:
            opened.append(len(await store.list(limit=1)))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(replica)
    assert opened == [0] * 8
    with psycopg.connect(postgres_db.dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, schema_version() + 1))


async def test_a_newer_schema_is_refused(postgres_db: PostgresDatabase) -> None:
    async with _store(postgres_db):
        pass
    with psycopg.connect(postgres_db.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (schema_version() + 5,))
    with pytest.raises(JournalError, match="newer than this gravitex-mcp understands"):
        async with _store(postgres_db):
            pass


async def test_migrations_wait_for_the_replica_migrating(postgres_db: PostgresDatabase) -> None:
    """While another session holds the migration lock, start-up waits, then goes on."""
    with psycopg.connect(postgres_db.dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        done = anyio.Event()

        async def replica() -> None:
            async with _store(postgres_db):
                done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(replica)
            await anyio.sleep(0.5)
            assert not done.is_set()  # waiting for the lock
            holder.rollback()  # lets go of the lock
            with anyio.fail_after(20):
                await done.wait()


# --- leases ----------------------------------------------------------------------


async def test_a_live_holder_renews_its_lease(postgres_db: PostgresDatabase) -> None:
    async with _store(postgres_db, lease_seconds=1.5) as holder, _store(postgres_db) as other:
        lease = await holder.try_lease("t-1", LeaseKind.SAVE)
        assert isinstance(lease, PgLease)
        await anyio.sleep(3.5)  # over two lease times, renewed every 0.5 s
        assert isinstance(await other.try_lease("t-1", LeaseKind.SAVE), LeaseBusy)
        assert not lease.lost
        await lease.release()
        assert isinstance(await other.try_lease("t-1", LeaseKind.SAVE), PgLease)


async def test_a_stalled_holder_is_fenced_off(postgres_db: PostgresDatabase) -> None:
    """A holder that stops renewing loses its lease to the next, whose fencing token is
    larger; its own late renewal then finds the lease lost, and its release is a no-op."""
    clock = FrozenClock()
    async with (
        _store(postgres_db, lease_seconds=0.5, clock=clock) as stalled,
        _store(postgres_db) as other,
    ):
        first = await stalled.try_lease("t-2", LeaseKind.SAVE)
        assert isinstance(first, PgLease)
        assert isinstance(await other.try_lease("t-2", LeaseKind.SAVE), LeaseBusy)
        await anyio.sleep(0.7)  # the database's clock passes the expiry
        second = await other.try_lease("t-2", LeaseKind.SAVE)
        assert isinstance(second, PgLease)
        assert second.token > first.token
        await stalled.leases.renew()
        assert first.lost
        await first.release()  # must not delete the new holder's row
        assert isinstance(await stalled.try_lease("t-2", LeaseKind.SAVE), LeaseBusy)
        clock.advance(1.0)  # the heartbeat runs once more: nothing of the lost lease left
        await second.release()


async def test_a_lease_taken_while_a_renewal_runs_is_not_lost(
    postgres_db: PostgresDatabase,
) -> None:
    """A renewal renews the leases held when it began: one taken while its statement
    runs (after the statement's snapshot) is not in it, and is not lost."""
    async with _store(postgres_db, clock=FrozenClock()) as store:
        first = await store.try_lease("t-a", LeaseKind.SAVE)
        assert isinstance(first, PgLease)
        with psycopg.connect(postgres_db.dsn) as blocker:
            blocker.execute("SELECT 1 FROM leases WHERE task_id = 't-a' FOR UPDATE")
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.leases.renew)
                await anyio.sleep(0.5)  # the renewal waits for the row the test locked
                second = await store.try_lease("t-b", LeaseKind.SAVE)
                blocker.rollback()
        assert isinstance(second, PgLease)
        assert not first.lost
        assert not second.lost
        await first.release()
        await second.release()


async def test_lease_time_is_bounded() -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        async with PostgresTaskStore.open("postgresql://nowhere/x", lease_seconds=30):
            pass


async def test_shutdown_releases_this_replicas_leases(postgres_db: PostgresDatabase) -> None:
    async with _store(postgres_db) as other:
        async with _store(postgres_db) as leaving:
            assert isinstance(await leaving.try_lease("t-3", LeaseKind.SAVE), PgLease)
            claim = await leaving.claim_key(
                "k", arguments_hash="h", model="m", family="veo", arguments={}
            )
        # gone cleanly: its save lease is free, its key's submit outcome unknown at once
        assert isinstance(await other.try_lease("t-3", LeaseKind.SAVE), PgLease)
        again = await other.claim_key(
            "k", arguments_hash="h", model="m", family="veo", arguments={}
        )
        assert again.holder is not None
        assert again.holder.local_id == claim.local_id
        assert again.holder.status is JournalStatus.SUBMIT_UNKNOWN


# --- changes across replicas --------------------------------------------------------


async def test_a_status_change_wakes_waiters_on_other_replicas(
    postgres_db: PostgresDatabase,
) -> None:
    async with _store(postgres_db) as writer, _store(postgres_db) as reader:
        with anyio.fail_after(10):
            await reader.feed.listening.wait()
        seen = []
        async with reader.changes() as stream, anyio.create_task_group() as tg:
            local_id = await _submitted(writer, "t-n")
            with anyio.fail_after(10):
                submitted = await stream.receive()  # the submit's own change, first
            assert (submitted.task_id, submitted.status) == ("t-n", "submitted")
            # Nobody waited when it came: kept for the next wait, which returns at once.
            kept = await reader.feed.wait_for_change("t-n", timeout=0)
            assert kept is not None
            assert kept.status == "submitted"

            async def wait() -> None:
                seen.append(await reader.feed.wait_for_change("t-n", timeout=10))

            tg.start_soon(wait)
            await anyio.sleep(0.1)  # the waiter is registered
            await writer.record_status("t-n", status=TaskStatus.IN_PROGRESS)
            await writer.record_status("t-n", status=TaskStatus.IN_PROGRESS)  # no change: silent
            await writer.record_status("t-n", status=TaskStatus.SUCCEEDED)
            with anyio.fail_after(10):
                streamed = [await stream.receive(), await stream.receive()]
        assert [(c.task_id, c.local_id, c.status) for c in streamed] == [
            ("t-n", local_id, "in_progress"),
            ("t-n", local_id, "succeeded"),
        ]
        assert seen[0] is not None
        assert seen[0].status == "in_progress"
        assert await reader.wait_for_change("t-n", timeout=0.2)  # succeeded, kept
        assert not await reader.wait_for_change("t-n", timeout=0.2)


# --- the database going away --------------------------------------------------------


async def test_a_stopped_database_says_so_and_loses_nothing(
    postgres_db: PostgresDatabase,
) -> None:
    async with _store(postgres_db, pool_timeout=2) as store:
        local_id = await _submitted(store, "t-kept")
        await store.record_status("t-kept", status=TaskStatus.SUCCEEDED)
        postgres_db.server.stop()
        try:
            with pytest.raises(StoreUnavailableError, match=UNAVAILABLE) as caught:
                await store.get("t-kept")
            assert caught.value.retryable
            with pytest.raises(StoreUnavailableError, match=UNAVAILABLE):
                await store.begin_submission(model="m", family="veo", arguments={})
        finally:
            postgres_db.server.start()
        with anyio.fail_after(30):
            while True:
                try:
                    got = await store.get("t-kept")
                    break
                except StoreUnavailableError:
                    await anyio.sleep(0.2)
        assert got is not None
        assert got.local_id == local_id
        assert got.status is JournalStatus.SUCCEEDED
        assert [e.status.value for e in got.events] == ["submitting", "submitted", "succeeded"]
        assert await _submitted(store, "t-after")


async def test_a_database_down_at_start_up_says_so(postgres_db: PostgresDatabase) -> None:
    postgres_db.server.stop()
    try:
        with pytest.raises(StoreUnavailableError, match=UNAVAILABLE):
            async with _store(postgres_db, pool_timeout=1):
                pass
    finally:
        postgres_db.server.start()


async def test_an_error_in_the_block_comes_out_as_is(postgres_db: PostgresDatabase) -> None:
    """Not wrapped in an exception group by the store's background tasks."""
    with pytest.raises(KeyError):
        async with _store(postgres_db):
            raise KeyError("mine")


async def test_a_live_replicas_submit_is_not_expired_as_stale(
    postgres_db: PostgresDatabase,
) -> None:
    """A replica starting up marks stale ``submitting`` rows unknown, but not one whose
    submit lease another replica still renews (its answer may yet come)."""
    later = [datetime(2025, 1, 1, tzinfo=UTC)]
    async with _store(postgres_db, now=lambda: later[0]) as busy:
        claim = await busy.claim_key("k", arguments_hash="h", model="m", family="veo", arguments={})
        orphan = await busy.begin_submission(model="m", family="veo", arguments={})
        later[0] += timedelta(hours=1)
        assert await busy.expire_stale_submissions(older_than=timedelta(minutes=10)) == 1
        assert claim.local_id is not None
        kept, marked = await busy.get(claim.local_id), await busy.get(orphan)
        assert kept is not None
        assert kept.status is JournalStatus.SUBMITTING
        assert marked is not None
        assert marked.status is JournalStatus.SUBMIT_UNKNOWN


async def test_a_message_with_a_nul_is_kept(postgres_db: PostgresDatabase) -> None:
    """PostgreSQL text cannot hold NUL: an upstream message with one is kept, shown as
    U+FFFD, rather than failing the write."""
    async with _store(postgres_db) as store:
        await _submitted(store, "t-nul")
        got = await store.record_status("t-nul", status=TaskStatus.FAILED, error_message="a\x00b")
        assert got is not None
        assert got.error_message == "a\ufffdb"
        refused = await store.begin_submission(model="m", family="veo", arguments={"p": "\x00"})
        await store.fail_submission(refused, message="bad\x00", outcome_unknown=False)
        row = await store.get(refused)
        assert row is not None
        assert row.arguments == {"p": "\x00"}  # JSON keeps it escaped
        assert row.error_message == "bad\ufffd"


async def test_rows_from_before_users_belong_to_the_local_user(
    postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gravitex_mcp.store import pg_schema

    monkeypatch.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:1])
    async with _store(postgres_db):
        pass  # schema v1: no users
    at = datetime(2026, 1, 1, tzinfo=UTC)
    with psycopg.connect(postgres_db.dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO tasks (local_id, task_id, model, family, arguments, status,"
            " created_at, updated_at, arguments_hash) VALUES ('l1', 'video_old', 'sora-2',"
            " 'sora', '{}', 'succeeded', %s, %s, 'h1')",
            (at, at),
        )
        conn.execute(
            "INSERT INTO idempotency_keys (key, arguments_hash, local_id, created_at)"
            " VALUES ('old-key', 'h1', 'l1', %s)",
            (at,),
        )
    monkeypatch.undo()
    async with _store(postgres_db) as store:
        assert (await store.get("video_old")) is not None
        bob = store.for_user("bob")
        assert await bob.get("video_old") is None
        assert await bob.is_foreign("video_old")
        held = await store.claim_key(
            "old-key", arguments_hash="h1", model="sora-2", family="sora", arguments={}
        )
        assert held.holder is not None
        assert held.holder.task_id == "video_old"
        bobs = await bob.claim_key(
            "old-key", arguments_hash="h1", model="sora-2", family="sora", arguments={}
        )
        assert bobs.local_id is not None
        await bob.fail_submission(bobs.local_id, message="test", outcome_unknown=False)
