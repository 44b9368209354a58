"""The HTTP transports (SSE and streamable HTTP) behind one guard.

The guard wraps every route but ``GET /healthz``: a ``Host`` or ``Origin``
that is not this server's is refused (DNS rebinding), and when a token is
configured every request needs ``Authorization: Bearer <token>`` (compared in
constant time), except the media links under ``/media/``: a browser ``<video>``
cannot send a header, so their unguessable path is the credential (media.py).
``/healthz`` is open to anyone (load balancers send neither the token nor this
server's name) and so says only ``{"status": "ok"}``: no version, no paths.
``/readyz`` is open the same way: it runs the ready checks (named callables: the
journal reads, the output folder takes a file; the team backends add theirs) and
answers 200 ``{"status": "ready"}`` or 503 naming the checks that failed, never why
(the reason, which may hold a path, goes to the log). ``GET /metrics`` (Prometheus
text) sits behind the guard like ``/mcp``, or beside ``/healthz`` with
``GRAVITEX_METRICS_PUBLIC=1``.
Listening on a non-loopback address without a token is refused
before the socket is opened.

With a verifier of callers (server/callers.py: a tokens file, OAuth JWTs, or the
shared token) the SDK's bearer middleware checks the MCP routes' tokens and serves
the RFC 9728 metadata at ``/.well-known/oauth-protected-resource``; the guard then
checks no token there (not twice), only on ``/metrics`` through the same verifier,
and lets the metadata through its Origin check (browser clients of any origin read it).

A body POSTed to SSE's ``/messages/`` that is not one JSON-RPC message is answered
here with a 400 and a JSON-RPC parse error: the SDK would answer it too, but then
hands the error to the session, which ends (every call in flight on it lost).
Streamable HTTP's ``/mcp`` answers such bodies itself and goes on.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http_manager import DEFAULT_SESSION_IDLE_TIMEOUT
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    RequestBodyLimitMiddleware,
    TransportSecuritySettings,
)
from mcp_types import PARSE_ERROR, jsonrpc_message_adapter
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigurationError
from ..metrics import Metrics
from ..settings import is_loopback
from ..store.media_links import MediaLinks
from .callers import CallerVerifier
from .media import is_media_path, origin_of, with_media
from .stdio_guard import refusal_reason, request_id_of

logger = logging.getLogger(__name__)

HttpTransport = Literal["sse", "streamable-http"]
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
#: A ready check: blocks (run in a worker thread), raises when its part cannot serve.
ReadyCheck = Callable[[], object]
#: How long one ready check may take before it counts as failed.
READY_CHECK_SECONDS = 5.0
#: Where the OAuth protected-resource metadata lives (open to any Origin).
WELL_KNOWN = "/.well-known/oauth-protected-resource"


def check_bind(host: str, token: str | CallerVerifier | None) -> None:
    """Refuse a non-loopback bind without a token (or a verifier of callers), with the
    fix in the message."""
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"Refusing to serve on {host} without a token: anyone who can reach it could "
            "spend your Gravitex credit. Set GRAVITEX_HTTP_TOKEN (one shared user), "
            "GRAVITEX_TOKENS_FILE or GRAVITEX_OAUTH_ISSUER (many users), or bind "
            "--host 127.0.0.1."
        )


def _host_patterns(host: str, port: int, extra: Iterable[str]) -> list[str]:
    names = list(LOOPBACK_NAMES)
    bind = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if bind not in names and bind not in ("0.0.0.0", "[::]"):  # noqa: S104 - a name, not a bind
        names.append(bind)
    names.extend(extra)
    return [pattern for name in names for pattern in (name, f"{name}:{port}")]


class HttpGuard:
    """ASGI middleware: Host/Origin checks and the bearer token on every request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str],
        token: str | None,
        verifier: CallerVerifier | None = None,
    ) -> None:
        self._app = app
        self._hosts = frozenset(h.lower() for h in allowed_hosts)
        self._origins = frozenset(o.lower() for o in allowed_origins)
        # With a verifier the SDK checks the MCP routes' tokens (once); the guard only
        # checks the routes the SDK does not see (/metrics), through the same verifier.
        self._token = token.encode() if token and verifier is None else None
        self._verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        path = str(scope["path"])
        headers = Headers(scope=scope)
        refusal = self._refusal(
            headers, media=is_media_path(path), metadata=path.startswith(WELL_KNOWN)
        )
        if refusal is None and self._verifier is not None and path == "/metrics":
            refusal = await self._verified(headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._app(scope, receive, send)

    async def _verified(self, headers: Headers) -> Response | None:
        assert self._verifier is not None
        scheme, _, presented = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and await self._verifier.verify_token(presented.strip()):
            return None
        return _unauthorized()

    def _refusal(
        self, headers: Headers, *, media: bool = False, metadata: bool = False
    ) -> Response | None:
        host = (headers.get("host") or "").lower()
        if host not in self._hosts:
            return PlainTextResponse("Invalid Host header", status_code=421)
        origin = headers.get("origin")
        # The public OAuth metadata is read by browser clients of any origin (RFC 9728).
        if origin is not None and not metadata and origin.lower() not in self._origins:
            return PlainTextResponse("Invalid Origin header", status_code=403)
        if self._token is not None and not media:
            scheme, _, presented = (headers.get("authorization") or "").partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(
                presented.strip().encode(), self._token
            )
            if not ok:
                return _unauthorized()
        return None


def _unauthorized() -> Response:
    return JSONResponse(
        {"error": "unauthorized", "message": "Authorization: Bearer <token> required"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="gravitex-mcp"'},
    )


def build_http_app(
    server: MCPServer[Any],
    *,
    transport: HttpTransport,
    host: str,
    port: int,
    token: str | None,
    extra_allowed_hosts: Sequence[str] = (),
    media: MediaLinks | None = None,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
    metrics: Metrics | None = None,
    metrics_public: bool = False,
    stateless: bool = False,
    session_idle_seconds: float = DEFAULT_SESSION_IDLE_TIMEOUT,
    verifier: CallerVerifier | None = None,
) -> ASGIApp:
    """The ASGI app for ``transport``: MCP at ``/mcp`` or ``/sse`` + ``/messages/``,
    (with ``media``) the media links at ``/media/`` and (with ``metrics``)
    ``/metrics``, all behind :class:`HttpGuard`, plus the open ``/healthz`` and
    ``/readyz``. ``stateless`` and ``session_idle_seconds`` are the SDK's streamable
    HTTP session options (no sessions; an idle session's expiry). ``verifier`` (the
    one ``server`` was built with) says who calls; the SDK then checks the MCP routes'
    tokens and serves the OAuth metadata."""
    check_bind(host, verifier or token)
    if stateless and transport != "streamable-http":
        raise ConfigurationError("--stateless applies to --transport streamable-http only.")
    hosts = _host_patterns(host, port, extra_allowed_hosts)
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]

    # The SDK's own Host/Origin checks stay on too (they guard only the MCP routes).
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
    if transport == "sse":
        inner: ASGIApp = _with_message_check(server.sse_app(transport_security=security, host=host))
    else:
        inner = server.streamable_http_app(
            transport_security=security,
            host=host,
            stateless_http=stateless,
            session_idle_timeout=session_idle_seconds,
        )
    guarded: ASGIApp = HttpGuard(
        _with_metrics(with_media(inner, media), None if metrics_public else metrics),
        allowed_hosts=hosts,
        allowed_origins=origins,
        token=token,
        verifier=verifier,
    )
    if metrics_public:
        guarded = _with_metrics(guarded, metrics)
    return _with_healthz(guarded, ready_checks or {})


def media_origins(
    host: str, port: int, extra_allowed_hosts: Sequence[str] = (), public_url: str | None = None
) -> list[str]:
    """Every origin a media link of this HTTP server can have: the public URL's, or
    each Host the guard accepts (links are built on the Host a request came in on)."""
    if public_url:
        return [origin_of(public_url)]
    return sorted({f"http://{h}" for h in _host_patterns(host, port, extra_allowed_hosts)})


def _with_message_check(app: ASGIApp) -> ASGIApp:
    """SSE's ``POST /messages/`` reaches ``app`` only with a body that is one JSON-RPC
    message (see the module notes); any other body is answered here."""

    async def check(scope: Scope, receive: Receive, send: Send) -> None:
        # The size limit in front has buffered the whole body: this reads it back.
        held: list[Message] = []
        body = b""
        while True:
            message = await receive()
            held.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        try:
            # The SDK's own parse: depth-bounded, so any body is safe to read here.
            jsonrpc_message_adapter.validate_json(body, by_name=False)
        except ValidationError as exc:
            request_id = request_id_of(exc)
            reason = f"the body is {refusal_reason(exc)}"
            logger.warning("sse: refused a message body (%s; request id %r)", reason, request_id)
            refusal = JSONResponse(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "error": {
                        "code": PARSE_ERROR,
                        "message": f"Parse error: {reason}. POST one JSON-RPC message.",
                    },
                },
                status_code=400,
            )
            await refusal(scope, receive, send)
            return

        async def replay() -> Message:
            return held.pop(0) if held else await receive()

        await app(scope, replay, send)

    limited = RequestBodyLimitMiddleware(check, DEFAULT_MAX_REQUEST_BODY_SIZE)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and str(scope["path"]).startswith("/messages/")
        ):
            await limited(scope, receive, send)
            return
        await app(scope, receive, send)

    return asgi


