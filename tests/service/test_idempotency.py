"""Never paying twice: idempotency keys across calls, restarts and processes."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest

from gravitex_mcp.service.idempotency import (
    KEY_WAIT_SECONDS,
    IdempotencyKeyBusyError,
    arguments_digest,
)
from gravitex_mcp.service.videos import VideoService
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.store import sqlite_schema
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.sqlite_open import DB_FILENAME
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.client import GravitexClient
from tests.conftest import FakeClock
from tests.proc import SERVER_CMD, STOP_TIMEOUT, clean_env
from tests.server.test_transport_stdio import SESSION_TIMEOUT, RawSession, server_env
from tests.server_harness import (
    API_KEY,
    Harness,
    connected,
    make_harness,
    make_settings,
    structured,
    text_of,
)

CAT = {"model": "sora-2", "prompt": "a cat on a piano", "wait_seconds": 0}


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def test_repeated_key_submits_once_and_survives_a_restart(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    call = {**CAT, "idempotency_key": "take-1"}
    async with connected(h) as client:
        first = structured(await client.call_tool("generate_video", call))
        again = structured(await client.call_tool("generate_video", call))
    assert h.sim.calls["submit"] == 1
    assert first["replayed"] is False
    assert again["task_id"] == first["task_id"]
    assert again["replayed"] is True
    assert any("take-1" in note and "nothing new" in note for note in again["notes"])

    h.clock.now += 60  # the task finishes meanwhile; a new process on the same state dir
    restarted = make_harness(tmp_path, sim=h.sim, clock=h.clock)
    async with connected(restarted) as client:
        later = structured(await client.call_tool("generate_video", {**call, "download": True}))
    assert h.sim.calls["submit"] == 1
    assert later["task_id"] == first["task_id"]
    assert later["status"] == "succeeded"  # its current status, not the first answer
    assert later["path"] is not None
    assert Path(later["path"]).is_file()


async def test_a_submit_lets_go_of_its_key_lease_when_answered(h: Harness) -> None:
    h.sim.faults.add("submit", "html_page", status=400)  # the first submit is refused
    async with connected(h) as client:
        refused = await client.call_tool("generate_video", {**CAT, "idempotency_key": "a"})
        taken = await client.call_tool("generate_video", {**CAT, "idempotency_key": "b"})
    assert refused.is_error
    assert not taken.is_error
    locks = h.settings.state_dir / "locks"
    assert not list(locks.glob("submit-*")), "one lock file per submit would pile up"


class BrokenSubmits(httpx2.AsyncBaseTransport):
    """A bug mid-POST: the request may have left, and no answer comes back."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            raise RuntimeError("a bug after the body was sent")
        return await self.inner.handle_async_request(request)


