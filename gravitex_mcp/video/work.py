"""Where the server's video work runs: worker threads bounded by the machine's cores.

Probing, contact sheets, frames and joins decode video with PyAV: each one keeps a
core busy for up to a second or two and holds decoder buffers meanwhile. On anyio's
default thread pool (40 threads) a burst of saved videos ran 40 decodes at once, each
with FFmpeg's own frame threads: the cores were shared by ~100 threads, every other
call queued behind them for a free token (the journal's included), and each thread's
malloc arena kept its share of the memory. Here video work runs on its own few
threads, one per core but one (the decodes themselves are single-threaded, see frames.py):
the default pool and the event loop stay free for everything else, and the decoders'
buffers come and go in those threads' arenas only (on a shared pool each decode lands
on whichever thread is free, and every arena it touches keeps some of its memory).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

_T = TypeVar("_T")

#: Wraps each piece of video work in its worker thread (tests count and hold them).
Around = Callable[[], AbstractContextManager[object]]


def default_slots(cores: int) -> int:
    """Video threads for ``cores`` cores: all but one, which is left to the event loop
    (at least one). With every core decoding, the loop waited for a core behind them:
    a quick call's p99 under the 200-job load was 82-97 ms with 2 slots on 2 cores,
    38-76 ms with 1 (bench/RESULTS.md), for ~10% longer to look at them all."""
    return max(1, cores - 1)


def core_count() -> int:
    """The cores this process may run on (its CPU affinity, where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


class VideoWork:
    """Runs blocking video work on ``slots`` dedicated threads, at most ``slots`` at once."""

    def __init__(self, slots: int | None = None, *, around: Around | None = None) -> None:
        self.slots = slots if slots is not None else default_slots(core_count())
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
                self._threads = ThreadPoolExecutor(self.slots, thread_name_prefix="video-work")
            done = anyio.Event()
            outcome: _Outcome[_T] = _Outcome()
            token = anyio.lowlevel.current_token()
            self._threads.submit(self._call, work, outcome, done, token)
            with anyio.CancelScope(shield=True):
                await done.wait()
            return outcome.unwrap()

    def statistics(self) -> anyio.CapacityLimiterStatistics:
        """How many pieces of work run (``borrowed_tokens``) and wait (``tasks_waiting``)."""
        return self._limiter.statistics()

    def _call(
        self,
        work: Callable[[], _T],
        outcome: _Outcome[_T],
        done: anyio.Event,
        token: anyio.lowlevel.EventLoopToken,
    ) -> None:
        # The outcome is handed over before the loop is told, not through the executor's
        # future: that is set only after this returns, and the loop thread would block in
        # ``future.result()`` until the OS ran this thread again (up to tens of ms under
        # load, with every other call on the loop waiting behind it).
        try:
            with self._around():
                outcome.value = (work(),)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller, as a future would
            outcome.error = exc
        finally:
            # The event loop may be gone (shutdown): then nobody waits for the result.
            with contextlib.suppress(RuntimeError):
                anyio.from_thread.run_sync(done.set, token=token)


class _Outcome(Generic[_T]):
    """What a piece of video work returned, or raised."""

    __slots__ = ("error", "value")

    def __init__(self) -> None:
        self.value: tuple[_T] | None = None
        self.error: BaseException | None = None

    def unwrap(self) -> _T:
        if self.error is not None:
            raise self.error
        assert self.value is not None  # set before the loop is told
        return self.value[0]


_shared: VideoWork | None = None


def shared_video_work() -> VideoWork:
    """The process's one :class:`VideoWork`: every session shares the same cores.

    Made at first use, not at import (start-up does not pay for it).
    """
    global _shared  # one per process, by design
    if _shared is None:
        _shared = VideoWork()
    return _shared
