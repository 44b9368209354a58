"""The Gravitex video API client: submit, query and streamed downloads.

One :class:`httpx2.AsyncClient` (transport injectable, for tests and the
in-process simulator) with explicit connect/read/write/pool time-outs; the ``read``
time-out also bounds every wait for a streamed body's next bytes.

Every failure is mapped onto :mod:`gravitex_mcp.errors` (``raise ... from``) by
:mod:`~gravitex_mcp.upstream.failures`, which tables them; answers are read by
:mod:`~gravitex_mcp.upstream.answers`.

Retries follow :class:`~gravitex_mcp.upstream.retry.RetryPolicy`. ``query`` and the two
downloads are GETs and retry every retryable error above. ``submit`` creates a
paid task, so it is retried only when the API certainly did not take it: a 429,
or a connection that failed before the request was sent (``ConnectError``,
``ConnectTimeout``, ``PoolTimeout``). Anything after the body left (a 5xx or 408,
a read time-out, a broken connection, a 2xx without a ``task_id``) raises
:class:`SubmitOutcomeUnknownError` and is never sent again.

Secrets: the API key travels only in the ``Authorization`` header of requests
to the API (never to :meth:`GravitexClient.stream_url`); it is not in any
repr, log line or error message, and upstream text quoted in errors is scrubbed
of key-like tokens. Signed URLs appear in logs and errors only through
:func:`redact_url` (scheme, host and path; no query string). httpx2's own
``"HTTP Request: ..."`` log line is redacted the same way by a logging filter
that the client installs on the ``httpx2`` logger.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import anyio.to_thread
import httpx2

from .. import __version__
from ..errors import (
    FIND_TASKS,
    ConfigurationError,
    DownloadError,
    MalformedResponseError,
    MalformedSubmitResponseError,
)
from ..logs import redact_url_args
from ..redact import redact_url, scrub
from .answers import TaskError, TaskSnapshot, check_task_id, looks_like_html, parse_task, request_id
from .failures import (
    Op,
    RetryError,
    after_send_reason,
    append_to,
    as_clause,
    chained,
    outcome_unknown,
    outcome_unknown_message,
    read_error,
    status_error,
    transport_error,
)
from .retry import RetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "DEFAULT_USER_AGENT",
    "GravitexClient",
    "TaskError",
    "TaskSnapshot",
    "Timeouts",
    "read_error",
]

logger = logging.getLogger(__name__)

SUBMIT_PATH: Final = "/v1/video/generations"
QUERY_PATH: Final = "/v1/video/generations/{task_id}"
DOWNLOAD_PATH: Final = "/v1/video/generations/download"
DEFAULT_USER_AGENT: Final = f"gravitex-mcp/{__version__}"

#: Largest JSON answer accepted from submit/query (they are a few hundred bytes).
MAX_JSON_BODY: Final = 1 << 20
#: How much of an error body is read to find the upstream message.
MAX_ERROR_BODY: Final = 64 << 10

_T = TypeVar("_T")


# --- public value types ---------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for each phase of a request: httpx2's time-outs.

    ``read`` bounds each network read, so it is also the longest a streamed download
    may go without delivering a byte.
    """

    connect: float = 10.0
    read: float = 60.0
    write: float = 60.0
    pool: float = 10.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "write", "pool"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Timeouts.{name} must be > 0 seconds, got {value!r}")


DEFAULT_TIMEOUTS: Final = Timeouts()
DEFAULT_RETRY: Final = RetryPolicy()


async def _aclose(response: httpx2.Response) -> None:
    """Close ``response`` even while the surrounding task is being cancelled."""
    with anyio.CancelScope(shield=True):
        await response.aclose()


async def _read_upto(response: httpx2.Response, limit: int, *, quiet: bool = False) -> bytes:
    """The decoded body, read until it passes ``limit`` bytes (so a longer body shows as
    ``limit`` + 1 bytes or more); ``quiet``: a transport error ends it with what came."""
    buffer = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            buffer += chunk
            if len(buffer) > limit:
                break
    except httpx2.RequestError:
        if not quiet:
            raise
    return bytes(buffer)


async def _read_error_body(response: httpx2.Response) -> bytes:
    """Up to :data:`MAX_ERROR_BODY` bytes of an error answer; never raises a transport error."""
    return (await _read_upto(response, MAX_ERROR_BODY, quiet=True))[:MAX_ERROR_BODY]


# --- the client -------------------------------------------------------------------


#: The key paying for the current call, when it is a caller's own (GravitexClient.pay_with).
_PAYING_KEY: ContextVar[str | None] = ContextVar("gravitex_paying_key", default=None)


