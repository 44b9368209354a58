"""Where the server's video work runs: worker threads bounded by the machine's cores.

Probing, contact sheets, frames and joins decode video with PyAV: each one keeps a
core busy for up to a second or two and holds decoder buffers meanwhile. On anyio's
default thread pool (40 threads) a burst of saved videos ran 40 decodes at once, each
with FFmpeg's own frame threads: the cores were shared by ~100 threads, every other
call queued behind them for a free token (the journal's included), and each thread's
malloc arena kept its share of the memory. Here video work runs on its own few
threads, one per core (the decodes themselves are single-threaded, see frames.py):
the default pool and the event loop stay free for everything else, and the decoders'
buffers come and go in those threads' arenas only (on a shared pool each decode lands
on whichever thread is free, and every arena it touches keeps some of its memory).

Those threads, and the journal's, do not preempt the event loop when it wakes them
(:func:`yield_to_loop`): py-spy saw the loop thread, holding the GIL, stopped at the
wake-up of a ``to_thread.run_sync`` worker in 16% of its samples under load.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

_T = TypeVar("_T")

#: Wraps each piece of video work in its worker thread (tests count and hold them).
Around = Callable[[], AbstractContextManager[object]]


def core_count() -> int:
    """The cores this process may run on (its CPU affinity, where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


_stepped_back = threading.local()


def yield_to_loop() -> None:
    """Makes the calling worker thread give way to the event loop; once per thread.

    ``SCHED_BATCH`` (Linux): when the event loop wakes this thread (a ``to_thread`` call,
    a queued decode) the thread does not preempt it; it runs on a free core or when the
    loop's slice ends. Allowed without privileges, it applies to this thread only (Linux
    schedules threads, not processes), and its share of the cores is unchanged (a lower
    ``nice`` for the decodes was tried: it stretched the load when other processes
    kept the cores busy, and did not lower the quick calls' p99). Skipped where the OS
    has no ``SCHED_BATCH``. Never call it from the event loop thread.
    """
    if getattr(_stepped_back, "done", False):
        return
    _stepped_back.done = True
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


class VideoWork:
    """Runs blocking video work on ``slots`` dedicated threads, at most ``slots`` at once."""

    def __init__(self, slots: int | None = None, *, around: Around | None = None) -> None:
        self.slots = slots if slots is not None else core_count()
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")
        # Callers queue here (cancellable, in order), not in the executor's queue.
        self._limiter = anyio.CapacityLimiter(self.slots)
        self._around: Around = around or nullcontext
        self._threads: ThreadPoolExecutor | None = None  # started by the first work

    async def run(self, work: Callable[[], _T]) -> _T:
        """``work()`` on a video thread once one is free; waiting for it is cancellable,
        the work itself is not (a thread cannot be stopped midway)."""
        async with self._limiter:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(
                    self.slots, thread_name_prefix="video-work", initializer=yield_to_loop
                )
            done = anyio.Event()
            token = anyio.lowlevel.current_token()
            future: Future[_T] = self._threads.submit(self._call, work, done, token)
            with anyio.CancelScope(shield=True):
                await done.wait()
            return future.result()

    def statistics(self) -> anyio.CapacityLimiterStatistics:
        """How many pieces of work run (``borrowed_tokens``) and wait (``tasks_waiting``)."""
        return self._limiter.statistics()

    def _call(
        self, work: Callable[[], _T], done: anyio.Event, token: anyio.lowlevel.EventLoopToken
    ) -> _T:
        try:
            with self._around():
                return work()
        finally:
            # The event loop may be gone (shutdown): then nobody waits for the result.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(done.set, token=token)


_shared: VideoWork | None = None


def shared_video_work() -> VideoWork:
    """The process's one :class:`VideoWork`: every session shares the same cores.

    Made at first use, not at import (start-up does not pay for it).
    """
    global _shared  # one per process, by design
    if _shared is None:
        _shared = VideoWork()
    return _shared
