"""One poller per task across replicas: waits on other processes read what the poller
recorded (woken by its change) instead of asking upstream, and take over when it stops.

Each replica here is what a server process holds: its own task store on the shared
database (or its own journal on the shared state folder), its own ``VideoService``
(own ``Follow``, own single-flight polls, own background saves) and its own way to the
one simulator, which counts its task queries. The output folder is shared, as a team's
storage is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest

from gravitex_mcp.domain import JournalStatus, TaskStatus
from gravitex_mcp.metrics import Metrics
from gravitex_mcp.results import CheckVideoTaskResult
from gravitex_mcp.service.polling import recorded_snapshot
from gravitex_mcp.service.videos import VideoService
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.postgres import PostgresTaskStore
from gravitex_mcp.store.records import TaskRecord
from gravitex_mcp.store.seam import TaskStore
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.client import GravitexClient
from gravitex_mcp.upstream.observe import endpoint_of
from tests.conftest import PostgresDatabase
from tests.server_harness import API_KEY, make_settings
from tests.store.test_postgres_store import FrozenClock

#: Done 17 s after its submit: between a wait's polls at 14.5 s and 19.5 s (PollSchedule),
#: so a poll that slips a step on the paced clock does not change how many there are.
SIM = SimulatorConfig(api_keys=frozenset({API_KEY}), queued_seconds=2, processing_seconds=15)
#: Every wait here (fake seconds): far past the task's end and its save.
WAIT = 600.0
MODEL = "wan2.5-t2v-preview"  # fetched from the task's URL


class PacedClock:
    """Fake time that :meth:`drive` moves on a step at a time at a bounded pace.

    A ``FakeClock`` jumps as soon as anything sleeps, which one process needs; across
    processes a replica that waits by sleeping (for another's lease, on the journal)
    would race past every deadline while the other does real work (a download, a
    database round trip). Here nothing moves until :meth:`drive` runs.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self._moved = anyio.Event()
        self._deadlines: list[tuple[float, anyio.CancelScope]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await anyio.lowlevel.checkpoint()
        target = self.now + seconds
        while self.now < target:
            await self._moved.wait()

    def deadline(self, seconds: float) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        self._deadlines.append((self.now + seconds, scope))
        if seconds <= 0:
            scope.cancel()
        return scope

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [scope for at, scope in self._deadlines if at <= self.now]
        self._deadlines = [(at, scope) for at, scope in self._deadlines if at > self.now]
        for scope in due:
            scope.cancel()
        self._moved.set()
        self._moved = anyio.Event()

    async def drive(self, step: float = 0.25, pace: float = 0.002) -> None:
        """Forever: ``step`` fake seconds every ``pace`` real ones (cancel to stop)."""
        while True:
            await anyio.sleep(pace)
            self.advance(step)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(self.drive)
            yield
            group.cancel_scope.cancel()


class Upstream(httpx2.AsyncBaseTransport):
    """One replica's way to the shared simulator: its task queries counted; while
    ``hung``, a query never answers (the replica is stuck: its process stopped)."""

    def __init__(self, sim: Simulator) -> None:
        self.inner = simulator_transport(sim)
        self.queries = 0
        self.first_query_at: float | None = None  # real time (the database's leases' time)
        self.hung = False
        self.stuck = anyio.Event()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if endpoint_of(request, "api.gravitex.ai") == "query":
            self.queries += 1
            if self.first_query_at is None:
                self.first_query_at = anyio.current_time()
            if self.hung:
                self.stuck.set()
                await anyio.sleep_forever()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Replica:
    service: VideoService
    upstream: Upstream
    results: list[CheckVideoTaskResult] = field(default_factory=list)

    async def wait(self, task_id: str, *, download: bool = True) -> None:
        self.results.append(await self.service.check(task_id, wait_seconds=WAIT, download=download))


@asynccontextmanager
async def replica(
    root: Path, store: TaskStore, sim: Simulator, clock: PacedClock, metrics: Metrics | None = None
) -> AsyncIterator[Replica]:
    settings = make_settings(root)  # the output folder under root: shared by the replicas
    upstream = Upstream(sim)
    async with GravitexClient(
        api_key=API_KEY, base_url=settings.base_url, transport=upstream
    ) as client:
        service = VideoService(
            settings=settings,
            client=client,
            journal=store,
            output=OutputDir(settings.output_dir),
            clock=clock,
            metrics=metrics,
        )
        async with service.running():
            yield Replica(service, upstream)


def _saved_at(result: CheckVideoTaskResult) -> str | None:
    saved = result.saved_video()
    return None if saved is None else saved.path


async def _submit(via: Replica) -> str:
    made = await via.service.generate({"model": MODEL, "prompt": "a cat", "wait_seconds": 0})
    return made.task_id


async def _twenty_waits(a: Replica, b: Replica, clock: PacedClock, output: Path) -> None:
    """The shared test: what one process's wait costs upstream, then 20 waits split
    10/10 over ``a`` and ``b`` on one task; the answers and the save they end with."""
    solo = await _submit(a)
    async with clock.running():
        await a.wait(solo, download=False)
    solo_queries = a.upstream.queries
    assert a.results.pop().status is TaskStatus.SUCCEEDED

    task_id = await _submit(a)
    before = {"a": a.upstream.queries, "b": b.upstream.queries}
    async with anyio.create_task_group() as clocked:
        async with anyio.create_task_group() as waits:
            for side in (a, b):
                for _ in range(10):
                    waits.start_soon(side.wait, task_id)
            # Time stands still until every call waits (each first reads the store).
            with anyio.fail_after(30):
                while a.service.waiting(task_id) + b.service.waiting(task_id) < 20:
                    await anyio.lowlevel.checkpoint()
            clocked.start_soon(clock.drive)
        clocked.cancel_scope.cancel()
    queries = {"a": a.upstream.queries - before["a"], "b": b.upstream.queries - before["b"]}

    assert solo_queries >= 3  # the task took several polls
    assert min(queries.values()) == 0, queries  # one replica polled; the other read it
    assert sum(queries.values()) <= solo_queries, (queries, solo_queries)
    results = a.results + b.results
    assert len(results) == 20
    assert {(r.status, r.url) for r in results} == {(TaskStatus.SUCCEEDED, results[0].url)}
    assert results[0].url
    saved = {_saved_at(r) for r in results}
    assert len(saved) == 1, saved
    assert None not in saved
    assert [p.name for p in output.glob("*.mp4")] == [f"{task_id}.mp4"]


@pytest.mark.slow  # a real PostgreSQL server
async def test_twenty_waits_on_two_replicas_poll_as_one_process_and_save_once(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    clock = PacedClock()
    sim = Simulator(SIM, clock=clock.monotonic)
    metrics = Metrics()
    async with (
        PostgresTaskStore.open(postgres_db.dsn) as store_a,
        PostgresTaskStore.open(postgres_db.dsn) as store_b,
        replica(tmp_path, store_a, sim, clock, metrics) as a,
        replica(tmp_path, store_b, sim, clock, metrics) as b,
    ):
        with anyio.fail_after(10):
            await store_a.feed.listening.wait()
            await store_b.feed.listening.wait()
        await _twenty_waits(a, b, clock, tmp_path / "videos")
    assert sim.calls["file"] == 1
    saved = metrics.registry.get_sample_value("gravitex_saves_total", {"outcome": "saved"})
    assert saved == 1
    size = next((tmp_path / "videos").glob("*.mp4")).stat().st_size
    assert metrics.registry.get_sample_value("gravitex_saved_bytes_total") == size


async def test_two_journals_on_one_state_folder_poll_as_one_process(tmp_path: Path) -> None:
    # The embedded default, two processes on one machine: lock files, no notifications.
    clock = PacedClock()
    sim = Simulator(SIM, clock=clock.monotonic)
    state = tmp_path / "state"
    with _journal(state, clock) as journal_a, _journal(state, clock) as journal_b:
        async with (
            replica(tmp_path, journal_a, sim, clock) as a,
            replica(tmp_path, journal_b, sim, clock) as b,
        ):
            await _twenty_waits(a, b, clock, tmp_path / "videos")
    assert sim.calls["file"] == 1


@contextmanager
def _journal(state: Path, clock: PacedClock) -> Iterator[Journal]:
    journal = Journal.open(state, clock=clock)
    try:
        yield journal
    finally:
        journal.close()


@pytest.mark.slow  # a real PostgreSQL server, and a lease left to lapse
async def test_a_replica_that_stops_mid_wait_is_taken_over(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    clock = PacedClock()
    sim = Simulator(SIM, clock=clock.monotonic)
    metrics = Metrics()
    # Replica a's renewals never run: once it stops, its lease lapses within a second.
    async with (
        PostgresTaskStore.open(postgres_db.dsn, clock=FrozenClock(), lease_seconds=1.0) as store_a,
        PostgresTaskStore.open(postgres_db.dsn, metrics=metrics) as store_b,
        replica(tmp_path, store_a, sim, clock) as a,
        replica(tmp_path, store_b, sim, clock) as b,
    ):
        task_id = await _submit(a)
        a.upstream.hung = True
        async with anyio.create_task_group() as group:
            group.start_soon(a.wait, task_id)
            with anyio.fail_after(10):
                await a.upstream.stuck.wait()  # a leads, and stops in its first query
            group.start_soon(clock.drive)
            with anyio.fail_after(30):
                await b.wait(task_id)
            group.cancel_scope.cancel()  # a never comes back
    [finished] = b.results
    assert finished.status is TaskStatus.SUCCEEDED
    where = _saved_at(finished)
    assert where is not None
    assert Path(where).is_file()
    assert a.upstream.queries == 1  # the one it never got an answer to
    # b asked nothing upstream while a's lease lasted (a second from a's take)
    assert a.upstream.first_query_at is not None
    assert b.upstream.first_query_at is not None
    assert b.upstream.first_query_at - a.upstream.first_query_at > 0.5
    taken = metrics.registry.get_sample_value("gravitex_lease_takeovers_total", {"lease": "poll"})
    assert taken == 1


def _record(model: str, status: JournalStatus, url: str | None) -> TaskRecord:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    return TaskRecord(
        local_id="l-1",
        task_id="t-1",
        model=model,
        family="sora" if model == "sora-2" else "wan",
        arguments={},
        status=status,
        url=url,
        created_at=at,
        updated_at=at,
    )


@pytest.mark.parametrize(
    ("model", "status", "url", "usable"),
    [
        (MODEL, JournalStatus.SUCCEEDED, None, False),  # its video needs the URL: not yet
        (MODEL, JournalStatus.SUCCEEDED, "https://files.example/v.mp4?sig=1", True),
        ("sora-2", JournalStatus.SUCCEEDED, None, True),  # fetched from the download endpoint
        (MODEL, JournalStatus.SUBMITTING, None, False),  # no answer from upstream yet
        (MODEL, JournalStatus.IN_PROGRESS, None, True),
    ],
)
def test_what_another_replica_recorded_is_read_as_its_answer(
    model: str, status: JournalStatus, url: str | None, usable: bool
) -> None:
    snapshot = recorded_snapshot(_record(model, status, url))
    assert (snapshot is not None) is usable
    if snapshot is not None:
        assert (snapshot.status.value, snapshot.url) == (status.value, url)
