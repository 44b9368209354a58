"""Serving over stdio, answering lines the SDK cannot parse.

The SDK's stdio transport turns a line that is not valid JSON-RPC (a lone
surrogate such as ``"\\ud800"`` in a string, say) into an exception item on its
read stream, and the server drops it: the client waits for an answer that never
comes. :class:`ParseErrorAnswering` sits between the transport and the server
(no patch to the SDK), answers each such line with a JSON-RPC parse error
(``-32700``) carrying the request's id when one can still be read from the line,
and logs it to stderr.

Whatever the line holds (nesting thousands deep, megabytes, bytes that are not
UTF-8), reading its id must not fail: it is read with pydantic's JSON parser, which
stops at a fixed depth, never with the standard library's recursive one (whose
``RecursionError`` on a deeply nested line once ended the server).
"""

from __future__ import annotations

import logging
import re
from types import TracebackType
from typing import Any, Self

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared._stream_protocols import ReadStream, WriteStream
from mcp.shared.message import SessionMessage
from mcp.types import PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError
from pydantic_core import from_json

logger = logging.getLogger(__name__)

#: How much of a bad line is quoted in the log.
_QUOTE = 120


#: A ``\uXXXX`` escape of a UTF-16 surrogate. pydantic's parser refuses a lone one,
#: so each is read as U+FFFD: the line stays JSON and its ``id`` can be found.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def request_id_of(exc: Exception) -> str | int | None:
    """The ``id`` of a refused message, if it can be read without trusting the message."""
    if not isinstance(exc, ValidationError):
        return None
    for error in exc.errors():
        raw = error.get("input")
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if not isinstance(raw, str):
            continue
        try:
            # Bounded depth (a ValueError past it), so any line is safe to read here.
            message = from_json(_SURROGATE_ESCAPE.sub(r"\\ufffd", raw))
        except ValueError:
            continue
        if isinstance(message, dict):
            value = message.get("id")
            if isinstance(value, str | int) and not isinstance(value, bool):
                return value
    return None


def refusal_reason(exc: Exception) -> str:
    """What is wrong with a refused message, to follow "the line is" or "the body is"."""
    if isinstance(exc, ValidationError):
        kinds = {str(e.get("type")) for e in exc.errors()}
        if "string_unicode" in kinds or any("surrogate" in str(e.get("msg")) for e in exc.errors()):
            return "not valid Unicode (a lone surrogate?)"
        if "json_invalid" in kinds:
            return "not valid JSON (nested too deeply, or a lone surrogate escape such as \\ud800?)"
        return "not a JSON-RPC message"
    return type(exc).__name__


class ParseErrorAnswering:
    """A read stream that answers the transport's parse failures instead of passing them on."""

    def __init__(
        self,
        inner: ReadStream[SessionMessage | Exception],
        write: WriteStream[SessionMessage],
    ) -> None:
        self._inner = inner
        self._write = write

    @property
    def last_context(self) -> Any:
        """The sender's context of the last item (the SDK reads it if present)."""
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            item = await self._inner.receive()
            if not isinstance(item, Exception):
                return item
            await self._answer(item)

    async def _answer(self, exc: Exception) -> None:
        try:
            request_id = request_id_of(exc)
            reason = f"the line is {refusal_reason(exc)}"
            summary = str(exc).splitlines()[0][:_QUOTE] if str(exc) else type(exc).__name__
        except Exception as failure:  # noqa: BLE001 - a refused line must never end the server
            request_id, reason, summary = None, "the line could not be read", repr(failure)
        logger.warning(
            "stdio: refused a line from the client (%s; request id %r): %s",
            reason,
            request_id,
            summary,
        )
        error = ErrorData(
            code=PARSE_ERROR,
            message=f"Parse error: {reason}. Send each message as one line of UTF-8 JSON.",
        )
        await self._write.send(
            SessionMessage(JSONRPCError(jsonrpc="2.0", id=request_id, error=error))
        )

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError) as exc:
            # Like anyio's own streams: the end of the input ends the iteration.
            raise StopAsyncIteration from exc

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self.aclose()
        return None


async def serve_stdio(server: MCPServer[Any]) -> None:
    """``server.run("stdio")``, with unparseable lines answered (see the module notes)."""
    # MCPServer has no public way to take other streams; its run_stdio_async does
    # exactly this with the transport's streams.
    lowlevel = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        await lowlevel.run(
            ParseErrorAnswering(read_stream, write_stream),
            write_stream,
            lowlevel.create_initialization_options(),
        )
