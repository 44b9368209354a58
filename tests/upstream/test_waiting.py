"""The poll schedule spreads waits that start together (no real sleeps: FakeClock)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path

import pytest

from gravitex_mcp.domain import TaskStatus
from gravitex_mcp.service.singleflight import SharedPolls
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.upstream.answers import TaskSnapshot
from gravitex_mcp.upstream.waiting import Answer, PollSchedule, poll_task
from tests.conftest import FakeClock


def test_only_the_first_pause_is_shortened_by_the_jitter() -> None:
    schedule = PollSchedule()
    assert schedule.interval(0, 0.0) == 2.0
    assert schedule.interval(0, 0.999) == pytest.approx(2.0 * (1 - 0.5 * 0.999))
    # Later pauses keep the docs' 3-5 s whatever the draw: the spread is kept, not grown.
    assert [schedule.interval(n, 0.999) for n in range(1, 5)] == [3.0, 4.5, 5.0, 5.0]
    assert PollSchedule(jitter=0.0).interval(0, 0.999) == 2.0


@pytest.mark.parametrize("through", ["poll_task", "a shared poll with a task store"])
async def test_waits_started_together_do_not_poll_in_step(through: str, tmp_path: Path) -> None:
    """Twenty waits begun at one instant (a batch, a burst of agents): without jitter
    every one polled again at exactly +2 s, +5 s, ... and a burst of tasks that end
    together reached the upstream and the event loop in one turn. The service waits
    through the shared poll (the store's poll lease); ``poll_task`` is its storeless form."""

    async def running() -> TaskSnapshot:
        return TaskSnapshot("t", TaskStatus.IN_PROGRESS, "processing", None, None, {})

    journal = Journal.open(tmp_path)

    def start(
        clock: FakeClock, poll: Callable[[], Awaitable[TaskSnapshot]]
    ) -> AsyncGenerator[Answer, None]:
        if through == "poll_task":
            return poll_task(poll, wait_seconds=3.0, clock=clock)
        return SharedPolls(clock, PollSchedule()).follow("t", poll, wait_seconds=3.0, store=journal)

    seconds: list[float] = []
    for _ in range(20):
        clock = FakeClock()
        waits = start(clock, running)
        async with contextlib.aclosing(waits):
            async for _answer in waits:
                pass
        seconds.append(clock.sleeps[0])
    journal.close()
    assert all(1.0 <= s <= 2.0 for s in seconds), seconds
    assert max(seconds) - min(seconds) > 0.25, seconds
