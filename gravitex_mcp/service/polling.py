"""One poll loop per task across processes: the task store's POLL lease.

Within a process, :class:`~gravitex_mcp.service.singleflight.SharedPolls` lets one
waiter of a task lead and the others follow it. Across processes (replicas sharing a
task store) that leader runs :func:`lead_poll`:

* holding the task's :attr:`~gravitex_mcp.store.seam.LeaseKind.POLL` lease, it queries
  upstream on the poll schedule; its answers are *fresh* (the caller records them, and
  recording a new status tells the other processes: ``NOTIFY`` on PostgreSQL);
* while another process holds the lease, it asks nothing upstream: it reads the task's
  record, yields it as the answer it was, and waits for the next change
  (:meth:`~gravitex_mcp.store.seam.TaskStore.wait_for_change`, at most one poll
  interval); on each turn it tries the lease again, so the wait of a process that died
  is taken over once its lease lapses.

The lease is released when the wait ends, however it ends.
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Awaitable, Callable

import anyio

from ..domain import Delivery, TaskStatus
from ..store.records import TaskRecord
from ..store.seam import Lease, LeaseBusy, LeaseKind, TaskStore
from ..upstream.answers import TaskError, TaskSnapshot
from ..upstream.waiting import Answer, Clock, PollSchedule
from .delivery import delivery_of


async def lead_poll(
    task_id: str,
    poll: Callable[[], Awaitable[TaskSnapshot]],
    *,
    store: TaskStore,
    wait_seconds: float,
    clock: Clock,
    schedule: PollSchedule,
    rand: Callable[[], float] = random.random,
) -> AsyncGenerator[Answer, None]:
    """Each answer about ``task_id`` until it is terminal or ``wait_seconds`` have
    passed, asking upstream only while this process holds the task's poll lease (see
    the module). Close it when done (``contextlib.aclosing``): that releases the lease."""
    start = clock.monotonic()
    turn = 0
    lease: Lease | None = None
    followed = False  # another process polled during this wait: the store may know more
    alone = False  # the store has no record of the task: nothing to share through it
    shown: tuple[object, ...] | None = None  # the answer last yielded
    try:
        while True:
            if lease is not None and lease.lost:
                lease = None  # taken over (this process stalled): its new holder polls
            if lease is None and not alone:
                taken = await store.try_lease(task_id, LeaseKind.POLL)
                lease = None if isinstance(taken, LeaseBusy) else taken
            record = None
            if lease is None and not alone:
                record = await store.get(task_id)
                alone = record is None
            snapshot: TaskSnapshot | None
            pause: Callable[[float], Awaitable[object]]
            if record is None:  # this process polls
                # Just taken over: the last holder may have recorded the end already.
                snapshot = await _final_record(store, task_id) if followed else None
                fresh, followed = snapshot is None, False
                if snapshot is None:
                    snapshot = await poll()
                yield Answer(snapshot, clock.monotonic() - start, fresh=fresh)
                shown, pause = _seen(snapshot), clock.sleep
            else:  # another process polls: what it recorded
                followed = True
                snapshot = recorded_snapshot(record)
                if snapshot is not None and (seen := _seen(snapshot)) != shown:
                    shown = seen
                    yield Answer(snapshot, clock.monotonic() - start, fresh=False)
                pause = _change_of(store, task_id)
            if snapshot is not None and snapshot.status.is_terminal:
                return
            remaining = wait_seconds - (clock.monotonic() - start)
            if remaining <= 0:
                if shown is None:  # the record said nothing usable: one look of its own
                    yield Answer(await poll(), clock.monotonic() - start)
                return
            await pause(min(schedule.interval(turn, rand()), remaining))
            turn += 1
    finally:
        if lease is not None:
            with anyio.CancelScope(shield=True):
                await lease.release()


def _change_of(store: TaskStore, task_id: str) -> Callable[[float], Awaitable[object]]:
    """A wait of at most so many seconds for the next change of ``task_id``."""
    return lambda seconds: store.wait_for_change(task_id, seconds)


def _seen(snapshot: TaskSnapshot) -> tuple[object, ...]:
    """What a waiter sees of a snapshot: a record read again unchanged is not news."""
    return (snapshot.status, snapshot.url, snapshot.error)


async def _final_record(store: TaskStore, task_id: str) -> TaskSnapshot | None:
    """The end of the task as the store holds it (``None``: not ended, or not usable)."""
    record = await store.get(task_id)
    snapshot = None if record is None else recorded_snapshot(record)
    return snapshot if snapshot is not None and snapshot.status.is_terminal else None


def recorded_snapshot(record: TaskRecord) -> TaskSnapshot | None:
    """The answer another process recorded for the task, as the snapshot it was;
    ``None`` when it says nothing a waiter can act on: no upstream answer yet (a
    submission), or ``succeeded`` without the URL its video is fetched from."""
    try:
        status = TaskStatus(record.status.value)
    except ValueError:  # submitting, submit_failed, submit_unknown: no task answer yet
        return None
    if record.task_id is None:
        return None
    fetched_by_url = delivery_of(record) is not Delivery.DOWNLOAD_ENDPOINT
    if status is TaskStatus.SUCCEEDED and record.url is None and fetched_by_url:
        return None
    error = None
    if record.error_message is not None or record.error_code is not None:
        code = record.error_code
        error = TaskError(
            code=int(code) if code is not None and code.isdecimal() else code,
            message=record.error_message or "",
        )
    return TaskSnapshot(
        task_id=record.task_id,
        status=status,
        raw_status=record.raw_status,
        url=record.url,
        error=error,
        raw={},
    )
