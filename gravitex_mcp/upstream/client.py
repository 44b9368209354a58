"""The Gravitex video API client: submit, query and streamed downloads.

One :class:`httpx2.AsyncClient` (transport injectable, for tests and the
in-process simulator) with explicit connect/read/write/pool time-outs; the ``read``
time-out also bounds every wait for a streamed body's next bytes.

Every failure is mapped onto :mod:`gravitex_mcp.errors` (``raise ... from``):

=====================================  =========================================
what happened                          error
=====================================  =========================================
400 / 422                              :class:`BadRequestError`
401 / 403 (API)                        :class:`AuthenticationError`
401 / 403 / 410 (signed URL)           :class:`URLExpiredError`
404                                    :class:`NotFoundError`
429                                    :class:`RateLimitError` (retryable)
408 / 5xx                              :class:`InternalServerError` (retryable)
other status                           :class:`APIStatusError`
HTML / bad JSON where JSON is due      :class:`MalformedResponseError` (retryable)
connect / read / protocol failure      :class:`APIConnectionError` (retryable)
time-out, stalled stream               :class:`APITimeoutError` (retryable)
=====================================  =========================================

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

import copy
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import httpx2

from .. import __version__
from ..domain import TaskStatus
from ..errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    InternalServerError,
    InvalidArgumentsError,
    MalformedResponseError,
    MalformedSubmitResponseError,
    NotFoundError,
    RateLimitError,
    SubmitOutcomeUnknownError,
    URLExpiredError,
)
from ..redact import clip, redact_url, scrub
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
    "redact_url",
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
#: Longest upstream message quoted in an error.
MAX_UPSTREAM_MESSAGE: Final = 300
MAX_TASK_ID_LENGTH: Final = 256

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


@dataclass(frozen=True)
class TaskError:
    """Why a task failed, as the API put it."""

    code: str | int | None
    message: str


@dataclass(frozen=True)
class TaskSnapshot:
    """One answer about a task.

    ``status`` is the contract's status (``UNKNOWN`` for anything the API says
    that the contract does not name; the API's word is in ``raw_status``).
    ``url`` is the signed video link when the API gave one (kept out of the
    repr, like ``raw``, because it carries a signature).
    """

    task_id: str
    status: TaskStatus
    raw_status: str | None
    url: str | None = field(repr=False)
    error: TaskError | None
    raw: dict[str, Any] = field(repr=False)
    request_id: str | None = None


# --- redaction ------------------------------------------------------------------


_HTML_START = re.compile(rb"^\s*<(?:!doctype|html|head|body|\?xml|[a-z]+[\s>])", re.IGNORECASE)


class _RedactURLsInLog(logging.Filter):
    """Replaces httpx2.URL arguments of httpx2's log records by :func:`redact_url`."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, httpx2.URL) for a in args):
            record.args = tuple(redact_url(a) if isinstance(a, httpx2.URL) else a for a in args)
        return True


_LOG_FILTER: Final = _RedactURLsInLog()


def _install_log_redaction() -> None:
    httpx_logger = logging.getLogger("httpx2")
    if _LOG_FILTER not in httpx_logger.filters:
        httpx_logger.addFilter(_LOG_FILTER)


# --- parsing helpers --------------------------------------------------------------


def _request_id(headers: httpx2.Headers) -> str | None:
    for name in ("x-request-id", "request-id"):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()[:200]
    return None


def _shorten(text: str, limit: int = MAX_UPSTREAM_MESSAGE) -> str:
    return clip(" ".join(text.split()), limit)


def _message_of(value: Any, depth: int = 0) -> str | None:
    """The human message inside an upstream error value (str, dict or list of those)."""
    if depth > 3 or value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        for key in ("message", "msg", "detail", "error"):
            found = _message_of(value.get(key), depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list):
        parts = [m for m in (_message_of(v, depth + 1) for v in value[:5]) if m]
        return "; ".join(parts) or None
    return None


def _looks_like_html(body: bytes, content_type: str) -> bool:
    return "html" in content_type.lower() or bool(_HTML_START.match(body[:200]))


