"""Upstream failures as :mod:`gravitex_mcp.errors`: what each answer or transport
failure becomes, in words that name the operation.

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx2

from ..domain import URL_LIFETIME_TEXT
from ..errors import (
    FIND_LOST_SUBMIT,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    SubmitOutcomeUnknownError,
    URLExpiredError,
)
from ..redact import redact_url
from .answers import request_id, shorten, upstream_message


class RetryError(Exception):
    """An attempt failed with a retryable ``error``; ``retry_after`` is the server's ask."""

    def __init__(self, error: APIError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def as_clause(message: str) -> str:
    """``"The X did Y."`` -> ``"the X did Y"``, to quote a message inside a sentence."""
    text = message.strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[:4] == "The " else text


def chained(error: APIError, cause: BaseException) -> APIError:
    error.__cause__ = cause
    return error


def append_to(error: APIError, text: str) -> None:
    error.message = f"{error.message}{text}"
    error.args = (error.message,)


OpKind = Literal["submit", "query", "sora_download", "url_download"]


@dataclass(frozen=True)
class Op:
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


def read_error(response: httpx2.Response, exc: httpx2.RequestError) -> APIError:
    """The error for an httpx2 failure while a streamed body is read (a stall past the
    client's ``read`` time-out is an :class:`APITimeoutError`)."""
    where = redact_url(str(response.request.url))
    status, rid = response.status_code, request_id(response.headers)
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


def status_error(
    op: Op, response: httpx2.Response, body: bytes, scrub: Callable[[str], str]
) -> APIStatusError:
    """The error for a non-2xx answer, quoting the API's own words (scrubbed)."""
    status = response.status_code
    rid = request_id(response.headers)
    raw_message = upstream_message(body, response.headers.get("content-type", ""))
    upstream = scrub(raw_message) if raw_message else None
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
            f"likely expired (links last {URL_LIFETIME_TEXT}). Query the task again for a fresh "
            f"URL.{suffix}",
            **kwargs,
        )
    if status in (400, 422):
        return BadRequestError(
            f"{op.service} rejected the request while {op.doing} (HTTP {status}).{said}{suffix}",
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
            f"{op.service} is rate limiting requests (HTTP 429) while {op.doing}.{said}{suffix}",
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


def transport_error(op: Op, exc: httpx2.RequestError, scrub: Callable[[str], str]) -> APIError:
    """The error for a request that failed in transport (time-out, connection, decoding)."""
    detail = shorten(scrub(str(exc)), 160)
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
        return APIConnectionError(f"Could not connect to {op.where} while {op.doing}{detail_part}.")
    return APIConnectionError(
        f"The connection to {op.where} failed while {op.doing} ({type(exc).__name__}{detail_part})."
    )


def after_send_reason(exc: httpx2.RequestError, read_timeout: float) -> str:
    """Why a submit's outcome is unknown after ``exc`` (the body may have landed)."""
    if isinstance(exc, httpx2.ReadTimeout):
        return (
            f"no answer arrived within the {read_timeout:g} s read time-out "
            "after the request was sent"
        )
    if isinstance(exc, httpx2.WriteTimeout):
        return "sending the request timed out part-way"
    if isinstance(exc, httpx2.TimeoutException):
        return "the request timed out after it was sent"
    return f"the connection broke after the request was sent ({type(exc).__name__})"


def outcome_unknown_message(reason: str, request_id: str | None) -> str:
    suffix = f" (request id {request_id})" if request_id else ""
    return (
        f"The submit's outcome is unknown: {reason}. A task (and a charge) may "
        f"exist, so the request was not sent again. {FIND_LOST_SUBMIT} or on the Gravitex "
        f"dashboard before trying again, or a second paid task may be created.{suffix}"
    )


def outcome_unknown(
    reason: str, *, status_code: int | None, request_id: str | None
) -> SubmitOutcomeUnknownError:
    return SubmitOutcomeUnknownError(
        outcome_unknown_message(reason, request_id),
        status_code=status_code,
        request_id=request_id,
    )
