"""Arguments that do not fit a tool's input schema, told as plainly as the rest.

The SDK reports them as pydantic's text: the name of an internal model
(``join_videosArguments``), a ``For further information visit https://errors.pydantic.dev``
line per problem. :class:`CheckedTool` keeps the SDK's handling (an ``isError``
result, the field names logged) and only rewrites the message: each argument
named, what was wrong, what was given (clipped). It is also the one place every
tool call is wrapped: whatever a tool raises becomes an ``isError`` result told
by :mod:`~gravitex_mcp.server.failures`.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import ConfigDict, ValidationError

from ..request.problems import describe
from .failures import failure_message, log_failure


def strict_arguments(tool: Tool) -> Tool:
    """``tool`` validating its arguments strictly: each the JSON type its schema names.

    The SDK's argument models are lax (``"30"`` taken as 30, ``"true"`` and ``1`` as
    true, ``true`` as the number 1.0) where generate_video's arguments are strict; one
    rule for every tool. The SDK still turns a JSON array or object sent as a string
    into the array or object first (some clients send them so).
    """
    lax = tool.fn_metadata.arg_model
    strict = type(lax.__name__, (lax,), {"model_config": ConfigDict(strict=True)})
    metadata = tool.fn_metadata.model_copy(update={"arg_model": strict})
    return tool.model_copy(update={"fn_metadata": metadata})


class CheckedTool(Tool):
    """A tool whose every failure reaches the client as a clear ``isError`` result.

    The one place tool calls are wrapped: schema refusals read like the server's own
    argument errors, and anything the body raises (the project's errors, a full or
    read-only disk, a damaged database, a crash) is told by
    :func:`~gravitex_mcp.server.failures.failure_message`, never as the SDK's bare
    "Error executing tool". A protocol error (``MCPError``) still passes through.
    """

    async def run(
        self, arguments: dict[str, Any], context: Any, convert_result: bool = False
    ) -> Any:
        try:
            return await super().run(arguments, context, convert_result)
        except ToolError as exc:
            cause = exc.__cause__
            if not isinstance(exc, UnexpectedToolError) and isinstance(cause, ValidationError):
                # From the ValidationError, as the SDK raised it: its log names the fields.
                raise ToolError(describe(self.name, cause)) from cause
            failure = cause if cause is not None else exc
            # A nested crash's wrapper carries the generic text: go to its origin.
            while isinstance(failure, ToolError) and failure.__cause__ is not None:
                failure = failure.__cause__
            deliberate = isinstance(failure, ToolError) and not isinstance(
                failure, UnexpectedToolError
            )
            log_failure(self.name, failure, deliberate=deliberate)
            # Raised on purpose: its text is for the client.
            text = str(failure) if deliberate else failure_message(failure)
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