def _checked_key(api_key: str, what: str) -> str:
    """``api_key`` stripped, or a :class:`ConfigurationError` naming ``what`` (never the key)."""
    key = (api_key or "").strip()
    if not key:
        raise ConfigurationError(
            f"{what} is empty: export your Gravitex key (sk-...) "
            "or run with --simulate to use the built-in simulator."
        )
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigurationError(
            f"{what} contains spaces, control or non-ASCII characters; "
            "copy the key (sk-...) again without extra characters."
        )
    return key


class GravitexClient:
    """Talks to the Gravitex video API over one :class:`httpx2.AsyncClient`.

    ``sleep``, ``rand`` and ``clock`` (POSIX seconds, for HTTP-date
    ``Retry-After``) are injectable so retries are testable without waiting.
    Use as an async context manager, or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        transport: httpx2.AsyncBaseTransport | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        user_agent: str = DEFAULT_USER_AGENT,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        event_hooks: Mapping[str, list[Callable[[Any], Any]]] | None = None,
    ) -> None:
        key = _checked_key(api_key, "GRAVITEX_API_KEY")
        base = base_url.strip().rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"The Gravitex base URL must be an http(s) URL, got {redact_url(base)!r}."
            )
        self._api_key = key
        self._base_url = base
        self._timeouts = timeouts
        self._retry = retry
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._api_where = f"the Gravitex API ({redact_url(base)})"
        redact_url_args("httpx2", httpx2.URL)
        self._transport = transport
        self._user_agent = user_agent
        self._event_hooks = event_hooks  # metrics and spans (upstream/observe.py)
        self._http_client: httpx2.AsyncClient | None = None
        self._opening = anyio.Lock()
        self._closed = False

    def pay_with(self, api_key: str | None, *, what: str = "The caller's Gravitex key") -> None:
        """Pay with ``api_key`` (a caller's own key) for the requests of the current call
        and of the work it starts from here on, polls and saves that go on after it
        returns included (tasks inherit the context they were started in); None: this
        client's own key. The key is held in that context only, in memory, for as long
        as that work runs; it is scrubbed from errors like the client's own."""
        _PAYING_KEY.set(None if api_key is None else _checked_key(api_key, what))

    @property
    def _key(self) -> str:
        return _PAYING_KEY.get() or self._api_key

    @property
    def _http(self) -> httpx2.AsyncClient:
        # Built by _open_http, which every request passes first (_retrying): never here,
        # on the event loop.
        if self._http_client is None:
            raise RuntimeError("the Gravitex HTTP client is used before it was opened")
        return self._http_client

    async def _open_http(self) -> None:
        """Builds the HTTP client at the first request, not at start-up (tools/list never
        needs it), and in a worker thread: its network transport loads the CA bundle into
        an SSL context, ~30 ms of CPU every call on the event loop would wait behind."""
        if self._http_client is not None:
            return
        async with self._opening:
            if self._http_client is None:
                self._http_client = await anyio.to_thread.run_sync(self._new_http_client)

    def _new_http_client(self) -> httpx2.AsyncClient:
        if self._closed:
            raise RuntimeError("the Gravitex client is closed")
        timeouts = self._timeouts
        return httpx2.AsyncClient(
            base_url=self._base_url,
            transport=self._transport,
            timeout=httpx2.Timeout(
                connect=timeouts.connect,
                read=timeouts.read,
                write=timeouts.write,
                pool=timeouts.pool,
            ),
            headers={"User-Agent": self._user_agent},
            follow_redirects=False,
            event_hooks=self._event_hooks,
        )

    def __repr__(self) -> str:
        return f"<GravitexClient base_url={self._base_url!r}>"

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def timeouts(self) -> Timeouts:
        return self._timeouts

    async def aclose(self) -> None:
        self._closed = True
        if self._http_client is not None:
            await self._http_client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- public operations ----------------------------------------------------

    async def submit(self, body: Mapping[str, Any]) -> TaskSnapshot:
        """``POST /v1/video/generations``; never sends a body twice unless it surely did not land.

        Raises :class:`SubmitOutcomeUnknownError` (never retried) when the body may
        have reached the API but no usable answer came back.
        """
        op = Op(
            kind="submit",
            doing="submitting the generation task",
            where=self._api_where,
            not_found=(
                f"The submit endpoint was not found at {self._api_where} (HTTP 404): "
                "check GRAVITEX_BASE_URL."
            ),
        )
        payload = dict(body)
        return await self._retrying(op, lambda: self._submit_attempt(op, payload))

    async def query(self, task_id: str) -> TaskSnapshot:
        """``GET /v1/video/generations/{task_id}``, retried per the policy."""
        tid = check_task_id(task_id)
        op = Op(
            kind="query",
            doing=f"querying task {tid!r}",
            where=self._api_where,
            not_found=(
                f"The Gravitex API knows no task {tid!r} (HTTP 404): check the id ({FIND_TASKS})."
            ),
        )
        path = QUERY_PATH.format(task_id=quote(tid, safe=""))
        return await self._retrying(op, lambda: self._query_attempt(op, path, tid))

    def stream_sora_download(self, task_id: str) -> AbstractAsyncContextManager[httpx2.Response]:
        """``GET /v1/video/generations/download?id=...`` as an open, unread streamed response.

        The status is checked (and retried per the policy) before the response is
        yielded; the caller reads the JSON body incrementally (``aiter_bytes``).
        """
        tid = check_task_id(task_id)
        op = Op(
            kind="sora_download",
            doing=f"downloading the Sora video of task {tid!r}",
            where=self._api_where,
            not_found=(
                f"The Gravitex API has no video for task {tid!r} (HTTP 404): the task may "
                "not have succeeded yet, or may not be a Sora task."
            ),
        )

        def build() -> httpx2.Request:
            return self._http.build_request(
                "GET", DOWNLOAD_PATH, params={"id": tid}, headers=self._api_headers()
            )

        return self._streaming(op, build, follow_redirects=False)

    def stream_url(self, url: str) -> AbstractAsyncContextManager[httpx2.Response]:
        """``GET`` a signed video URL (no API key sent) as an open, unread streamed response.

        Redirects are followed. A 401/403/410 raises :class:`URLExpiredError`;
        other failures are mapped and retried per the policy before yielding.
        """
        parts = urlsplit(url.strip()) if isinstance(url, str) else None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            scheme = parts.scheme if parts is not None and parts.scheme else "no scheme"
            raise DownloadError(
                f"Refusing to download the video from a non-http(s) URL ({scheme}); "
                "only https:// and http:// links are fetched."
            )
        target = url.strip()
        where = redact_url(target)
        op = Op(
            kind="url_download",
            doing=f"downloading the video from {where}",
            where=where,
            not_found=(
                f"The video is gone from {where} (HTTP 404); query the task again for a fresh URL."
            ),
        )

        def build() -> httpx2.Request:
            # No Authorization header, ever: signed URLs carry their own signature.
            return self._http.build_request("GET", target)

        return self._streaming(op, build, follow_redirects=True)

    # --- attempts ----------------------------------------------------------------

    def _api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}", "Accept": "application/json"}

    async def _retrying(self, op: Op, attempt_fn: Callable[[], Awaitable[_T]]) -> _T:
        await self._open_http()
        policy = self._retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return await attempt_fn()
            except RetryError as retry:
                error, retry_after = retry.error, retry.retry_after
                if policy.should_retry(attempt, retry_after):
                    delay = policy.delay_for(attempt, retry_after, self._rand())
                    logger.info(
                        "%s (attempt %d of %d); retrying in %.2f s",
                        error.message,
                        attempt,
                        policy.max_attempts,
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                plural = "" if attempt == 1 else "s"
                note = f" Gave up after {attempt} attempt{plural}."
                if (
                    retry_after is not None
                    and policy.give_up_beyond_cap
                    and policy.exceeds_cap(retry_after)
                ):
                    note += (
                        f" The server asked to wait {retry_after:.0f} s before retrying, "
                        f"longer than the {policy.max_retry_after:g} s this server waits; "
                        "try again later."
                    )
                append_to(error, note)
                raise error from error.__cause__

    async def _submit_attempt(self, op: Op, payload: dict[str, Any]) -> TaskSnapshot:
        request = self._http.build_request(
            "POST", SUBMIT_PATH, json=payload, headers=self._api_headers()
        )
        try:
            response = await self._http.send(request, stream=True)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            # The connection was never made: the body did not leave, so no task exists.
            error = transport_error(op, exc, self._scrub)
            append_to(error, " The request was not sent, so no task was created.")
            raise RetryError(chained(error, exc)) from exc
        except httpx2.RequestError as exc:
            raise outcome_unknown(
                after_send_reason(exc, self._timeouts.read), status_code=None, request_id=None
            ) from exc

        try:
            status = response.status_code
            rid = request_id(response.headers)
            if status == 429:
                body = await _read_error_body(response)
                retry_after = parse_retry_after(response.headers, self._clock())
                raise RetryError(status_error(op, response, body, self._scrub), retry_after)
            if status == 408 or status >= 500:
                body = await _read_error_body(response)
                cause = status_error(op, response, body, self._scrub)
                said = f" ({cause.upstream_message})" if cause.upstream_message else ""
                raise outcome_unknown(
                    f"the API answered HTTP {status}{said} after receiving the request",
                    status_code=status,
                    request_id=rid,
                ) from cause
            if not 200 <= status < 300:
                body = await _read_error_body(response)
                raise status_error(op, response, body, self._scrub)
            try:
                raw = await self._read_json(op, response)
                return parse_task(
                    raw,
                    service=op.service,
                    doing=op.doing,
                    scrub=self._scrub,
                    fallback_task_id=None,
                    request_id=rid,
                    submitted=True,
                )
            except MalformedResponseError as exc:
                raise MalformedSubmitResponseError(
                    outcome_unknown_message(
                        f"the API answered HTTP {status} without the documented JSON "
                        f"answer ({as_clause(exc.message)})",
                        rid,
                    ),
                    status_code=status,
                    request_id=rid,
                ) from exc
            except httpx2.RequestError as exc:
                raise outcome_unknown(
                    f"the API answered HTTP {status} but the connection broke while its "
                    f"body was read ({type(exc).__name__})",
                    status_code=status,
                    request_id=rid,
                ) from exc
        finally:
            await _aclose(response)

    async def _query_attempt(self, op: Op, path: str, task_id: str) -> TaskSnapshot:
        request = self._http.build_request("GET", path, headers=self._api_headers())
        response = await self._send_retryable(op, request, follow_redirects=False)
        try:
            await self._check_status(op, response)
            rid = request_id(response.headers)
            try:
                raw = await self._read_json(op, response)
                return parse_task(
                    raw,
                    service=op.service,
                    doing=op.doing,
                    scrub=self._scrub,
                    fallback_task_id=task_id,
                    request_id=rid,
                    submitted=False,
                )
            except MalformedResponseError as exc:
                raise RetryError(exc) from exc
            except httpx2.RequestError as exc:
                raise RetryError(chained(transport_error(op, exc, self._scrub), exc)) from exc
        finally:
            await _aclose(response)

    @asynccontextmanager
    async def _streaming(
        self, op: Op, build: Callable[[], httpx2.Request], *, follow_redirects: bool
    ) -> AsyncIterator[httpx2.Response]:
        response = await self._retrying(
            op, lambda: self._open_attempt(op, build(), follow_redirects=follow_redirects)
        )
        try:
            yield response
        finally:
            await _aclose(response)

    async def _open_attempt(
        self, op: Op, request: httpx2.Request, *, follow_redirects: bool
    ) -> httpx2.Response:
        response = await self._send_retryable(op, request, follow_redirects=follow_redirects)
        try:
            await self._check_status(op, response)
            content_type = response.headers.get("content-type", "")
            if "html" in content_type.lower():
                error = MalformedResponseError(
                    f"{op.service} sent an HTML page instead of the video while {op.doing}.",
                    status_code=response.status_code,
                    request_id=request_id(response.headers),
                )
                raise RetryError(error)
        except BaseException:
            await _aclose(response)
            raise
        return response

    async def _send_retryable(
        self, op: Op, request: httpx2.Request, *, follow_redirects: bool
    ) -> httpx2.Response:
        """Send ``request`` for an idempotent GET; every transport failure is retryable."""
        try:
            return await self._http.send(request, stream=True, follow_redirects=follow_redirects)
        except httpx2.RequestError as exc:
            raise RetryError(chained(transport_error(op, exc, self._scrub), exc)) from exc

    async def _check_status(self, op: Op, response: httpx2.Response) -> None:
        """Raise the mapped error (wrapped in :class:`RetryError` if retryable) for a non-2xx."""
        if 200 <= response.status_code < 300:
            return
        body = await _read_error_body(response)
        error = status_error(op, response, body, self._scrub)
        if error.retryable:
            raise RetryError(error, parse_retry_after(response.headers, self._clock()))
        raise error

    async def _read_json(self, op: Op, response: httpx2.Response) -> Any:
        """The JSON body, or :class:`MalformedResponseError`; transport errors pass through."""

        def malformed(what: str) -> MalformedResponseError:
            return MalformedResponseError(
                f"{op.service} sent {what} while {op.doing} (HTTP {response.status_code}).",
                status_code=response.status_code,
                request_id=request_id(response.headers),
            )

        try:
            body = await _read_upto(response, MAX_JSON_BODY)
        except httpx2.DecodingError as exc:
            raise malformed("a body that could not be decoded") from exc
        if len(body) > MAX_JSON_BODY:
            raise malformed(
                f"more than {MAX_JSON_BODY} bytes where a small JSON answer was expected"
            )
        try:
            return json.loads(body)
        except ValueError as exc:
            content_type = response.headers.get("content-type", "")
            if not body.strip():
                what = "an empty body"
            elif looks_like_html(body, content_type):
                what = "an HTML page"
            else:
                what = f"a body that is not JSON ({content_type or 'no content type'})"
            raise malformed(f"{what} instead of JSON") from exc

    def _scrub(self, text: str) -> str:
        paying = _PAYING_KEY.get()
        text = scrub(text, self._api_key)
        return scrub(text, paying) if paying else text
