"""Which upstream the server talks to: the real API, or the built-in simulator."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import httpx2

from ..errors import MissingAPIKeyError
from ..metrics import Metrics
from ..settings import Settings
from .client import GravitexClient
from .observe import upstream_hooks

if TYPE_CHECKING:  # imported when simulating only: a real-API start never loads it
    from ..simulator import Simulator, SimulatorConfig

#: What carries the client's requests: the network, the in-process simulator, or a
#: test's fake. Named here so the server can take one without importing httpx2.
Transport = httpx2.AsyncBaseTransport

#: The simulator is reached in-process; this host never resolves (``.invalid``).
SIMULATOR_BASE_URL = "http://simulator.gravitex.invalid"
SIMULATOR_KEY = "sk-simulator"


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where requests go: base URL, key, and an optional in-process transport."""

    base_url: str
    api_key: str
    transport: Transport | None = None
    simulator: Simulator | None = None


def simulator_config(seconds: float, api_keys: frozenset[str] | None) -> SimulatorConfig:
    """A simulator whose generations take ``seconds`` (a quarter queued, the rest running)."""
    from ..simulator import SimulatorConfig

    return SimulatorConfig(
        api_keys=api_keys, queued_seconds=seconds * 0.25, processing_seconds=seconds * 0.75
    )


def simulated_upstream(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    store_busy_timeout: float | None = None,
) -> Upstream:
    """An in-process simulator whose generations take ``settings.simulator_seconds``.

    Its tasks live in the state folder and its clock is the wall clock, so a
    task submitted by one ``--simulate`` process is found, finished on time, by
    the next. Close it with ``upstream.simulator.close()``. ``store_busy_timeout``
    (tests) is how long the store waits for another process's lock.
    """
    from ..simulator import Simulator, TaskStore, simulator_transport

    waits = {} if store_busy_timeout is None else {"busy_timeout": store_busy_timeout}
    store = TaskStore.in_folder(settings.state_dir, **waits)
    sim = Simulator(
        simulator_config(settings.simulator_seconds, frozenset({SIMULATOR_KEY})),
        clock=clock,
        store=store,
    )
    return Upstream(
        base_url=SIMULATOR_BASE_URL,
        api_key=SIMULATOR_KEY,
        transport=simulator_transport(sim),
        simulator=sim,
    )


class _SimulatorOnDemand(httpx2.AsyncBaseTransport):
    """The in-process simulator of ``settings``, made at the first request sent to it.

    A start that sends nothing upstream (initialize, tools/list) neither imports the
    simulator nor opens its task store. :meth:`aclose` releases the store.
    """

    def __init__(self, settings: Settings, *, store_busy_timeout: float | None = None) -> None:
        self._settings = settings
        self._store_busy_timeout = store_busy_timeout
        self._made: Upstream | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self._made is None:
            # A store that cannot be opened raises here and is tried again next request.
            self._made = simulated_upstream(
                self._settings, store_busy_timeout=self._store_busy_timeout
            )
            assert self._made.simulator is not None
            store = self._made.simulator.tasks
            if store.moved_aside is not None:
                from ..errors import SimulatorStoreError

                # Told once, to the call that met it: the tasks it knew are gone.
                raise SimulatorStoreError(
                    f"The simulator's task store {store.path} was damaged: it was moved "
                    f"aside to {store.moved_aside.name} and a new one started, so the "
                    "simulator's earlier tasks are gone. Call again (submit anew for a task "
                    "made before)."
                )
        assert self._made.transport is not None
        return await self._made.transport.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the simulator made here (its transport, then its task store)."""
        if self._made is not None:
            if self._made.transport is not None:
                await self._made.transport.aclose()
            if self._made.simulator is not None:
                self._made.simulator.close()


class _KeyRequired(httpx2.AsyncBaseTransport):
    """The upstream of a server started without a key: every request made with the
    missing key is refused here, before a connection, with what to set and where
    (:class:`MissingAPIKeyError`).

    The server still starts, so a client connects and everything that needs no API
    (list_models, dry runs, the journal, saved videos) works. A request paid with a
    caller's own key (``GravitexClient.pay_with``: a tokens file's ``upstream_key``
    or an ``X-Gravitex-Api-Key`` header), and a signed video URL (no key at all),
    go on to ``inner`` (the network by default).
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.headers.get("authorization") == f"Bearer {_NO_KEY}":
            raise MissingAPIKeyError()
        if self._inner is None:
            self._inner = httpx2.AsyncHTTPTransport()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


#: The client's key when there is none: it never leaves the process (see _KeyRequired).
_NO_KEY = "sk-not-set"


def choose_upstream(settings: Settings, *, transport: Transport | None = None) -> Upstream:
    """The simulator when simulating (made at the first request), else the real API;
    without a key, an upstream that refuses every request naming the fix."""
    if settings.simulate:
        return Upstream(
            base_url=SIMULATOR_BASE_URL,
            api_key=SIMULATOR_KEY,
            transport=_SimulatorOnDemand(settings),
        )
    if not settings.api_key:
        return Upstream(
            base_url=settings.base_url, api_key=_NO_KEY, transport=_KeyRequired(transport)
        )
    return Upstream(base_url=settings.base_url, api_key=settings.api_key, transport=transport)


@asynccontextmanager
async def open_upstream(
    settings: Settings,
    *,
    transport: Transport | None = None,
    upstream: Upstream | None = None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    metrics: Metrics | None = None,
) -> AsyncIterator[GravitexClient]:
    """A :class:`GravitexClient` for the chosen upstream, closed on exit.

    ``sleep`` is what retries wait with (tests pass a fake clock's); its requests are
    timed into ``metrics`` and traced (upstream/observe.py).
    """
    chosen = upstream or choose_upstream(settings, transport=transport)
    # The client closes its transport; the on-demand simulator's closes what it made.
    async with GravitexClient(
        api_key=chosen.api_key,
        base_url=chosen.base_url,
        transport=chosen.transport,
        sleep=sleep,
        event_hooks=upstream_hooks(chosen.base_url, metrics),
    ) as client:
        yield client
