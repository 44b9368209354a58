"""The simulator's HTTP answers: JSON and XML errors, nginx pages, and streamed bodies
that a ``truncated`` or ``corrupted`` fault cuts short or damages."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Final

import anyio.lowlevel
import httpx2
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from .faults import Fault, FaultKind
from .gateway_fields import GatewayError

#: A server that can end a connection in the middle of a response body puts this
#: key in ``scope["extensions"]``; without it a cut body ends by raising
#: :class:`httpx2.RemoteProtocolError` (what an in-process client would have seen).
ABORT_EXTENSION = "gravitex.simulator.abort"

JSON_TYPE = "application/json"
XML_TYPE = "application/xml"
BAD_BASE64 = b"*#!~"


def request_id() -> str:
    return f"sim-{secrets.token_hex(8)}"


def dumps(payload: object) -> bytes:
    return json.dumps(payload).encode()


def json_response(
    payload: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        dumps(payload),
        status_code=status,
        media_type=JSON_TYPE,
        headers={"X-Request-Id": request_id(), **(headers or {})},
    )


def gateway_error(error: GatewayError, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(error.to_json(), error.status, headers)


def xml_error(status: int, code: str, message: str) -> Response:
    request_id = secrets.token_hex(12).upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error>\n"
        f"  <Code>{code}</Code>\n"
        f"  <Message>{message}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        "  <HostId>files.simulator.gravitex.invalid</HostId>\n"
        "</Error>\n"
    )
    return Response(
        body, status_code=status, media_type=XML_TYPE, headers={"X-Request-Id": request_id}
    )


def html_page(status: int) -> Response:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    title = f"{status} {phrase}" if status >= 400 else "Gravitex - Please wait"
    body = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Response(body, status_code=status, media_type="text/html")


def has_abort_extension(scope: Scope) -> bool:
    return ABORT_EXTENSION in (scope.get("extensions") or {})


async def paced(chunks: Iterable[bytes], cut_at: int | None) -> AsyncIterator[bytes]:
    """Yield ``chunks`` (stopping after ``cut_at`` bytes), letting other tasks run."""
    sent = 0
    for chunk in chunks:
        if cut_at is not None and sent + len(chunk) >= cut_at:
            if cut_at > sent:
                yield chunk[: cut_at - sent]
            return
        yield chunk
        sent += len(chunk)
        await anyio.lowlevel.checkpoint()


class StreamedBody(StreamingResponse):
    """A streamed body with a declared ``Content-Length`` that may be cut short.

    With ``cut_at`` set, only that many bytes are sent; then a real server
    (one that sets :data:`ABORT_EXTENSION`) closes the connection mid-body, and
    an in-process transport gets :class:`httpx2.RemoteProtocolError` raised.
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        *,
        length: int,
        media_type: str,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        cut_at: int | None = None,
    ) -> None:
        if cut_at is not None:
            cut_at = max(0, min(cut_at, length - 1))
        super().__init__(
            paced(chunks, cut_at),
            status_code=status_code,
            media_type=media_type,
            headers={**(headers or {}), "Content-Length": str(length)},
        )
        self.length = length
        self.cut_at = cut_at
        self._can_abort = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._can_abort = has_abort_extension(scope)
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        sent = 0
        async for chunk in self.body_iterator:
            data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
            await send({"type": "http.response.body", "body": data, "more_body": True})
            sent += len(data)
        if self.cut_at is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if self._can_abort:
            return  # the server closes the connection: the client sees a short body
        raise httpx2.RemoteProtocolError(
            "peer closed connection without sending complete message body: "
            f"received {sent} bytes, expected {self.length}"
        )


def bytes_body(
    data: bytes, *, media_type: str, status_code: int = 200, cut_at: int | None = None
) -> StreamedBody:
    return StreamedBody(
        [data],
        length=len(data),
        media_type=media_type,
        status_code=status_code,
        headers={"X-Request-Id": request_id()},
        cut_at=cut_at,
    )


def cut_at_of(fault: Fault | None, default: int) -> int | None:
    """Where a ``truncated`` fault cuts a body (its ``at``, else ``default``); else None."""
    if fault is None or fault.kind is not FaultKind.TRUNCATED:
        return None
    at = fault.params["at"]
    return default if at is None else int(at)


def corrupted(chunks: Iterator[bytes], offset: int | None) -> Iterator[bytes]:
    """Pass base64 chunks through, replacing the 4-character group at ``offset``."""
    if offset is None:
        yield from chunks
        return
    position = 0
    for chunk in chunks:
        end = position + len(chunk)
        if position <= offset < end:
            i = offset - position
            chunk = chunk[:i] + BAD_BASE64 + chunk[i + len(BAD_BASE64) :]
        yield chunk
        position = end


#: Arrival faults that refuse the request: (message, code, type) of the API's JSON
#: error (no code: the status's phrase), and (code, message) of the object store's XML.
REFUSALS: Final = {
    FaultKind.RATE_LIMIT: (
        "Rate limit reached for requests. Please try again later.",
        "rate_limit_exceeded",
        "rate_limit_error",
    ),
    FaultKind.SERVER_ERROR: (
        "The server had an error while processing your request.",
        None,
        "server_error",
    ),
    FaultKind.REQUEST_TIMEOUT: ("Request timed out.", "request_timeout", "server_error"),
}
FILE_REFUSALS: Final = {
    FaultKind.RATE_LIMIT: ("SlowDown", "Please reduce your request rate."),
    FaultKind.SERVER_ERROR: ("InternalError", "We encountered an internal error."),
    FaultKind.REQUEST_TIMEOUT: ("RequestTimeout", "Your socket connection timed out."),
}
REFUSAL_STATUS: Final = {FaultKind.RATE_LIMIT: 429, FaultKind.REQUEST_TIMEOUT: 408}
