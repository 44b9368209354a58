"""Progress notifications: the one reporting type, kept strictly increasing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

#: progress(progress, total, message): one progress notification (MCP's ``progress``).
ProgressFn = Callable[[float, float | None, str], Awaitable[None]]


class Progress:
    """One strictly increasing progress stream (the protocol requires it), however
    many concurrent senders share it; ``None`` reports nothing."""

    def __init__(self, report: ProgressFn | None) -> None:
        self._report = report
        self._last = -1.0
        self._lock = anyio.Lock()

    async def send(self, progress: float, total: float | None, message: str) -> None:
        if self._report is None:
            return
        async with self._lock:  # one notification at a time, in increasing order
            value = max(progress, self._last + 0.001)
            self._last = value
            await self._report(value, total, message)

    def prefixed(self, prefix: str) -> ProgressFn:
        """A sender into this stream whose messages start with ``prefix``."""

        async def report(progress: float, total: float | None, message: str) -> None:
            await self.send(progress, total, f"{prefix}{message}")

        return report
