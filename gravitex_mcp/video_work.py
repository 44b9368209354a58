"""Where the server's video work runs: worker threads bounded by the machine's cores.

Probing, contact sheets, frames and joins decode video with PyAV: each one keeps a
core busy for up to a second or two and holds decoder buffers meanwhile. On anyio's
default thread pool (40 threads) a burst of saved videos ran 40 decodes at once, each
with FFmpeg's own frame threads: the cores were shared by ~100 threads, every other
call queued behind them for a free token (the journal's included), and each thread's
malloc arena kept its share of the memory. Here video work has its own limiter, one
decode per core (the decodes themselves are single-threaded, see frames.py), so the
default pool and the event loop stay free for everything else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import anyio
import anyio.to_thread

_T = TypeVar("_T")

#: Wraps each piece of video work in its worker thread (tests count and hold them).
Around = Callable[[], AbstractContextManager[object]]


def core_count() -> int:
    """The cores this process may run on (its CPU affinity, where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class VideoWork:
    """Runs blocking video work in worker threads, at most ``slots`` at once."""

    def __init__(self, slots: int | None = None, *, around: Around | None = None) -> None:
        self.slots = slots if slots is not None else core_count()
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")
        self._limiter = anyio.CapacityLimiter(self.slots)
        self._around: Around = around or nullcontext

    async def run(self, work: Callable[[], _T]) -> _T:
        """``work()`` in a worker thread once a slot is free; waiting is cancellable,
        the work itself is not (a thread cannot be stopped midway)."""
        return await anyio.to_thread.run_sync(self._call, work, limiter=self._limiter)

    def statistics(self) -> anyio.CapacityLimiterStatistics:
        """How many pieces of work run (``borrowed_tokens``) and wait (``tasks_waiting``)."""
        return self._limiter.statistics()

    def _call(self, work: Callable[[], _T]) -> _T:
        with self._around():
            return work()


_shared: VideoWork | None = None


def shared_video_work() -> VideoWork:
    """The process's one :class:`VideoWork`: every session shares the same cores.

    Made at first use, not at import (start-up does not pay for it).
    """
    global _shared  # one per process, by design
    if _shared is None:
        _shared = VideoWork()
    return _shared
