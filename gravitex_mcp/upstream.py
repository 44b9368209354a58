"""Which upstream the server talks to: the real API, or the built-in simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx2

from .client import GravitexClient
from .settings import Settings
from .simulator import Simulator, SimulatorConfig, simulator_transport

#: The simulator is reached in-process; this host never resolves (``.invalid``).
SIMULATOR_BASE_URL = "http://simulator.gravitex.invalid"
SIMULATOR_KEY = "sk-simulator"


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where requests go: base URL, key, and an optional in-process transport."""

    base_url: str
    api_key: str
    transport: httpx2.AsyncBaseTransport | None = None
    simulator: Simulator | None = None


def simulated_upstream(settings: Settings) -> Upstream:
    """An in-process simulator whose generations take ``settings.simulator_seconds``."""
    total = settings.simulator_seconds
    sim = Simulator(
        SimulatorConfig(
            api_keys=frozenset({SIMULATOR_KEY}),
            queued_seconds=total * 0.25,
            processing_seconds=total * 0.75,
        )
    )
    return Upstream(
        base_url=SIMULATOR_BASE_URL,
        api_key=SIMULATOR_KEY,
        transport=simulator_transport(sim),
        simulator=sim,
    )


def choose_upstream(
    settings: Settings, *, transport: httpx2.AsyncBaseTransport | None = None
) -> Upstream:
    """The simulator when simulating, else the real API (the key is required then)."""
    if settings.simulate:
        return simulated_upstream(settings)
    return Upstream(
        base_url=settings.base_url, api_key=settings.require_api_key(), transport=transport
    )


@asynccontextmanager
async def open_upstream(
    settings: Settings,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    upstream: Upstream | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> AsyncIterator[GravitexClient]:
    """A :class:`GravitexClient` for the chosen upstream, closed on exit.

    ``sleep`` is what retries wait with (tests pass a fake clock's).
    """
    chosen = upstream or choose_upstream(settings, transport=transport)
    async with GravitexClient(
        api_key=chosen.api_key, base_url=chosen.base_url, transport=chosen.transport, sleep=sleep
    ) as client:
        yield client
