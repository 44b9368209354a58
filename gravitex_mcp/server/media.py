"""The HTTP route that serves the capability links to the files this server saved.

The links are minted and checked by :class:`~gravitex_mcp.store.media_links.MediaLinks`
(an HMAC of the file's identity under a secret in the state folder, or, with
``GRAVITEX_SERVER_SECRET``, a key derived from it, so every replica honours the links
any other handed out). So:

- links need no registry and survive a restart (the secret is on disk);
- a forged or altered link, a path outside the output folder (``..``, an
  absolute path, a symlink anywhere on the way) and a file that is gone or was
  replaced all get the same plain 404 -- replaced includes rewritten in place with
  its size and mtime set back: the inode and ``ctime`` cannot be set back;
- only files the server handed out a link for can be fetched: it mints links
  for the videos, contact sheets and frames it saved, and nothing else;
- deleting the key file (or changing the server secret) revokes every link at once.

Over the HTTP transports the route lives on the server's own port (behind the
Host/Origin checks, not the bearer token); over stdio :func:`serve_loopback`
runs it on 127.0.0.1 for as long as the server runs, on the port of the last
start when it is free (``media-port`` in the state folder), else an ephemeral one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..store.media_links import MEDIA_PREFIX, MediaLinks

logger = logging.getLogger(__name__)

#: The loopback media server's last port, in the state folder (stdio only).
MEDIA_PORT_FILE = "media-port"
_NOT_FOUND = PlainTextResponse("Not found", status_code=404)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: what a CSP source list names."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _MediaFile(FileResponse):
    """A :class:`FileResponse` that ignores a ``Range`` in a unit other than bytes.

    RFC 9110 (14.2): a server MUST ignore a Range whose unit it does not understand,
    so ``Range: items=0-5`` gets the whole file with 200; Starlette answers it 400.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(_without_foreign_range(scope), receive, send)


def _without_foreign_range(scope: Scope) -> Scope:
    """``scope`` minus any ``Range`` header whose unit is not ``bytes``."""
    headers = scope.get("headers") or []
    kept = [
        (name, value)
        for name, value in headers
        if name.lower() != b"range" or value.partition(b"=")[0].strip().lower() == b"bytes"
    ]
    return scope if len(kept) == len(headers) else {**scope, "headers": kept}


async def media_response(links: MediaLinks, scope: Scope) -> Response:
    """The answer to one ``GET``/``HEAD`` under ``/media/``: the file (Range requests
    included, through Starlette's :class:`FileResponse`) or a 404."""
    if scope.get("method") not in ("GET", "HEAD"):
        return PlainTextResponse("Method not allowed", status_code=405, headers={"Allow": "GET"})
    rest = str(scope["path"])[len(MEDIA_PREFIX) :]
    token, _, name = rest.partition("/")
    # Checking the link resolves and stats the file: off the event loop.
    path = await anyio.to_thread.run_sync(links.resolve, token, name)
    if path is None:
        return _NOT_FOUND
    return _MediaFile(
        path,
        headers={
            # The link is a credential: keep it out of shared caches and referrers.
            "Cache-Control": "private, max-age=3600",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
        content_disposition_type="inline",
    )


def with_media(app: ASGIApp, links: MediaLinks | None) -> ASGIApp:
    """``app`` with ``/media/...`` answered from ``links`` (nothing added when ``None``)."""
    if links is None:
        return app

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope["path"]).startswith(MEDIA_PREFIX):
            response = await media_response(links, scope)
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    return asgi


def is_media_path(path: str) -> bool:
    """Whether a request path is under the media route (exempt from the bearer token)."""
    return path.startswith(MEDIA_PREFIX)


