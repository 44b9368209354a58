"""One task, one poller, one file; unknown ids; bounded downloads that go on in the background."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from gravitex_mcp.errors import NotFoundError
from gravitex_mcp.service.singleflight import SharedPolls
from gravitex_mcp.service.videos import DOWNLOAD_BOUND_SECONDS
from gravitex_mcp.simulator import simulator_transport
from gravitex_mcp.store.tasklock import TaskLock, TaskLocks
from gravitex_mcp.upstream.client import TaskSnapshot
from gravitex_mcp.upstream.waiting import PollSchedule
from tests.conftest import FakeClock
from tests.server_harness import Harness, connected, make_harness, structured, text_of

RETRY_WORDS = ("again later", "try again", "in a minute")


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def _submit(client: Any, model: str = "wan2.5-t2v-preview") -> str:
    data = structured(
        await client.call_tool(
            "generate_video", {"model": model, "prompt": "a cat", "wait_seconds": 0}
        )
    )
    return str(data["task_id"])


# --- unknown task ids ------------------------------------------------------------------


async def test_unknown_task_id_says_unknown_without_retry_advice(h: Harness) -> None:
    async with connected(h) as client:
        checked = await client.call_tool(
            "check_video_task", {"task_id": "video_nosuchtask", "wait_seconds": 0}
        )
        downloaded = await client.call_tool("download_video", {"task_id": "video_nosuchtask"})
    for result in (checked, downloaded):
        text = text_of(result)
        assert result.is_error
        assert "unknown to the Gravitex API" in text
        assert "local journal has no task" in text
        assert "exists" not in text
        assert not any(word in text for word in RETRY_WORDS), text


async def test_unknown_task_known_to_the_journal_says_so(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client)
        del h.sim.tasks[task_id]  # expired upstream, or another key's task
        result = await client.call_tool("check_video_task", {"task_id": task_id})
    text = text_of(result)
    assert result.is_error
    assert "unknown to the Gravitex API" in text
    assert "local journal knows it" in text
    assert "wan2.5-t2v-preview" in text
    assert not any(word in text for word in RETRY_WORDS), text


async def test_refused_key_gets_no_retry_advice_but_a_fault_does(tmp_path: Path) -> None:
    clock = FakeClock()
    for name in ("good", "bad"):
        (tmp_path / name).mkdir()
    good = make_harness(tmp_path / "good", clock=clock)
    async with connected(good) as client:
        task_id = await _submit(client)
    bad = make_harness(tmp_path / "bad", sim=good.sim, clock=clock, api_key="sk-wrong-0000000")
    async with connected(bad) as client:
        refused = await client.call_tool("check_video_task", {"task_id": task_id})
    assert refused.is_error
    assert "401" in text_of(refused)
    assert not any(word in text_of(refused) for word in RETRY_WORDS), text_of(refused)
    good.sim.faults.add("query", "server_error", times=None, status=503)
    async with connected(good) as client:
        faulty = await client.call_tool("check_video_task", {"task_id": task_id, "wait_seconds": 0})
    assert faulty.is_error
    assert "again later" in text_of(faulty), text_of(faulty)


# --- one task, one poller, one file --------------------------------------------------------


async def _checks(client: Any, task_id: str, count: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []

    async def one() -> None:
        args = {"task_id": task_id, "wait_seconds": 60, "download": True}
        results.append(structured(await client.call_tool("check_video_task", args)))

    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)
    return results


class HeldQuery(httpx2.AsyncBaseTransport):
    """The simulator, with the first task query after :meth:`arm` held until the gate opens."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.armed = False
        self.held = anyio.Event()
        self.gate = anyio.Event()

    def arm(self) -> None:
        self.armed = True

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.armed and request.method == "GET" and "/generations/" in request.url.path:
            self.armed = False
            self.held.set()
            await self.gate.wait()
        return await self.inner.handle_async_request(request)


async def test_twenty_concurrent_waits_poll_as_one_and_save_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The calls of one process share one download job: none of them queues on the
    # cross-process task lock (that lock, and the journal's reuse of a saved file,
    # would also end with one file, but only after each call waited its turn).
    lock_attempts: list[str] = []
    real_try_acquire = TaskLocks.try_acquire

    def counting_try_acquire(self: TaskLocks, task_id: str) -> Any:
        lock_attempts.append(task_id)
        return real_try_acquire(self, task_id)

    monkeypatch.setattr(TaskLocks, "try_acquire", counting_try_acquire)
    caplog.set_level("INFO", logger="gravitex_mcp")
    clock = FakeClock()
    base = make_harness(tmp_path, clock=clock)
    transport = HeldQuery(simulator_transport(base.sim))
    h = make_harness(tmp_path, sim=base.sim, clock=clock, transport=transport)
    async with connected(h) as client:
        solo_task = await _submit(client)
        before = h.sim.calls["query"]
        (solo,) = await _checks(client, solo_task, 1)
        solo_queries = h.sim.calls["query"] - before
        Path(solo["path"]).unlink()

        task_id = await _submit(client)
        before, files = h.sim.calls["query"], h.sim.calls["file"]
        results: list[dict[str, Any]] = []

        async def run() -> None:
            results.extend(await _checks(client, task_id, 20))

        transport.arm()
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            # The first poll is held until every call is in: they all wait at once
            # (the fake clock would otherwise let the first finish before the last starts).
            await transport.held.wait()
            for _ in range(2000):
                await anyio.lowlevel.checkpoint()
            transport.gate.set()
        shared_queries = h.sim.calls["query"] - before
    assert solo_queries >= 3  # the task needed several polls
    assert shared_queries <= solo_queries, (shared_queries, solo_queries)
    assert len(results) == 20
    assert {r["status"] for r in results} == {"succeeded"}
    assert len({r["path"] for r in results}) == 1
    assert len(list(h.settings.output_dir.glob("*.mp4"))) == 1
    assert h.sim.calls["file"] - files == 1
    polls = [key for key in lock_attempts if key.startswith("poll:")]
    saves = [key for key in lock_attempts if key not in polls]
    assert saves == [solo_task, task_id], "one download, one lock, per task"
    assert polls == [f"poll:{solo_task}", f"poll:{task_id}"], "one poll loop, one lease"
    assert "being saved by another process" not in caplog.text