async def test_a_submit_ended_by_a_bug_does_not_hold_its_key(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = Simulator(SimulatorConfig(api_keys=frozenset({API_KEY})), clock=clock.monotonic)
    h = make_harness(
        tmp_path, sim=sim, clock=clock, transport=BrokenSubmits(simulator_transport(sim))
    )
    call = {**CAT, "idempotency_key": "bug"}
    async with connected(h) as client:
        broken = await client.call_tool("generate_video", call)
        again = await client.call_tool("generate_video", call)
    assert broken.is_error
    assert again.is_error
    assert "outcome is unknown" in text_of(again)
    assert h.clock.sleeps == [], "the key's next call does not wait on a submit that ended"


async def test_key_reused_with_other_arguments_is_refused_naming_the_key(h: Harness) -> None:
    async with connected(h) as client:
        first = structured(
            await client.call_tool("generate_video", {**CAT, "idempotency_key": "k-42"})
        )
        other = await client.call_tool(
            "generate_video", {**CAT, "prompt": "a dog", "idempotency_key": "k-42"}
        )
    assert other.is_error
    text = text_of(other)
    assert "idempotency_key" in text
    assert "'k-42'" in text
    assert first["task_id"] in text
    assert h.sim.calls["submit"] == 1


async def test_too_long_key_is_refused_before_anything_is_sent(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool("generate_video", {**CAT, "idempotency_key": "k" * 101})
    assert result.is_error
    assert "idempotency_key" in text_of(result)
    assert h.sim.calls["submit"] == 0


async def test_same_arguments_without_a_key_submit_again_with_a_note(h: Harness) -> None:
    async with connected(h) as client:
        first = structured(await client.call_tool("generate_video", CAT))
        h.clock.now += 5
        second = structured(await client.call_tool("generate_video", CAT))
        other = structured(await client.call_tool("generate_video", {**CAT, "prompt": "a dog"}))
    assert h.sim.calls["submit"] == 3
    assert second["task_id"] != first["task_id"]
    assert any(first["task_id"] in note for note in second["notes"])
    assert not any("same arguments" in note for note in first["notes"] + other["notes"])


async def test_repeated_takes_get_one_note_naming_every_earlier_take(h: Harness) -> None:
    async with connected(h) as client:
        takes = []
        for _ in range(4):
            takes.append(structured(await client.call_tool("generate_video", CAT)))
            h.clock.now += 5
    notes = [n for n in takes[-1]["notes"] if "same arguments" in n]
    assert len(notes) == 1, takes[-1]["notes"]
    [note] = notes
    earlier = [take["task_id"] for take in takes[:-1]]
    assert all(task_id in note for task_id in earlier)
    # newest first, as the journal lists them
    assert [note.index(t) for t in reversed(earlier)] == sorted(note.index(t) for t in earlier)
    assert takes[-1]["task_id"] not in note


async def test_a_key_whose_submit_was_refused_may_submit_again(h: Harness) -> None:
    h.sim.faults.add("submit", "html_page", status=400)  # refused: no task was created
    call = {**CAT, "idempotency_key": "retry-me"}
    async with connected(h) as client:
        refused = await client.call_tool("generate_video", call)
        retried = structured(await client.call_tool("generate_video", call))
    assert refused.is_error
    assert retried["replayed"] is False
    assert retried["task_id"] in h.sim.tasks
    assert len(h.sim.tasks) == 1


async def test_a_key_whose_submit_answer_was_lost_is_not_resubmitted(h: Harness) -> None:
    h.sim.faults.add("submit", "accepted_but_lost", mode="status", status=500)
    call = {**CAT, "idempotency_key": "lost"}
    async with connected(h) as client:
        lost = await client.call_tool("generate_video", call)
        again = await client.call_tool("generate_video", call)
    assert lost.is_error
    assert again.is_error
    assert "list_video_tasks" in text_of(again)
    assert h.sim.calls["submit"] == 1


# --- two servers on one state dir ----------------------------------------------------


class GatedSubmits(httpx2.AsyncBaseTransport):
    """Holds every POST until the gate opens."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.in_flight = anyio.Event()
        self.gate = anyio.Event()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            self.in_flight.set()
            await self.gate.wait()
        return await self.inner.handle_async_request(request)


class WaitingClock(FakeClock):
    """The second server's clock: its first wait opens the gate, then waits for the
    first server's call to end, so the order of events is fixed."""

    def __init__(self, gate: anyio.Event, first_done: anyio.Event) -> None:
        super().__init__()
        self.gate = gate
        self.first_done = first_done

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.gate.set()
        await self.first_done.wait()


async def test_two_servers_racing_with_one_key_submit_once(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = Simulator(
        SimulatorConfig(api_keys=frozenset({API_KEY}), queued_seconds=1, processing_seconds=1),
        clock=clock.monotonic,
    )
    gated = GatedSubmits(simulator_transport(sim))
    settings = make_settings(tmp_path)
    first_done = anyio.Event()
    # Two journals (two SQLite connections) on one state dir, as two processes have.
    j1, j2 = Journal.open(settings.state_dir), Journal.open(settings.state_dir)
    c1 = GravitexClient(api_key=API_KEY, base_url=settings.base_url, transport=gated)
    c2 = GravitexClient(
        api_key=API_KEY, base_url=settings.base_url, transport=simulator_transport(sim)
    )
    s1 = VideoService(
        settings=settings,
        client=c1,
        journal=j1,
        output=OutputDir(settings.output_dir),
        clock=clock,
    )
    s2 = VideoService(
        settings=settings,
        client=c2,
        journal=j2,
        output=OutputDir(settings.output_dir),
        clock=WaitingClock(gated.gate, first_done),
    )
    request = dict(model="sora-2", prompt="a cat", wait_seconds=0, idempotency_key="shared")
    results = {}
    try:
        with anyio.fail_after(20):  # real-time bound: a deadlock fails, never hangs
            async with anyio.create_task_group() as tg:

                async def first() -> None:
                    results["first"] = await s1.generate(request)
                    first_done.set()

                tg.start_soon(first)
                await gated.in_flight.wait()  # the first POST is on its way
                results["second"] = await s2.generate(request)
    finally:
        await c1.aclose()
        await c2.aclose()
        j1.close()
        j2.close()
    assert sim.calls["submit"] == 1
    assert results["second"].task_id == results["first"].task_id
    assert results["second"].replayed is True


async def test_a_key_held_by_a_submit_that_never_answers_is_reported_busy(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    sim = Simulator(SimulatorConfig(api_keys=frozenset({API_KEY})), clock=clock.monotonic)
    settings = make_settings(tmp_path)
    journal = Journal.open(settings.state_dir)
    client = GravitexClient(
        api_key=API_KEY, base_url=settings.base_url, transport=simulator_transport(sim)
    )
    service = VideoService(
        settings=settings,
        client=client,
        journal=journal,
        output=OutputDir(settings.output_dir),
        clock=clock,
    )
    request = dict(model="sora-2", prompt="a cat", wait_seconds=0, idempotency_key="k")
    _, prepared = await service.prepare(request)
    try:
        # Another process claimed the key and is still waiting for its POST's answer.
        claim = await journal.claim_key(
            "k",
            arguments_hash=arguments_digest(prepared),
            model="sora-2",
            family="sora",
            arguments=prepared.journal_arguments,
        )
        assert claim.local_id is not None
        with pytest.raises(IdempotencyKeyBusyError, match="'k'"):
            await service.generate(request)
    finally:
        await client.aclose()
        journal.close()
    assert sim.calls["submit"] == 0
    assert sum(clock.sleeps) >= 10  # it waited for the other call before giving up


def _claim_in_process(state_dir: str, ready: Any, results: Any) -> None:
    """A child process: open the journal, wait for the others, claim the one key."""

    async def claim() -> bool:
        journal = Journal.open(Path(state_dir))
        try:
            ready.wait(timeout=60)  # every process opened its journal: the claims race
            result = await journal.claim_key(
                "one-key", arguments_hash="h", model="sora-2", family="sora", arguments={}
            )
            return result.local_id is not None
        finally:
            journal.close()

    results.put(asyncio.run(claim()))


@pytest.mark.slow
def test_processes_racing_for_one_key_claim_it_once(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()  # schema in place, so the race is on the claim alone
    context = multiprocessing.get_context("spawn")
    count = 3
    ready, results = context.Barrier(count), context.Queue()
    workers = [
        context.Process(target=_claim_in_process, args=(str(tmp_path), ready, results))
        for _ in range(count)
    ]
    for worker in workers:
        worker.start()
    claims = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * count
    assert claims.count(True) == 1


async def test_a_journal_from_before_keys_is_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_schema, "_MIGRATIONS", sqlite_schema._MIGRATIONS[:1])
        Journal.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    with conn:  # a row as version 1 wrote it
        conn.execute(
            "INSERT INTO tasks (local_id, task_id, model, family, arguments, status, "
            "created_at, updated_at) VALUES ('l1', 'video_old', 'sora-2', 'sora', '{}', "
            "'queued', '2026-12-04T00:00:00.000000+00:00', '2026-12-04T00:00:00.000000+00:00')"
        )
    conn.close()
    upgraded = Journal.open(tmp_path)
    try:
        record = await upgraded.get("video_old")
        assert record is not None
        claim = await upgraded.claim_key(
            "new", arguments_hash="h", model="sora-2", family="sora", arguments={}
        )
        assert claim.local_id is not None
        assert await upgraded.recent_with_arguments("h", within=timedelta(minutes=10))
    finally:
        upgraded.close()


# --- a server killed mid-submit ------------------------------------------------------


class SilentUpstream:
    """A loopback "Gravitex API" that reads every request and never answers one."""

    def __init__(self) -> None:
        self.posted = anyio.Event()

    async def serve(self, stream: anyio.abc.ByteStream) -> None:
        seen = b""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
            while True:
                seen += await stream.receive()
                if b"POST " in seen:
                    self.posted.set()


@pytest.mark.slow
async def test_a_key_held_by_a_killed_server_is_answered_at_once(tmp_path: Path) -> None:
    """SIGKILL between the key's ``submitting`` row and the API's answer: while the
    server lives, a second call waits as before; once it is dead, the key's next
    call is told at once that the outcome is unknown (and what to do)."""
    call = {**CAT, "idempotency_key": "crash-1"}
    upstream = SilentUpstream()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    env = clean_env(
        tmp_path,
        **server_env(tmp_path),
        GRAVITEX_API_KEY=API_KEY,
        GRAVITEX_BASE_URL=f"http://127.0.0.1:{port}",
    )
    errlog = tmp_path / "server.stderr"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, upstream.serve)
        with errlog.open("wb") as err:
            process = await anyio.open_process(SERVER_CMD, env=env, cwd=tmp_path, stderr=err)
        async with process:
            try:
                with anyio.fail_after(SESSION_TIMEOUT):
                    session = RawSession(process)
                    await session.initialize("crash-test")
                    await session.send(
                        {
                            "id": 2,
                            "method": "tools/call",
                            "params": {"name": "generate_video", "arguments": call},
                        }
                    )
                    await upstream.posted.wait()  # the row is written, the answer never comes

                # Another server on the same state dir, its clock fake (no real waits).
                h = make_harness(tmp_path)
                async with connected(h) as client:
                    busy = await client.call_tool("generate_video", call)
                    waited = sum(h.clock.sleeps)
                    process.kill()  # SIGKILL: no clean-up runs in the server
                    with anyio.fail_after(STOP_TIMEOUT):
                        assert await process.wait() == -signal.SIGKILL
                    h.clock.sleeps.clear()
                    after = await client.call_tool("generate_video", call)
                    listed = structured(
                        await client.call_tool("list_video_tasks", {"status": "submit_unknown"})
                    )
                    assert h.clock.sleeps == [], "answered without waiting"
            finally:
                if process.returncode is None:
                    process.kill()
                    with anyio.move_on_after(STOP_TIMEOUT):
                        await process.wait()
        tg.cancel_scope.cancel()

    # The holder alive: the waiting behaviour, unchanged.
    assert busy.is_error
    assert "is submitting these arguments right now" in text_of(busy)
    assert waited >= KEY_WAIT_SECONDS
    # The holder dead: the truth, at once, to this server and to a new one.
    restarted = make_harness(tmp_path)
    async with connected(restarted) as client:
        again = await client.call_tool("generate_video", call)
    assert restarted.clock.sleeps == []
    for answer in (after, again):
        assert answer.is_error
        text = text_of(answer)
        assert "'crash-1'" in text
        assert "outcome is unknown" in text
        assert "paid task may exist" in text
        assert "list_video_tasks" in text
        assert "new idempotency_key" in text
        assert "right now" not in text
    (task,) = listed["tasks"]
    assert task["status"] == "submit_unknown"
    assert task["task_id"] is None
    assert h.sim.calls["submit"] == restarted.sim.calls["submit"] == 0