def loopback_app(links: MediaLinks, port: int) -> ASGIApp:
    """The loopback media server's app: only ``/media/``, only for a loopback Host."""
    hosts = {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        host = (Headers(scope=scope).get("host") or "").lower()
        if host not in hosts:  # DNS rebinding: a page naming its own host gets nothing
            await PlainTextResponse("Invalid Host header", status_code=421)(scope, receive, send)
            return
        if not is_media_path(str(scope["path"])):
            await _NOT_FOUND(scope, receive, send)
            return
        response = await media_response(links, scope)
        await response(scope, receive, send)

    return asgi


def _bind_loopback(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _remembered_port(port_file: Path | None) -> int:
    """The port the last start used (0: none, or unreadable)."""
    if port_file is None:
        return 0
    try:
        port = int(port_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return 0
    return port if 1024 <= port <= 65535 else 0


def _bind_remembered(port_file: Path | None) -> tuple[socket.socket, bool]:
    """The port remembered in ``port_file`` when it is free (and True), else an
    ephemeral one (and False).

    Links carry the port: keeping it lets links handed out before a restart (in an
    earlier conversation) keep working, as they do over HTTP. Best effort: another
    server holding that port just means a new one.
    """
    remembered = _remembered_port(port_file)
    if remembered:
        try:
            return _bind_loopback(remembered), True
        except OSError:
            logger.info("media port %d is taken; using another", remembered)
    return _bind_loopback(), False


def _remember_port(port_file: Path, port: int) -> None:
    """Write ``port`` to ``port_file`` (best effort: a state folder that cannot be
    written just means a new port next time)."""
    try:
        tmp = port_file.with_name(f".{port_file.name}.{os.getpid()}.tmp")
        tmp.write_text(f"{port}\n", encoding="ascii")
        os.replace(tmp, port_file)
    except OSError as exc:
        logger.info("could not remember the media port in %s: %s", port_file, exc)


@asynccontextmanager
async def serve_loopback(links: MediaLinks, port_file: Path | None = None) -> AsyncIterator[str]:
    """Serve ``links`` on 127.0.0.1 while the context is open; yields the base URL
    (``http://127.0.0.1:PORT``). The port is the one named in ``port_file`` when it
    is free (so links survive a restart), else an ephemeral one, written there once
    its first link is handed out.

    The port is bound and listening at once (so the URL, and the player's CSP, are
    known). On a new port uvicorn starts at ``links.ready()``, before the first link
    is handed out: no link to that port can exist before, and a server that never
    saves a video never loads uvicorn's HTTP protocol (~10 ms of a start). On the
    remembered port it starts at once, since links of an earlier run may be fetched.

    uvicorn's ``startup`` is driven directly rather than ``serve()``: ``serve()``
    would take over the process's signal handlers (the stdio server owns Ctrl-C),
    and its shutdown sleeps and polls, a cost every server stop would pay.
    """
    sock, reused = _bind_remembered(port_file)
    port = int(sock.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    started: list[Any] = []  # the uvicorn server, once started
    lock = anyio.Lock()

    async def start() -> None:
        async with lock:
            if started:
                return
            import uvicorn

            config = uvicorn.Config(
                loopback_app(links, port),
                lifespan="off",
                access_log=False,  # the path is a credential: never log it
                log_level="warning",
            )
            config.load()
            server = uvicorn.Server(config)
            server.lifespan = config.lifespan_class(config)
            await server.startup(sockets=[sock])
            started.append(server)
            logger.info("media links served on %s", base)
            if port_file is not None and not reused:
                # Remembered once links to it exist: only then must a restart keep it
                # (and serve at once), so a server that never saved a video stays lazy.
                await anyio.to_thread.run_sync(_remember_port, port_file, port)

    links.start_serving = start
    try:
        if reused:
            # Links an earlier run handed out name this port: serve them now, not
            # only once this run hands out its first link.
            await start()
        yield base
    finally:
        links.start_serving = None
        with anyio.CancelScope(shield=True):
            for server in started:
                await _stop(server)
        sock.close()


#: How long stopping waits for the responses it cut short to end their app calls.
_STOP_WAIT = 2.0


async def _stop(server: Any) -> None:
    """Stop listening, end open connections and their tasks, wait (briefly) for them.

    A response still being sent is cut by aborting its connection: its app call then
    reads ``http.disconnect`` and returns. Cancelling its task instead would make
    uvicorn log "Exception in ASGI application" with a traceback at every stop.
    """
    listeners = list(getattr(server, "servers", []))
    for listener in listeners:
        listener.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()  # an idle connection closes; one mid-response does not
        transport = getattr(connection, "transport", None)
        if transport is not None:
            transport.abort()
    tasks = list(server.server_state.tasks)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=_STOP_WAIT)
        for task in pending:  # an app call that ignored the disconnect
            task.cancel()
    with anyio.move_on_after(_STOP_WAIT):
        for listener in listeners:
            await listener.wait_closed()


def request_host(headers: Any) -> str | None:
    """The Host header of the current HTTP request (already checked by the guard)."""
    if headers is None:
        return None
    try:
        host = headers.get("host")
    except (AttributeError, TypeError):
        return None
    return str(host) if host else None


__all__ = [
    "MEDIA_PORT_FILE",
    "is_media_path",
    "loopback_app",
    "media_response",
    "origin_of",
    "request_host",
    "serve_loopback",
    "with_media",
]
