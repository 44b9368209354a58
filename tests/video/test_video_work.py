"""Video work (probe, contact sheet, frames, join) is bounded, and never holds up the journal.

The looks are instrumented through :class:`VideoWork`'s ``around`` hook (it runs in the
worker thread around each piece of work); PyAV itself is not touched.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from gravitex_mcp.store.journal import Journal
from gravitex_mcp.video.work import VideoWork, core_count, default_slots
from tests.conftest import FakeClock
from tests.service_harness import finished_tasks, running_service, until

#: A guard against a hang, not a wait: every step below is event-driven.
GUARD_SECONDS = 10


class HeldWork:
    """Counts the pieces of video work running at once; holds each until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = 0
        self.peak = 0
        self.done = 0
        self._lock = threading.Lock()

    @contextmanager
    def around(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            self.release.wait(GUARD_SECONDS)
            yield
        finally:
            with self._lock:
                self.running -= 1
                self.done += 1


async def test_no_more_looks_run_at_once_than_the_limiter_allows(tmp_path: Path) -> None:
    held = HeldWork()
    work = VideoWork(2, around=held.around)
    async with running_service(tmp_path, FakeClock(), video_work=work) as service:
        ids = await finished_tasks(service, 6, model="sora-2")
        saved: dict[str, str] = {}

        async def save(task_id: str) -> None:
            result = await service.download(task_id, filename=None)
            assert result.preview is not None, result.notes
            saved[task_id] = result.location

        with anyio.fail_after(GUARD_SECONDS):
            async with anyio.create_task_group() as group:
                for task_id in ids:
                    group.start_soon(save, task_id)
                # Every save has reached its look: two run, four wait for a slot.
                await until(lambda: held.running + work.statistics().tasks_waiting == 6)
                assert held.running == 2
                held.release.set()
    assert held.peak == 2
    assert held.done == 6
    assert sorted(saved) == sorted(ids)
    assert all(Path(p).is_file() for p in saved.values())


async def test_the_journal_answers_while_every_video_worker_is_busy(tmp_path: Path) -> None:
    held = HeldWork()
    work = VideoWork(2, around=held.around)
    async with running_service(tmp_path, FakeClock(), video_work=work) as service:
        ids = await finished_tasks(service, 3, model="sora-2")
        default = anyio.to_thread.current_default_thread_limiter()
        tokens = default.total_tokens
        # Other blocking work fills anyio's default pool too (downloads' file writes).
        default.total_tokens = 2
        other = threading.Event()
        try:
            with anyio.fail_after(GUARD_SECONDS):
                async with anyio.create_task_group() as group:
                    for task_id in ids:
                        group.start_soon(partial(service.download, task_id, filename=None))
                    await until(lambda: held.running == 2)
                    for _ in range(2):
                        blocked = partial(anyio.to_thread.run_sync, abandon_on_cancel=True)
                        group.start_soon(blocked, other.wait)
                    await until(lambda: default.borrowed_tokens == 2)
                    listed = await service.list_tasks(limit=10, status=None)
                    assert {t.task_id for t in listed} == set(ids)
                    assert held.running == 2  # the looks were still held meanwhile
                    held.release.set()
                    other.set()
        finally:
            held.release.set()
            other.set()
            default.total_tokens = tokens
    assert held.done == 3


def test_the_default_leaves_one_core_to_the_event_loop() -> None:
    assert VideoWork().slots == max(1, core_count() - 1)
    assert [default_slots(n) for n in (1, 2, 4, 16)] == [1, 1, 3, 15]
    with pytest.raises(ValueError, match="at least 1"):
        VideoWork(0)


async def test_a_journal_read_answers_while_a_write_waits_for_the_database(
    tmp_path: Path,
) -> None:
    """Reads have their own connection: many saves' writes (each an fsync, or waiting
    for another process's lock) do not hold up a quick ``list_video_tasks``."""
    journal = Journal.open(tmp_path / "state")
    other = sqlite3.connect(journal.path, isolation_level=None)
    try:
        local_id = await journal.begin_submission(model="sora-2", family="sora", arguments={})
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with anyio.fail_after(GUARD_SECONDS / 2):  # below the 10 s busy time-out
            async with anyio.create_task_group() as group:
                group.start_soon(
                    partial(journal.begin_submission, model="sora-2", family="sora", arguments={})
                )
                # The write is in its worker thread, waiting in SQLite's busy handler.
                await until(lambda: journal._limiter.statistics().borrowed_tokens == 1)
                listed = await journal.list(limit=5)
                assert [r.local_id for r in listed] == [local_id]
                other.execute("COMMIT")
        assert len(await journal.list(limit=5)) == 2
    finally:
        other.close()
        journal.close()


async def test_journal_reads_do_not_queue_behind_one_another(tmp_path: Path) -> None:
    """Reads run side by side, each on an idle reading connection: a read that takes
    its time (or whose thread waits for a core) does not hold up the next one, as a
    single reading token did under load (one loop turn per queued read)."""
    journal = Journal.open(tmp_path / "state")
    held = threading.Event()
    release = threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        held.set()
        release.wait(GUARD_SECONDS)
        return int(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])

    try:
        local_id = await journal.begin_submission(model="sora-2", family="sora", arguments={})
        with anyio.fail_after(GUARD_SECONDS / 2):
            async with anyio.create_task_group() as group:
                group.start_soon(journal._run_read, slow_read)
                await anyio.to_thread.run_sync(held.wait)
                listed = await journal.list(limit=5)  # answered while the slow one runs
                assert [r.local_id for r in listed] == [local_id]
                assert not release.is_set()
                release.set()
    finally:
        release.set()
        journal.close()


async def test_the_event_loop_never_waits_for_a_video_thread_to_return(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop is told only once the outcome is handed over: a video thread that the OS
    does not run again right after its work (here held before its executor records the
    outcome) holds up no call on the loop. It used to block the loop in
    ``future.result()`` for as long: tens of ms under the load bench."""
    release = threading.Event()
    timed_out = threading.Event()
    original = Future.set_result

    def held_set_result(self: Future[object], result: object) -> None:
        if threading.current_thread().name.startswith("video-work") and not release.wait(
            GUARD_SECONDS / 2
        ):
            timed_out.set()
        original(self, result)

    monkeypatch.setattr(Future, "set_result", held_set_result)
    work = VideoWork(2)  # each run holds its own thread
    try:
        assert await work.run(lambda: 42) == 42
        with pytest.raises(ValueError, match="no video here"):
            await work.run(partial(_raise, ValueError("no video here")))
        assert not timed_out.is_set()  # both threads are still held
    finally:
        release.set()


def _raise(exc: Exception) -> None:
    raise exc