def _is_get(scope: Scope, path: str) -> bool:
    return scope["type"] == "http" and scope["path"] == path and scope["method"] in ("GET", "HEAD")


def _with_healthz(app: ASGIApp, ready_checks: Mapping[str, ReadyCheck]) -> ASGIApp:
    """``GET /healthz`` and ``/readyz`` answered here, to anyone; everything else
    goes to ``app``."""
    health = JSONResponse({"status": "ok"})

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if _is_get(scope, "/healthz"):
            await health(scope, receive, send)
            return
        if _is_get(scope, "/readyz"):
            await (await readiness(ready_checks))(scope, receive, send)
            return
        await app(scope, receive, send)

    return asgi


async def readiness(checks: Mapping[str, ReadyCheck]) -> Response:
    """Run every check (at once, each in a worker thread, each bounded in time)."""
    failed: list[str] = []

    async def run(name: str, check: ReadyCheck) -> None:
        try:
            with anyio.fail_after(READY_CHECK_SECONDS):
                await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; logged
            logger.warning("readyz: %s is not ready: %s", name, exc)
            failed.append(name)

    async with anyio.create_task_group() as group:
        for name, check in checks.items():
            group.start_soon(run, name, check)
    if failed:
        return JSONResponse({"status": "not ready", "failed": sorted(failed)}, status_code=503)
    return JSONResponse({"status": "ready"})


def _with_metrics(app: ASGIApp, metrics: Metrics | None) -> ASGIApp:
    """``GET /metrics`` answered from ``metrics`` (nothing added when ``None``)."""
    if metrics is None:
        return app

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if _is_get(scope, "/metrics"):
            # Off the event loop: the tasks gauge reads the task store.
            body, content_type = await anyio.to_thread.run_sync(metrics.exposition)
            await Response(body, headers={"Content-Type": content_type})(scope, receive, send)
            return
        await app(scope, receive, send)

    return asgi


async def serve_http(app: ASGIApp, *, host: str, port: int, log_level: str) -> None:
    """Run ``app`` with uvicorn until cancelled."""
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level.lower(), lifespan="on", access_log=False
    )
    await uvicorn.Server(config).serve()
