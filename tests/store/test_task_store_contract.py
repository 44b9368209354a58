"""The TaskStore contract, written once and held against every backend: the SQLite
``Journal`` (a temp state folder) and ``PostgresTaskStore`` (a fresh database on the
tests' real PostgreSQL, ``postgres_db``).

"A holder whose process died" is a real process (tests/task_store_holder.py) killed
with SIGKILL: for SQLite its flock goes with it; for PostgreSQL its lease rows stop
being renewed and lapse after the lease time (the database's clock).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from gravitex_mcp.domain import JournalStatus, TaskStatus
from gravitex_mcp.errors import InvalidArgumentsError, JournalError
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.seam import Lease, LeaseBusy, LeaseKind, TaskStore

pytestmark = pytest.mark.slow  # a real PostgreSQL server, and processes killed

REPO = Path(__file__).resolve().parent.parent
START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
#: The PostgreSQL stores' lease time here: a dead holder's lapses this fast.
LEASE_SECONDS = 2.0
SIGNED_URL = "https://cdn.example.com/out/v.mp4?Expires=1735960000&Signature=s3cr3t"


class FakeClock:
    """The records' clock: one second forward on every reading; thread-safe."""

    def __init__(self) -> None:
        self.current = START
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self.current += timedelta(seconds=1)
            return self.current


