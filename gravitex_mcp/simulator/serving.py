"""Serving the simulator over HTTP on loopback (``gravitex-mcp simulator``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from .app import Simulator
from .config import SimulatorConfig
from .responses import ABORT_EXTENSION

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def network_app(app: ASGIApp) -> ASGIApp:
    """Wrap ``app`` for a real server: it may end a connection mid-body to simulate a cut."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions[ABORT_EXTENSION] = {}
            scope = {**scope, "extensions": extensions}
        await app(scope, receive, send)

    return wrapped


def make_server(
    simulator: Simulator | None = None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: SimulatorConfig | None = None,
    log_level: str = "info",
    access_log: bool = False,
    configure_logging: bool = True,
) -> uvicorn.Server:
    """A uvicorn server for ``simulator`` (a new one from ``config`` when not given).

    Call ``.run()`` (blocking) or ``await .serve()``; set ``.should_exit = True``
    to stop it. ``port=0`` picks a free port (read it from ``.servers`` once
    ``.started``). The access log is off by default: it would print the signed
    URLs' query strings. ``configure_logging=False`` leaves the process's logging
    configuration alone (uvicorn otherwise installs its own, e.g. inside tests).
    """
    sim = simulator if simulator is not None else Simulator(config)
    uv_config = uvicorn.Config(
        network_app(sim.app),
        host=host,
        port=port,
        interface="asgi3",
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        log_config=LOGGING_CONFIG if configure_logging else None,
        server_header=False,
    )
    return uvicorn.Server(uv_config)


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    config: SimulatorConfig | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    log_level: str = "info",
) -> None:
    """Serve a new simulator on ``host:port`` (loopback by default) until interrupted."""
    make_server(Simulator(config, clock=clock), host=host, port=port, log_level=log_level).run()