def _upstream_message(body: bytes, content_type: str) -> str | None:
    """The API's own words from an error body, or ``None`` if it gave none usable."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        if _looks_like_html(body, content_type):
            return None
        text = body.decode("utf-8", errors="replace").strip()
        return _shorten(text) if text else None
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "msg"):
            found = _message_of(data.get(key))
            if found:
                return _shorten(found)
        return None
    found = _message_of(data)
    return _shorten(found) if found else None


def _code_of(value: Any) -> str | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return value.strip() or None
    return str(value)


def _task_error(raw: Mapping[str, Any]) -> TaskError | None:
    """``error: {code, message}``, ``error: "text"`` or ``metadata.output.{code,message}``
    (whose message also serves an ``error`` that has a code only)."""
    err = raw.get("error")
    if isinstance(err, str) and err.strip():
        return TaskError(code=None, message=err.strip())
    metadata = raw.get("metadata")
    output = metadata.get("output") if isinstance(metadata, dict) else None
    output = output if isinstance(output, dict) else {}
    fallback = _message_of(output.get("message"))
    if isinstance(err, dict):
        message = _message_of(err.get("message")) or _message_of(err.get("msg"))
        code = _code_of(err.get("code"))
        if message or code is not None:
            message = message or fallback or "The API gave an error code without a message."
            return TaskError(code=code, message=message)
    return TaskError(code=_code_of(output.get("code")), message=fallback) if fallback else None


def _task_id_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _check_task_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not task_id.strip():
        raise InvalidArgumentsError.about(
            "task_id", "must be a non-empty task id, as returned by generate_video"
        )
    tid = task_id.strip()
    if (
        tid in {".", ".."}
        or len(tid) > MAX_TASK_ID_LENGTH
        or any(ord(c) < 32 or ord(c) == 127 for c in tid)
    ):
        raise InvalidArgumentsError.about(
            "task_id",
            f"is not a valid task id (at most {MAX_TASK_ID_LENGTH} printable "
            "characters, as returned by generate_video)",
        )
    return tid


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


# --- the retry loop plumbing ---------------------------------------------------------


class _RetryError(Exception):
    """An attempt failed with a retryable ``error``; ``retry_after`` is the server's ask."""

    def __init__(self, error: APIError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _as_clause(message: str) -> str:
    """``"The X did Y."`` -> ``"the X did Y"``, to quote a message inside a sentence."""
    text = message.strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[:4] == "The " else text


def _chained(error: APIError, cause: BaseException) -> APIError:
    error.__cause__ = cause
    return error


def _append(error: APIError, text: str) -> None:
    error.message = f"{error.message}{text}"
    error.args = (error.message,)


OpKind = Literal["submit", "query", "sora_download", "url_download"]


@dataclass(frozen=True)
class _Op:
    """What a request is for, in words for error messages."""

    kind: OpKind
    doing: str  # "querying task 'x'"
    where: str  # "the Gravitex API (https://api.gravitex.ai)"
    not_found: str  # message for a 404

    @property
    def is_api(self) -> bool:
        return self.kind != "url_download"

    @property
    def service(self) -> str:
        return "The Gravitex API" if self.is_api else f"The video host ({self.where})"


# --- reading streamed bodies -----------------------------------------------------


def read_error(response: httpx2.Response, exc: httpx2.RequestError) -> APIError:
    """The error for an httpx2 failure while a streamed body is read (a stall past the
    client's ``read`` time-out is an :class:`APITimeoutError`)."""
    where = redact_url(response.request.url)
    status, rid = response.status_code, _request_id(response.headers)
    if isinstance(exc, httpx2.TimeoutException):
        return APITimeoutError(
            f"Timed out reading the download from {where}.", status_code=status, request_id=rid
        )
    if isinstance(exc, httpx2.DecodingError):
        return MalformedResponseError(
            f"The download from {where} could not be decoded (bad encoding).",
            status_code=status,
            request_id=rid,
        )
    return APIConnectionError(
        f"The connection to {where} broke during the download ({type(exc).__name__}).",
        status_code=status,
        request_id=rid,
    )


# --- the client -------------------------------------------------------------------


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
        _install_log_redaction()
        self._transport = transport
        self._user_agent = user_agent
        self._event_hooks = event_hooks  # metrics and spans (upstream/observe.py)
        self._http_client: httpx2.AsyncClient | None = None
        self._closed = False
        #: the client a :meth:`with_key` view shares its connections with
        self._parent: GravitexClient | None = None

    def with_key(self, api_key: str, *, what: str = "The Gravitex key") -> GravitexClient:
        """This client paying with ``api_key`` instead (a user's own key): the same
        connections, retries and hooks; the key lives only in the returned view, for
        as long as the work holding it runs, and is scrubbed from its errors too."""
        view = copy.copy(self)
        view._api_key = _checked_key(api_key, what)
        view._parent = self._parent or self
        view._http_client = None
        return view

    @property
    def _http(self) -> httpx2.AsyncClient:
        if self._parent is not None:  # a with_key view: the parent's connections
            return self._parent._http
        # Made at the first request, not at start-up: the network transport imports
        # httpcore and loads the CA bundle (~40 ms), which tools/list never needs.
        if self._http_client is None:
            if self._closed:
                raise RuntimeError("the Gravitex client is closed")
            timeouts = self._timeouts
            self._http_client = httpx2.AsyncClient(
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
        return self._http_client

    def __repr__(self) -> str:
        return f"<GravitexClient base_url={self._base_url!r}>"

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def timeouts(self) -> Timeouts:
        return self._timeouts

    async def aclose(self) -> None:
        if self._parent is not None:
            return  # a with_key view: its parent owns the connections
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
        op = _Op(
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
        tid = _check_task_id(task_id)
        op = _Op(
            kind="query",
            doing=f"querying task {tid!r}",
            where=self._api_where,
            not_found=(
                f"The Gravitex API knows no task {tid!r} (HTTP 404): check the id "
                "(list_video_tasks shows the tasks this server submitted)."
            ),
        )
        path = QUERY_PATH.format(task_id=quote(tid, safe=""))
        return await self._retrying(op, lambda: self._query_attempt(op, path, tid))

    def stream_sora_download(self, task_id: str) -> AbstractAsyncContextManager[httpx2.Response]:
        """``GET /v1/video/generations/download?id=...`` as an open, unread streamed response.

        The status is checked (and retried per the policy) before the response is
        yielded; the caller reads the JSON body incrementally (``aiter_bytes``).
        """
        tid = _check_task_id(task_id)
        op = _Op(
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
        op = _Op(
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
        return {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}

    async def _retrying(self, op: _Op, attempt_fn: Callable[[], Awaitable[_T]]) -> _T:
        policy = self._retry
        attempt = 0
        while True:
            attempt += 1
            try:
                return await attempt_fn()
            except _RetryError as retry:
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
                _append(error, note)
                raise error from error.__cause__

    async def _submit_attempt(self, op: _Op, payload: dict[str, Any]) -> TaskSnapshot:
        request = self._http.build_request(
            "POST", SUBMIT_PATH, json=payload, headers=self._api_headers()
        )
        try:
            response = await self._http.send(request, stream=True)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            # The connection was never made: the body did not leave, so no task exists.
            error = self._transport_error(op, exc)
            _append(error, " The request was not sent, so no task was created.")
            raise _RetryError(_chained(error, exc)) from exc
        except httpx2.RequestError as exc:
            raise self._outcome_unknown(
                self._after_send_reason(exc), status_code=None, request_id=None
            ) from exc

        try:
            status = response.status_code
            rid = _request_id(response.headers)
            if status == 429:
                body = await _read_error_body(response)
                retry_after = parse_retry_after(response.headers, self._clock())
                raise _RetryError(self._status_error(op, response, body), retry_after)
            if status == 408 or status >= 500:
                body = await _read_error_body(response)
                cause = self._status_error(op, response, body)
                said = f" ({cause.upstream_message})" if cause.upstream_message else ""
                raise self._outcome_unknown(
                    f"the API answered HTTP {status}{said} after receiving the request",
                    status_code=status,
                    request_id=rid,
                ) from cause
            if not 200 <= status < 300:
                body = await _read_error_body(response)
                raise self._status_error(op, response, body)
            try:
                raw = await self._read_json(op, response)
                return self._parse_task(
                    op, raw, fallback_task_id=None, request_id=rid, submitted=True
                )
            except MalformedResponseError as exc:
                raise MalformedSubmitResponseError(
                    self._outcome_unknown_message(
                        f"the API answered HTTP {status} without the documented JSON "
                        f"answer ({_as_clause(exc.message)})",
                        rid,
                    ),
                    status_code=status,
                    request_id=rid,
                ) from exc
            except httpx2.RequestError as exc:
                raise self._outcome_unknown(
                    f"the API answered HTTP {status} but the connection broke while its "
                    f"body was read ({type(exc).__name__})",
                    status_code=status,
                    request_id=rid,
                ) from exc
        finally:
            await _aclose(response)

    async def _query_attempt(self, op: _Op, path: str, task_id: str) -> TaskSnapshot:
        request = self._http.build_request("GET", path, headers=self._api_headers())
        response = await self._send_retryable(op, request, follow_redirects=False)
        try:
            await self._check_status(op, response)
            rid = _request_id(response.headers)
            try:
                raw = await self._read_json(op, response)
                return self._parse_task(
                    op, raw, fallback_task_id=task_id, request_id=rid, submitted=False
                )
            except MalformedResponseError as exc:
                raise _RetryError(exc) from exc
            except httpx2.RequestError as exc:
                raise _RetryError(_chained(self._transport_error(op, exc), exc)) from exc
        finally:
            await _aclose(response)

    @asynccontextmanager
    async def _streaming(
        self, op: _Op, build: Callable[[], httpx2.Request], *, follow_redirects: bool
    ) -> AsyncIterator[httpx2.Response]:
        response = await self._retrying(
            op, lambda: self._open_attempt(op, build(), follow_redirects=follow_redirects)
        )
        try:
            yield response
        finally:
            await _aclose(response)

    async def _open_attempt(
        self, op: _Op, request: httpx2.Request, *, follow_redirects: bool
    ) -> httpx2.Response:
        response = await self._send_retryable(op, request, follow_redirects=follow_redirects)
        try:
            await self._check_status(op, response)
            content_type = response.headers.get("content-type", "")
            if "html" in content_type.lower():
                error = MalformedResponseError(
                    f"{op.service} sent an HTML page instead of the video while {op.doing}.",
                    status_code=response.status_code,
                    request_id=_request_id(response.headers),
                )
                raise _RetryError(error)
        except BaseException:
            await _aclose(response)
            raise
        return response

    async def _send_retryable(
        self, op: _Op, request: httpx2.Request, *, follow_redirects: bool
    ) -> httpx2.Response:
        """Send ``request`` for an idempotent GET; every transport failure is retryable."""
        try:
            return await self._http.send(request, stream=True, follow_redirects=follow_redirects)
        except httpx2.RequestError as exc:
            raise _RetryError(_chained(self._transport_error(op, exc), exc)) from exc

    async def _check_status(self, op: _Op, response: httpx2.Response) -> None:
        """Raise the mapped error (wrapped in :class:`_RetryError` if retryable) for a non-2xx."""
        if 200 <= response.status_code < 300:
            return
        body = await _read_error_body(response)
        error = self._status_error(op, response, body)
        if error.retryable:
            raise _RetryError(error, parse_retry_after(response.headers, self._clock()))
        raise error

    async def _read_json(self, op: _Op, response: httpx2.Response) -> Any:
        """The JSON body, or :class:`MalformedResponseError`; transport errors pass through."""

        def malformed(what: str) -> MalformedResponseError:
            return MalformedResponseError(
                f"{op.service} sent {what} while {op.doing} (HTTP {response.status_code}).",
                status_code=response.status_code,
                request_id=_request_id(response.headers),
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
            elif _looks_like_html(body, content_type):
                what = "an HTML page"
            else:
                what = f"a body that is not JSON ({content_type or 'no content type'})"
            raise malformed(f"{what} instead of JSON") from exc

    def _parse_task(
        self,
        op: _Op,
        raw: Any,
        *,
        fallback_task_id: str | None,
        request_id: str | None,
        submitted: bool,
    ) -> TaskSnapshot:
        if not isinstance(raw, dict):
            raise MalformedResponseError(
                f"{op.service} sent JSON that is not an object while {op.doing}.",
                status_code=200,
                request_id=request_id,
            )
        task_id = _task_id_of(raw.get("task_id"))
        if task_id is None:
            task_id = _task_id_of(raw.get("id"))
        status_value = raw.get("status")
        raw_status = status_value.strip() if isinstance(status_value, str) else None
        if submitted:
            if task_id is None:
                upstream = _message_of(raw.get("error")) or _message_of(raw.get("message"))
                said = f" (it said: {_shorten(self._scrub(upstream))})" if upstream else ""
                raise MalformedResponseError(
                    f"The answer has no task_id{said}.", status_code=200, request_id=request_id
                )
            status = TaskStatus.SUBMITTED if raw_status is None else TaskStatus.parse(raw_status)
        else:
            if task_id is None and raw_status is None:
                upstream = _message_of(raw.get("error")) or _message_of(raw.get("message"))
                said = f" It said: {_shorten(self._scrub(upstream))}" if upstream else ""
                raise MalformedResponseError(
                    f"{op.service} answered without a task_id or status while {op.doing}.{said}",
                    status_code=200,
                    request_id=request_id,
                )
            # The caller's id names the task (the journal is keyed by it); upstream's is in raw.
            task_id = fallback_task_id or task_id
            status = TaskStatus.parse(raw_status)
        assert task_id is not None
        url_value = raw.get("url")
        url = url_value.strip() if isinstance(url_value, str) and url_value.strip() else None
        error = _task_error(raw)
        if error is None and status is TaskStatus.FAILED:
            error = TaskError(code=None, message="The task failed; the API gave no reason.")
        return TaskSnapshot(
            task_id=task_id,
            status=status,
            raw_status=raw_status,
            url=url,
            error=error,
            raw=raw,
            request_id=request_id,
        )

    # --- error construction ----------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return scrub(text, self._api_key)

    def _status_error(self, op: _Op, response: httpx2.Response, body: bytes) -> APIStatusError:
        status = response.status_code
        rid = _request_id(response.headers)
        raw_message = _upstream_message(body, response.headers.get("content-type", ""))
        upstream = self._scrub(raw_message) if raw_message else None
        said = f" It said: {upstream}" if upstream else ""
        suffix = f" (request id {rid})" if rid else ""
        kwargs: dict[str, Any] = {
            "status_code": status,
            "request_id": rid,
            "upstream_message": upstream,
        }
        if not op.is_api and status in (401, 403, 410):
            return URLExpiredError(
                f"The signed video URL {op.where} was refused (HTTP {status}): it has most "
                f"likely expired (links last about 24 h). Query the task again for a fresh "
                f"URL.{suffix}",
                **kwargs,
            )
        if status in (400, 422):
            return BadRequestError(
                f"{op.service} rejected the request while {op.doing} (HTTP {status}).{said}"
                f"{suffix}",
                **kwargs,
            )
        if op.is_api and status in (401, 403):
            return AuthenticationError(
                f"The Gravitex API refused the API key while {op.doing} (HTTP {status}): "
                f"check that GRAVITEX_API_KEY holds a valid Gravitex key (sk-...)."
                f"{said}{suffix}",
                **kwargs,
            )
        if status == 404:
            return NotFoundError(f"{op.not_found}{said}{suffix}", **kwargs)
        if status == 429:
            return RateLimitError(
                f"{op.service} is rate limiting requests (HTTP 429) while {op.doing}."
                f"{said}{suffix}",
                **kwargs,
            )
        if status == 408 or 500 <= status < 600:
            return InternalServerError(
                f"{op.service} failed while {op.doing} (HTTP {status}).{said}{suffix}",
                **kwargs,
            )
        hint = " Check GRAVITEX_BASE_URL." if op.is_api and 300 <= status < 400 else ""
        return APIStatusError(
            f"{op.service} answered HTTP {status} while {op.doing}.{hint}{said}{suffix}",
            **kwargs,
        )

    def _transport_error(self, op: _Op, exc: httpx2.RequestError) -> APIError:
        detail = _shorten(self._scrub(str(exc)), 160)
        detail_part = f": {detail}" if detail else ""
        if isinstance(exc, httpx2.TimeoutException):
            phase = {
                httpx2.ConnectTimeout: f"connecting to {op.where}",
                httpx2.ReadTimeout: f"waiting for {op.where} to answer",
                httpx2.WriteTimeout: f"sending the request to {op.where}",
                httpx2.PoolTimeout: "waiting for a free connection",
            }.get(type(exc), f"talking to {op.where}")
            return APITimeoutError(f"Timed out {phase} while {op.doing}.")
        if isinstance(exc, httpx2.DecodingError):
            return MalformedResponseError(
                f"{op.service} sent a body that could not be decoded while {op.doing}."
            )
        if isinstance(exc, httpx2.ConnectError):
            return APIConnectionError(
                f"Could not connect to {op.where} while {op.doing}{detail_part}."
            )
        return APIConnectionError(
            f"The connection to {op.where} failed while {op.doing} "
            f"({type(exc).__name__}{detail_part})."
        )

    def _after_send_reason(self, exc: httpx2.RequestError) -> str:
        if isinstance(exc, httpx2.ReadTimeout):
            return (
                f"no answer arrived within the {self._timeouts.read:g} s read time-out "
                "after the request was sent"
            )
        if isinstance(exc, httpx2.WriteTimeout):
            return "sending the request timed out part-way"
        if isinstance(exc, httpx2.TimeoutException):
            return "the request timed out after it was sent"
        return f"the connection broke after the request was sent ({type(exc).__name__})"

    def _outcome_unknown_message(self, reason: str, request_id: str | None) -> str:
        suffix = f" (request id {request_id})" if request_id else ""
        return (
            f"The submit's outcome is unknown: {reason}. A task (and a charge) may "
            "exist, so the request was not sent again. Look at list_video_tasks "
            "(and the Gravitex dashboard) before trying again, or a second paid task "
            f"may be created.{suffix}"
        )

    def _outcome_unknown(
        self, reason: str, *, status_code: int | None, request_id: str | None
    ) -> SubmitOutcomeUnknownError:
        return SubmitOutcomeUnknownError(
            self._outcome_unknown_message(reason, request_id),
            status_code=status_code,
            request_id=request_id,
        )