@dataclass
class Backend:
    """One backend under the contract: opens stores on the same shared state."""

    name: str
    state_dir: Path
    dsn: str | None
    clock: FakeClock

    @property
    def where(self) -> str:
        return self.dsn if self.dsn is not None else str(self.state_dir)

    @property
    def takeover_within(self) -> float:
        """How long a dead holder's lease may outlive it (real seconds)."""
        return 0.0 if self.dsn is None else LEASE_SECONDS

    @asynccontextmanager
    async def open(self) -> AsyncIterator[TaskStore]:
        if self.dsn is None:
            journal = Journal.open(self.state_dir, now=self.clock)
            try:
                yield journal
            finally:
                journal.close()
        else:
            from gravitex_mcp.store.postgres import PostgresTaskStore

            async with PostgresTaskStore.open(
                self.dsn, now=self.clock, lease_seconds=LEASE_SECONDS, pool_timeout=5
            ) as store:
                yield store

    @contextmanager
    def holder(self, what: str, arg: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
        """A process holding ``what`` (claim/lease) of ``arg``: its first line, and it."""
        env = {**os.environ, "GRAVITEX_TEST_LEASE_SECONDS": str(LEASE_SECONDS)}
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.task_store_holder", self.name, self.where, what, arg],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            assert line, child.stderr.read() if child.stderr else "no output"
            yield line, child
        finally:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=30)
            for stream in (child.stdout, child.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    dsn = None
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_db").dsn
    return Backend(request.param, tmp_path / "state", dsn, FakeClock())


async def _submitted(store: TaskStore, task_id: str, *, model: str = "veo-3.1") -> str:
    local_id = await store.begin_submission(
        model=model, family="veo", arguments={"prompt": task_id}
    )
    await store.complete_submission(local_id, task_id=task_id, status=TaskStatus.SUBMITTED)
    return local_id


async def _claim(store: TaskStore, key: str, digest: str = "h1") -> tuple[str | None, str]:
    claim = await store.claim_key(
        key, arguments_hash=digest, model="m", family="veo", arguments={"prompt": key}
    )
    if claim.local_id is not None:
        return claim.local_id, "claimed"
    assert claim.holder is not None
    return claim.holder.local_id, claim.holder.status.value


# --- records and history --------------------------------------------------------


async def test_the_life_of_a_task(backend: Backend, tmp_path: Path) -> None:
    async with backend.open() as store:
        local_id = await store.begin_submission(
            model="veo-3.1",
            family="veo",
            arguments={"prompt": "a cat", "n": 1},
            arguments_hash="d1",
        )
        begun = await store.get(local_id)
        assert begun is not None
        assert begun.status is JournalStatus.SUBMITTING
        assert begun.task_id is None
        assert begun.arguments == {"prompt": "a cat", "n": 1}

        done = await store.complete_submission(local_id, task_id="t-1", status=TaskStatus.SUBMITTED)
        assert done.task_id == "t-1"
        assert done.status is JournalStatus.SUBMITTED
        await store.record_status("t-1", status=TaskStatus.IN_PROGRESS, raw_status="running")
        seen = await store.record_status("t-1", status=TaskStatus.SUCCEEDED, url=SIGNED_URL)
        assert seen is not None
        assert seen.url == SIGNED_URL
        assert seen.url_expires_at == datetime.fromtimestamp(1735960000, UTC)
        assert seen.model_dump()["url"] == "https://cdn.example.com/out/v.mp4"

        saved = tmp_path / "v.mp4"
        await store.record_download("t-1", path=saved, size_bytes=12, sha256="ab", identity="1:2")
        await store.record_identity("t-1", path=saved, identity="1:3")
        await store.record_identity("t-1", path=tmp_path / "other.mp4", identity="9:9")  # ignored

        got = await store.get("t-1")
        assert got is not None
        assert got == await store.get(local_id)
        assert got.saved_path == str(saved)
        assert got.size_bytes == 12
        assert got.sha256 == "ab"
        assert got.saved_identity == "1:3"
        assert got.downloaded_at is not None
        assert [(e.status.value, e.detail) for e in got.events] == [
            ("submitting", None),
            ("submitted", "task id t-1"),
            ("in_progress", "upstream status 'running'"),
            ("succeeded", None),
        ]
        assert [r.task_id for r in await store.list(limit=5)] == ["t-1"]


async def test_history_grows_only_on_change_and_terminal_sticks(backend: Backend) -> None:
    async with backend.open() as store:
        await _submitted(store, "t-2")
        for _ in range(3):
            await store.record_status("t-2", status=TaskStatus.QUEUED)
        await store.record_status(
            "t-2", status=TaskStatus.FAILED, error_code=7, error_message="nsfw"
        )
        late = await store.record_status("t-2", status=TaskStatus.IN_PROGRESS)  # out of order
        assert late is not None
        assert late.status is JournalStatus.FAILED
        got = await store.get("t-2")
        assert got is not None
        assert [e.status.value for e in got.events] == [
            "submitting",
            "submitted",
            "queued",
            "failed",
        ]
        assert got.events[-1].detail == "7: nsfw"
        assert got.error_code == "7"
        assert got.error_message == "nsfw"


async def test_unknown_tasks_are_not_recorded(backend: Backend, tmp_path: Path) -> None:
    async with backend.open() as store:
        assert await store.record_status("nope", status=TaskStatus.SUCCEEDED) is None
        await store.record_download("nope", path=tmp_path / "x", size_bytes=1, sha256="0")
        assert await store.get("nope") is None
        # An id no stored one can be (a lone surrogate) is unknown too, not a crash.
        assert await store.get("\ud800") is None
        assert await store.record_status("\ud800", status=TaskStatus.SUCCEEDED) is None
        assert await store.list(limit=10) == []


async def test_list_newest_first_filtered_and_checked(backend: Backend) -> None:
    async with backend.open() as store:
        for n in range(4):
            await _submitted(store, f"t-{n}")
        await store.record_status("t-1", status=TaskStatus.SUCCEEDED)
        assert [r.task_id for r in await store.list(limit=3)] == ["t-3", "t-2", "t-1"]
        assert [r.task_id for r in await store.list(limit=10, status="succeeded")] == ["t-1"]
        with pytest.raises(InvalidArgumentsError):
            await store.list(limit=0)
        with pytest.raises(InvalidArgumentsError):
            await store.list(limit=5, status="bogus")


# --- submissions -----------------------------------------------------------------


async def test_failed_submissions_and_a_late_answer(backend: Backend) -> None:
    async with backend.open() as store:
        refused = await store.begin_submission(model="m", family="veo", arguments={})
        await store.fail_submission(refused, message="bad prompt", outcome_unknown=False)
        lost = await store.begin_submission(model="m", family="veo", arguments={})
        await store.fail_submission(lost, message="timed out", outcome_unknown=True)
        got = await store.get(refused)
        assert got is not None
        assert got.status is JournalStatus.SUBMIT_FAILED
        assert got.error_message == "bad prompt"
        late = await store.complete_submission(lost, task_id="t-late", status=TaskStatus.QUEUED)
        assert late.status is JournalStatus.QUEUED
        with pytest.raises(JournalError):
            await store.fail_submission("no-such-id", message="x", outcome_unknown=True)


async def test_complete_submission_refuses_bad_ids(backend: Backend) -> None:
    async with backend.open() as store:
        first = await _submitted(store, "t-a")
        second = await store.begin_submission(model="m", family="veo", arguments={})
        with pytest.raises(JournalError, match="No submission"):
            await store.complete_submission("missing", task_id="t-x", status=TaskStatus.SUBMITTED)
        with pytest.raises(JournalError, match="already has task id"):
            await store.complete_submission(first, task_id="t-b", status=TaskStatus.SUBMITTED)
        with pytest.raises(JournalError, match="already recorded"):
            await store.complete_submission(second, task_id="t-a", status=TaskStatus.SUBMITTED)


async def test_stale_submissions_become_outcome_unknown(backend: Backend) -> None:
    async with backend.open() as store:
        stale = await store.begin_submission(model="m", family="veo", arguments={})
        backend.clock.current += timedelta(minutes=30)
        fresh = await store.begin_submission(model="m", family="veo", arguments={})
        assert await store.expire_stale_submissions(older_than=timedelta(minutes=10)) == 1
        stale_row, fresh_row = await store.get(stale), await store.get(fresh)
        assert stale_row is not None
        assert stale_row.status is JournalStatus.SUBMIT_UNKNOWN
        assert fresh_row is not None
        assert fresh_row.status is JournalStatus.SUBMITTING


async def test_recent_with_arguments(backend: Backend) -> None:
    async with backend.open() as store:
        old = await store.begin_submission(
            model="m", family="veo", arguments={}, arguments_hash="d"
        )
        backend.clock.current += timedelta(hours=2)
        new = await store.begin_submission(
            model="m", family="veo", arguments={}, arguments_hash="d"
        )
        await store.begin_submission(model="m", family="veo", arguments={}, arguments_hash="other")
        recent = await store.recent_with_arguments("d", within=timedelta(hours=1))
        assert [r.local_id for r in recent] == [new]
        both = await store.recent_with_arguments("d", within=timedelta(hours=3))
        assert [r.local_id for r in both] == [new, old]


# --- idempotency keys ----------------------------------------------------------


async def test_claim_key_same_key_same_task(backend: Backend) -> None:
    async with backend.open() as store:
        local_id, how = await _claim(store, "k1")
        assert how == "claimed"
        assert local_id is not None
        async with backend.open() as other:  # another replica (process) sharing the store
            again, status = await _claim(other, "k1")
            assert (again, status) == (local_id, "submitting")  # its holder lives: wait for it
            claim = await other.claim_key(
                "k1", arguments_hash="h2", model="m", family="veo", arguments={}
            )
            assert claim.local_id is None
            assert claim.holder is not None
            assert claim.arguments_hash == "h1"  # bound to other arguments: the caller refuses
        await store.complete_submission(local_id, task_id="t-k1", status=TaskStatus.SUBMITTED)
        again, status = await _claim(store, "k1")
        assert (again, status) == (local_id, "submitted")


async def test_a_refused_submission_frees_its_key(backend: Backend) -> None:
    async with backend.open() as store:
        first, _ = await _claim(store, "k2")
        assert first is not None
        await store.fail_submission(first, message="refused", outcome_unknown=False)
        second, how = await _claim(store, "k2", digest="h9")
        assert how == "claimed"
        assert second != first


async def test_concurrent_claims_have_one_winner(backend: Backend) -> None:
    async with backend.open() as store:
        results: list[tuple[str | None, str]] = []
        async with backend.open() as other:

            async def claim(s: TaskStore) -> None:
                results.append(await _claim(s, "k3"))

            async with anyio.create_task_group() as tg:
                for s in (store, other, store, other):
                    tg.start_soon(claim, s)
        assert sorted(how for _, how in results) == [
            "claimed",
            "submitting",
            "submitting",
            "submitting",
        ]
        assert len({local_id for local_id, _ in results}) == 1


async def test_a_dead_holders_key_is_outcome_unknown(backend: Backend) -> None:
    async with backend.open() as store:
        with backend.holder("claim", "k4") as (line, child):
            assert line.startswith("claimed ")
            local_id = line.split()[1]
            assert await _claim(store, "k4") == (local_id, "submitting")  # alive: wait
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        deadline = time.monotonic() + backend.takeover_within + 5
        while True:
            got = await _claim(store, "k4")
            if got[1] != "submitting" or time.monotonic() > deadline:
                break
            await anyio.sleep(0.1)
        assert got == (local_id, "submit_unknown")
        row = await store.get(local_id)
        assert row is not None
        assert "a task may exist upstream" in (row.error_message or "")


# --- leases ----------------------------------------------------------------------


async def test_one_lease_holder_at_a_time(backend: Backend) -> None:
    async with backend.open() as store:
        first = await store.try_lease("t-l", LeaseKind.SAVE)
        assert not isinstance(first, LeaseBusy)
        async with backend.open() as other:
            busy = await other.try_lease("t-l", LeaseKind.SAVE)
            assert isinstance(busy, LeaseBusy)
            assert busy.holder.startswith(f"pid {os.getpid()}")
            assert isinstance(await store.try_lease("t-l", LeaseKind.SAVE), LeaseBusy)
            assert not isinstance(await other.try_lease("t-other", LeaseKind.SAVE), LeaseBusy)
            await first.release()
            await first.release()  # idempotent
            second = await other.try_lease("t-l", LeaseKind.SAVE)
            assert not isinstance(second, LeaseBusy)
            assert isinstance(await store.try_lease("t-l", LeaseKind.SAVE), LeaseBusy)
            await second.release()
        third = await store.try_lease("t-l", LeaseKind.SAVE)
        assert not isinstance(third, LeaseBusy)
        await third.release()


async def test_a_tasks_poll_and_save_leases_are_apart(backend: Backend) -> None:
    async with backend.open() as store, backend.open() as other:
        save = await store.try_lease("t-k", LeaseKind.SAVE)
        poll = await other.try_lease("t-k", LeaseKind.POLL)  # saving does not stop polling
        assert not isinstance(save, LeaseBusy)
        assert not isinstance(poll, LeaseBusy)
        assert isinstance(await store.try_lease("t-k", LeaseKind.POLL), LeaseBusy)
        assert not save.lost
        assert not poll.lost
        await poll.release()
        again = await store.try_lease("t-k", LeaseKind.POLL)
        assert not isinstance(again, LeaseBusy)
        for lease in (save, again):
            await lease.release()


async def test_a_wait_for_a_change_nobody_makes_ends_on_time(backend: Backend) -> None:
    async with backend.open() as store:
        with anyio.fail_after(10):
            assert await store.wait_for_change("t-w", 0.2) is False


async def test_a_dead_holders_lease_is_taken_over(backend: Backend) -> None:
    async with backend.open() as store:
        with backend.holder("lease", "t-dead") as (line, child):
            assert line == "held"
            busy = await store.try_lease("t-dead", LeaseKind.SAVE)
            assert isinstance(busy, LeaseBusy)
            assert busy.holder.startswith(f"pid {child.pid}")
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        deadline = time.monotonic() + backend.takeover_within + 5
        got: Lease | LeaseBusy = LeaseBusy("never tried")
        while time.monotonic() < deadline:
            got = await store.try_lease("t-dead", LeaseKind.SAVE)
            if not isinstance(got, LeaseBusy):
                break
            await anyio.sleep(0.1)
        assert not isinstance(got, LeaseBusy), got
        await got.release()


# --- completion by prefix ---------------------------------------------------------


async def test_task_ids_by_prefix_with_counts(backend: Backend) -> None:
    async with backend.open() as store:
        for task_id in ["abc-1", "abc-2", "abc-3", "ABC-4", "ab%", "a_c", "xyz"]:
            await _submitted(store, task_id)
        await store.begin_submission(model="m", family="veo", arguments={})  # no task id yet
        assert await store.task_ids_starting_with("abc", limit=2) == (["abc-3", "abc-2"], 3)
        assert await store.task_ids_starting_with("ABC", limit=10) == (["ABC-4"], 1)
        assert await store.task_ids_starting_with("ab%", limit=10) == (["ab%"], 1)
        assert await store.task_ids_starting_with("a_", limit=10) == (["a_c"], 1)
        assert (await store.task_ids_starting_with("", limit=3))[1] == 7
        assert await store.task_ids_starting_with("\ud800", limit=3) == ([], 0)
        assert await store.task_ids_starting_with("q", limit=3) == ([], 0)


# --- one user's view (issue 18) -----------------------------------------------------


async def test_every_read_and_write_is_one_users(backend: Backend) -> None:
    async with backend.open() as root:
        assert root.user_id == "local"
        alice, bob = root.for_user("alice"), root.for_user("bob")
        assert alice.user_id == "alice"
        alice_local = await _submitted(alice, "t-alice")
        await _submitted(root, "t-local")
        # Bob finds nothing of alice's, by upstream or local id, and changes nothing.
        for reader in (bob, root):
            assert await reader.get("t-alice") is None
            assert await reader.get(alice_local) is None
            assert await reader.is_foreign("t-alice")
        assert not await alice.is_foreign("t-alice")
        assert not await bob.is_foreign("never-existed")
        assert [r.task_id for r in await bob.list(limit=10)] == []
        assert [r.task_id for r in await alice.list(limit=10)] == ["t-alice"]
        assert [r.task_id for r in await root.list(limit=10)] == ["t-local"]
        assert await bob.task_ids_starting_with("t-", limit=10) == ([], 0)
        assert await alice.task_ids_starting_with("t-", limit=10) == (["t-alice"], 1)
        assert await bob.record_status("t-alice", status=TaskStatus.FAILED) is None
        await bob.record_download("t-alice", path=Path("/x.mp4"), size_bytes=1, sha256="0")
        with pytest.raises(JournalError):
            await bob.complete_submission(
                alice_local, task_id="t-other", status=TaskStatus.SUBMITTED
            )
        mine = await alice.get("t-alice")
        assert mine is not None
        assert mine.user_id == "alice"
        assert (mine.status, mine.saved_path) == (JournalStatus.SUBMITTED, None)
        # The same key string from two users is two keys.
        first, how = await _claim(alice, "shared-key")
        assert how == "claimed"
        second, how = await _claim(bob, "shared-key")
        assert how == "claimed"
        assert second != first
        assert await bob.recent_with_arguments("h1", within=timedelta(days=1)) != []
        assert [
            r.local_id for r in await bob.recent_with_arguments("h1", within=timedelta(days=1))
        ] == [second]


async def test_budget_reservations_are_atomic_per_user(backend: Backend) -> None:
    from gravitex_mcp.store.records import OverBudget, Reservation

    async with backend.open() as one, backend.open() as two:
        a1, a2 = one.for_user("alice"), two.for_user("alice")
        for cap in (10.0, 20.0, 30.0):
            got: list[Reservation | OverBudget] = []

            async def reserve(
                store: TaskStore, got: list[Reservation | OverBudget], cap: float
            ) -> None:
                got.append(await store.reserve_seconds([6.0], budget=cap))

            async with anyio.create_task_group() as tg:
                tg.start_soon(reserve, a1, got, cap)
                tg.start_soon(reserve, a2, got, cap)
            assert sorted(type(g).__name__ for g in got) == ["OverBudget", "Reservation"]
            refused = next(g for g in got if isinstance(g, OverBudget))
            assert (refused.used, refused.left) == (cap - 4.0, 4.0)
            filler = await a1.reserve_seconds([4.0], budget=None)
            assert isinstance(filler, Reservation)
        batch = await a2.reserve_seconds([1.0, 2.0], budget=None)
        assert isinstance(batch, Reservation)
        assert len(batch.ids) == 2
        await a1.release_seconds(batch.ids[1])
        await one.for_user("bob").release_seconds(batch.ids[0])  # not bob's: nothing
        usage = await a2.usage()
        assert usage.seconds_today == 31.0
        assert (await one.for_user("bob").usage()).seconds_today == 0.0
