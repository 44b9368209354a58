"""One poller and one download per task, however many calls wait on it.

Twenty agents' calls (or one impatient agent's) waiting on one task must cost
one poll loop upstream and save one file. :class:`SharedPolls` lets the first
waiter of a task lead the poll loop while later ones follow its answers (each
with its own time budget and progress); when the leader stops (its budget is
spent, or its call was cancelled), a follower with time left takes over. Given the
task store, the leader shares its poll loop with other processes too
(:func:`~gravitex_mcp.service.polling.lead_poll`).
:class:`BackgroundJobs` runs at most one job per key in a task group owned by
the server, so a download outlives the call that started it and the next call
picks it up.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from ..errors import GravitexError
from ..store.seam import TaskStore
from ..upstream.answers import TaskSnapshot
from ..upstream.waiting import Answer, Clock, PollSchedule, poll_task
from .polling import lead_poll

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(slots=True)
class _Shared:
    """The poll state of one task shared by its waiters."""

    latest: TaskSnapshot | None = None
    error: BaseException | None = None
    version: int = 0
    leading: bool = False
    users: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def wake(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def publish(self, snapshot: TaskSnapshot | None, error: BaseException | None = None) -> None:
        if snapshot is not None:
            self.latest = snapshot
        self.error = error
        self.version += 1
        self.wake()


class SharedPolls:
    """Single-flight waiting: concurrent waits on one task share one poll loop."""

    def __init__(self, clock: Clock, schedule: PollSchedule) -> None:
        self._clock = clock
        self._schedule = schedule
        self._tasks: dict[str, _Shared] = {}

    def waiting(self, task_id: str) -> int:
        """How many calls wait on ``task_id`` now (for tests and logs)."""
        shared = self._tasks.get(task_id)
        return 0 if shared is None else shared.users

    async def follow(
        self,
        task_id: str,
        poll: Callable[[], Awaitable[TaskSnapshot]],
        *,
        wait_seconds: float,
        store: TaskStore | None = None,
    ) -> AsyncGenerator[Answer, None]:
        """Like :func:`~gravitex_mcp.upstream.waiting.poll_task`, shared with other waiters
        (and, given the task ``store``, with other processes sharing it).

        Yields each answer this waiter sees (``fresh`` when this process polled it: the
        caller records those, so each answer is recorded once); raises the error of a
        failed poll (the leader's, when following). Close it when done
        (``contextlib.aclosing``): a waiter that stops hands the lead over.
        """
        shared = self._tasks.setdefault(task_id, _Shared())
        shared.users += 1

        def lead(wait: float) -> AsyncGenerator[Answer, None]:
            if store is None:
                return poll_task(
                    poll, wait_seconds=wait, clock=self._clock, schedule=self._schedule
                )
            return lead_poll(
                task_id,
                poll,
                store=store,
                wait_seconds=wait,
                clock=self._clock,
                schedule=self._schedule,
            )

        try:
            async with aclosing(self._follow(shared, lead, wait_seconds)) as answers:
                async for answer in answers:
                    yield answer
        finally:
            shared.users -= 1
            if shared.users == 0 and self._tasks.get(task_id) is shared:
                del self._tasks[task_id]

    async def _follow(
        self,
        shared: _Shared,
        lead: Callable[[float], AsyncGenerator[Answer, None]],
        wait_seconds: float,
    ) -> AsyncGenerator[Answer, None]:
        start = self._clock.monotonic()
        latest: TaskSnapshot | None = None
        if shared.leading and shared.latest is not None and wait_seconds <= 0:
            # "Just look" while another call polls: its last answer is at most one
            # poll interval old.
            yield Answer(shared.latest, 0.0, fresh=False)
            return
        seen = shared.version
        while True:
            elapsed = self._clock.monotonic() - start
            if latest is not None and (latest.status.is_terminal or elapsed >= wait_seconds):
                return
            if not shared.leading:
                async with aclosing(
                    self._lead(shared, lead, max(0.0, wait_seconds - elapsed), start)
                ) as answers:
                    async for answer in answers:
                        yield answer
                return
            event = shared.changed
            if latest is None:
                # The caller's own deadline bounds the wait for a first answer.
                await event.wait()
            else:
                with self._clock.deadline(wait_seconds - elapsed):
                    await event.wait()
            if shared.version != seen:
                seen = shared.version
                if shared.error is not None:
                    raise shared.error
                if shared.latest is not None:
                    latest = shared.latest
                    yield Answer(latest, self._clock.monotonic() - start, fresh=False)

    async def _lead(
        self,
        shared: _Shared,
        lead: Callable[[float], AsyncGenerator[Answer, None]],
        wait_seconds: float,
        start: float,
    ) -> AsyncGenerator[Answer, None]:
        shared.leading = True
        offset = self._clock.monotonic() - start
        answers = lead(wait_seconds)
        try:
            async with aclosing(answers):
                async for answer in answers:
                    shared.publish(answer.snapshot)
                    yield Answer(answer.snapshot, offset + answer.elapsed, fresh=answer.fresh)
        except Exception as exc:
            shared.publish(None, exc)
            raise
        finally:
            shared.leading = False
            # Followers with time left take over (or return what they have).
            shared.wake()


@dataclass(slots=True)
class Job(Generic[_T]):
    """One background job: its outcome once ``done`` is set."""

    done: anyio.Event = field(default_factory=anyio.Event)
    result: _T | None = None
    error: BaseException | None = None
    watchers: int = 0

    async def wait(self) -> _T:
        """Wait for the job (cancel the caller to stop waiting: the job goes on) and
        return its result or raise its error."""
        self.watchers += 1
        try:
            await self.done.wait()
        finally:
            self.watchers -= 1
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class BackgroundJobs(Generic[_T]):
    """At most one running job per key, run in a task group that outlives the calls.

    Without a task group (the core used alone, outside a server) a job runs in
    the caller's task and ends with it.
    """

    def __init__(self) -> None:
        self._running: dict[str, Job[_T]] = {}
        # Failures no caller was waiting for: handed to the next caller once, so the
        # reason is not lost with the call that gave up waiting.
        self._unclaimed: dict[str, Job[_T]] = {}
        self._group: TaskGroup | None = None

    def attach(self, group: TaskGroup | None) -> None:
        """Run later jobs in ``group`` (``None``: in the caller)."""
        self._group = group

    def running(self, key: str) -> Job[_T] | None:
        """The job running for ``key``, if any."""
        return self._running.get(key)

    def pending(self, key: str) -> Job[_T] | None:
        """The job running for ``key``, or else one that failed with nobody waiting
        (handed out once)."""
        return self._running.get(key) or self._unclaimed.pop(key, None)

    async def join(self, key: str, start: Callable[[], Awaitable[_T]]) -> Job[_T]:
        """The job for ``key``: the running one, or a new one running ``start``.
        Await ``job.wait()`` (within the caller's own bound) for its outcome."""
        job = self.pending(key)
        if job is not None:
            return job
        job = Job()
        self._running[key] = job

        async def run() -> None:
            try:
                job.result = await start()
            except anyio.get_cancelled_exc_class():
                job.error = JobStoppedError(
                    "The background work was stopped before it finished (the server is "
                    "shutting down, or the call that ran it was cancelled); call again."
                )
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised in every caller that waits on it
                job.error = exc
            finally:
                del self._running[key]
                unclaimed = job.watchers == 0 and job.error is not None
                if unclaimed and not isinstance(job.error, JobStoppedError):
                    self._unclaimed[key] = job
                job.done.set()

        if self._group is None:
            await run()
            if self._unclaimed.get(key) is job:
                del self._unclaimed[key]  # this caller takes the outcome
        else:
            self._group.start_soon(run, name=f"background job {key}")
        return job


class JobStoppedError(GravitexError):
    """A background job was cancelled (server shutting down, or its caller gone)."""