async def test_concurrent_downloads_share_one_query_and_a_fault_gets_retry_advice(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    base = make_harness(tmp_path, clock=clock)
    transport = HeldQuery(simulator_transport(base.sim))
    h = make_harness(tmp_path, sim=base.sim, clock=clock, transport=transport)
    async with connected(h) as client:
        task_id = await _submit(client)
        clock.now += 60  # finished upstream
        before = h.sim.calls["query"]
        results: list[Any] = []

        async def one() -> None:
            results.append(await client.call_tool("download_video", {"task_id": task_id}))

        transport.arm()
        async with anyio.create_task_group() as group:
            for _ in range(5):
                group.start_soon(one)
            await transport.held.wait()
            for _ in range(2000):
                await anyio.lowlevel.checkpoint()
            transport.gate.set()
        queries = h.sim.calls["query"] - before
        second = await _submit(client)
        clock.now += 60
        h.sim.faults.add("query", "server_error", times=None, status=503)
        faulty = await client.call_tool("download_video", {"task_id": second})
    assert queries == 1, queries
    assert len({structured(r)["path"] for r in results}) == 1
    assert faulty.is_error
    assert "again later" in text_of(faulty), text_of(faulty)


async def test_a_follower_takes_over_when_the_leader_stops(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client)
        results: dict[str, dict[str, Any]] = {}

        async def check(name: str, wait: int) -> None:
            args = {"task_id": task_id, "wait_seconds": wait}
            results[name] = structured(await client.call_tool("check_video_task", args))

        async with anyio.create_task_group() as group:
            group.start_soon(check, "short", 3)
            await anyio.lowlevel.checkpoint()
            group.start_soon(check, "long", 60)
    assert results["short"]["status"] != "succeeded"  # 20 s of work, 3 s of patience
    assert results["long"]["status"] == "succeeded"


async def test_an_unchanged_poll_writes_nothing_to_the_journal(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client)
        await client.call_tool("check_video_task", {"task_id": task_id, "wait_seconds": 0})
        wal = h.settings.state_dir / "tasks.sqlite3-wal"
        size = wal.stat().st_size
        mtime = wal.stat().st_mtime_ns
        for _ in range(3):
            await client.call_tool("check_video_task", {"task_id": task_id, "wait_seconds": 0})
        assert (wal.stat().st_size, wal.stat().st_mtime_ns) == (size, mtime)


# --- bounded downloads ----------------------------------------------------------------------


class _GatedBody(httpx2.AsyncByteStream):
    def __init__(self, body: bytes, stalled: anyio.Event, gate: anyio.Event) -> None:
        self._body, self._stalled, self._gate = body, stalled, gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body[:1024]
        self._stalled.set()
        await self._gate.wait()
        yield self._body[1024:]

    async def aclose(self) -> None:
        pass


class StallingHost(httpx2.AsyncBaseTransport):
    """The simulator, with every video file stalling after 1 KB until the gate opens."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.stalled = anyio.Event()
        self.gate = anyio.Event()
        self.file_requests = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.startswith("/files/") or response.status_code != 200:
            return response
        self.file_requests += 1
        body = await response.aread()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-encoding"]
        return httpx2.Response(
            200, headers=headers, stream=_GatedBody(body, self.stalled, self.gate)
        )


async def _finished_task(client: Any) -> str:
    task_id = await _submit(client)
    done = structured(
        await client.call_tool("check_video_task", {"task_id": task_id, "wait_seconds": 60})
    )
    assert done["status"] == "succeeded"
    return task_id


async def test_a_stalled_download_returns_within_the_bound_and_lands_later(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    base = make_harness(tmp_path, clock=clock)
    host = StallingHost(simulator_transport(base.sim))
    h = make_harness(tmp_path, sim=base.sim, clock=clock, transport=host)
    async with connected(h) as client:
        task_id = await _finished_task(client)
        outcome: dict[str, Any] = {}
        returned = anyio.Event()

        async def first_call() -> None:
            started = clock.now
            outcome["result"] = await client.call_tool("download_video", {"task_id": task_id})
            outcome["took"] = clock.now - started
            returned.set()

        async with anyio.create_task_group() as group:
            group.start_soon(first_call)
            await host.stalled.wait()
            await clock.sleep(DOWNLOAD_BOUND_SECONDS + 1)  # the host stays stalled
            # Real seconds (the bound runs on the fake clock): an unbounded download
            # would wait on the stalled host forever; fail instead of hanging.
            with anyio.move_on_after(30):
                await returned.wait()
            if not returned.is_set():
                group.cancel_scope.cancel()
        assert returned.is_set(), "download_video did not return while the host stalled"
        first = outcome["result"]
        assert first.is_error
        assert "still downloading" in text_of(first)
        assert "bytes so far" in text_of(first)
        assert outcome["took"] <= 50
        assert list(h.settings.output_dir.glob("*.mp4")) == []

        # The host recovers; the save that went on in the background lands, and the
        # next call picks it up instead of fetching the video again.
        host.gate.set()
        second = structured(await client.call_tool("download_video", {"task_id": task_id}))
        third = structured(
            await client.call_tool(
                "check_video_task", {"task_id": task_id, "wait_seconds": 0, "download": True}
            )
        )
    path = Path(second["path"])
    assert path.read_bytes()[4:8] == b"ftyp"
    assert third["path"] == second["path"]
    assert list(h.settings.output_dir.glob("*.mp4")) == [path]
    assert host.file_requests == 1


async def test_a_save_waits_for_another_process_holding_the_task(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _finished_task(client)
        held = TaskLocks(h.settings.state_dir).try_acquire(task_id)
        assert isinstance(held, TaskLock)  # as another server sharing the folders would
        try:
            first = await client.call_tool("download_video", {"task_id": task_id})
            assert first.is_error
            assert "still downloading" in text_of(first)
            assert h.sim.calls["file"] == 0
        finally:
            held.release()
        second = structured(await client.call_tool("download_video", {"task_id": task_id}))
    assert Path(second["path"]).is_file()
    assert h.sim.calls["file"] == 1


async def test_concurrent_waits_share_one_query_and_its_error() -> None:
    polls = SharedPolls(FakeClock(), PollSchedule())
    gate = anyio.Event()
    queries = 0
    failures: list[BaseException] = []

    async def query() -> TaskSnapshot:
        nonlocal queries
        queries += 1
        await gate.wait()
        raise NotFoundError("no such task", status_code=404)

    async def wait() -> None:
        try:
            async with aclosing(polls.follow("video_x", query, wait_seconds=30)) as answers:
                async for _ in answers:
                    pass
        except NotFoundError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(wait)
        while polls.waiting("video_x") < 5:
            await anyio.lowlevel.checkpoint()
        gate.set()
    assert queries == 1
    assert len(failures) == 5
    assert polls.waiting("video_x") == 0


async def test_a_save_stops_waiting_for_a_stuck_process(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _finished_task(client)
        held = TaskLocks(h.settings.state_dir).try_acquire(task_id)
        assert isinstance(held, TaskLock)
        try:
            first = await client.call_tool("download_video", {"task_id": task_id})
            assert "still downloading" in text_of(first)
            # the background save keeps looking (on the fake clock) until it gives up
            for _ in range(200):
                await h.clock.sleep(5)
            second = await client.call_tool("download_video", {"task_id": task_id})
        finally:
            held.release()
    assert second.is_error
    assert f"pid {os.getpid()}" in text_of(second)
    assert "looks stuck" in text_of(second)
    assert h.sim.calls["file"] == 0


async def test_a_download_during_the_saves_look_joins_it_and_makes_no_second_sheet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A save is journalled before it has looked at its video (probe, contact sheet):
    # a call in that window joins the save instead of looking again.
    from gravitex_mcp.service import looks as seeing

    real_look_at = seeing.look_at
    looking, release = threading.Event(), threading.Event()
    looks: list[Path] = []

    def held_look_at(video: Path, asked: Any, **options: Any) -> Any:
        looks.append(video)
        looking.set()
        release.wait(10)
        return real_look_at(video, asked, **options)

    monkeypatch.setattr(seeing, "look_at", held_look_at)
    clock = FakeClock()
    h = make_harness(tmp_path, clock=clock)
    async with connected(h) as client:
        task_id = await _submit(client)
        clock.now += 60  # finished upstream
        results: list[Any] = []

        async def download() -> None:
            results.append(await client.call_tool("download_video", {"task_id": task_id}))

        async with anyio.create_task_group() as group:
            group.start_soon(download)
            await anyio.to_thread.run_sync(looking.wait, 10)
            group.start_soon(download)
            for _ in range(200):
                await anyio.lowlevel.checkpoint()
            release.set()
    assert len(looks) == 1, looks
    assert len({structured(r)["path"] for r in results}) == 1
    assert len(list(h.settings.output_dir.glob("*.contact*.jpg"))) == 1
