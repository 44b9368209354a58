"""Bounded waiting for a task: poll with backoff until it ends or the time is up.

Clients such as Claude Desktop cut a tool call off at about 60 s, while a video
takes minutes, so a wait never runs past its budget: it hands back whatever
status the task has and the caller says how to keep waiting.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from .answers import TaskSnapshot


class Clock(Protocol):
    """Monotonic time and sleeping, injectable so tests never sleep for real."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    def deadline(self, seconds: float) -> anyio.CancelScope:
        """A scope cancelled once ``seconds`` have passed on this clock (move-on semantics)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def deadline(self, seconds: float) -> anyio.CancelScope:
        return anyio.move_on_after(seconds)


@dataclass(frozen=True, slots=True)
class PollSchedule:
    """Poll intervals: the docs advise every 3-5 s; start a little sooner.

    The first pause is shortened by up to ``jitter`` of itself (``rand`` in ``[0, 1)``)
    and the later ones are not: waits started together (a batch, a burst of agents)
    keep the spread they got, so their polls, and the saves of what ends at once, reach
    the upstream and the event loop spread over a second instead of all in one turn.
    """

    first: float = 2.0
    factor: float = 1.5
    maximum: float = 5.0
    jitter: float = 0.5

    def interval(self, poll_number: int, rand: float = 0.0) -> float:
        base = min(self.maximum, self.first * self.factor**poll_number)
        return float(base * (1.0 - self.jitter * rand) if poll_number == 0 else base)


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer about a task, as one waiter sees it."""

    snapshot: TaskSnapshot
    elapsed: float
    """Seconds since this waiter started (monotonic)."""
    fresh: bool = True
    """This waiter asked upstream for it (so it is recorded once); ``False``: another
    waiter's answer, shared."""


async def poll_task(
    poll: Callable[[], Awaitable[TaskSnapshot]],
    *,
    wait_seconds: float,
    clock: Clock,
    schedule: PollSchedule | None = None,
    rand: Callable[[], float] = random.random,
) -> AsyncGenerator[Answer, None]:
    """Each answer of ``poll``, until the task is terminal or ``wait_seconds`` have passed.

    The caller handles each answer inline (journal, progress) before the next poll.
    Cancellation (a client cancel) propagates: the caller's journal already holds
    the task, so nothing is lost.
    """
    schedule = schedule or PollSchedule()
    start = clock.monotonic()
    polls = 0
    while True:
        snapshot = await poll()
        yield Answer(snapshot, clock.monotonic() - start)
        if snapshot.status.is_terminal:
            return
        remaining = wait_seconds - (clock.monotonic() - start)
        if remaining <= 0:
            return
        await clock.sleep(min(schedule.interval(polls, rand()), remaining))
        polls += 1
