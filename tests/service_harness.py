"""A video service on the simulator over a SQLite journal and an output folder, for tests
of what the service does with many tasks at once (saves, looks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.lowlevel
import httpx2

from gravitex_mcp.service.videos import VideoService
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.client import GravitexClient
from tests.conftest import FakeClock
from tests.server_harness import API_KEY, make_settings


def quick_simulator(clock: FakeClock) -> httpx2.AsyncBaseTransport:
    """The simulator on ``clock``, its generations 3 s long."""
    config = SimulatorConfig(api_keys=frozenset({API_KEY}), queued_seconds=1, processing_seconds=2)
    return simulator_transport(Simulator(config, clock=clock.monotonic))


@asynccontextmanager
async def running_service(
    tmp_path: Path,
    clock: FakeClock,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    **service: Any,
) -> AsyncIterator[VideoService]:
    """A running service on ``transport`` (default: :func:`quick_simulator`); ``service``
    are more of :class:`VideoService`'s arguments."""
    settings = make_settings(tmp_path)
    journal = Journal.open(settings.state_dir)
    client = GravitexClient(
        api_key=API_KEY,
        base_url=settings.base_url,
        transport=transport or quick_simulator(clock),
    )
    videos = VideoService(
        settings=settings,
        client=client,
        journal=journal,
        output=OutputDir(settings.output_dir),
        clock=clock,
        **service,
    )
    try:
        async with videos.running():
            yield videos
    finally:
        await client.aclose()
        journal.close()


async def finished_tasks(service: VideoService, count: int, *, model: str) -> list[str]:
    """``count`` tasks of ``model`` submitted and waited on until finished."""
    ids = []
    for i in range(count):
        request = dict(model=model, prompt=f"clip {i}", wait_seconds=10)
        ids.append((await service.generate(request)).task_id)
    return ids


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until ``condition()`` holds: the work it watches runs in
    threads meanwhile, which have no event loop to set an Event on."""
    while not condition():
        await anyio.lowlevel.checkpoint()
