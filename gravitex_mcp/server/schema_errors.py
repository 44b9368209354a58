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

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from .failures import failure_message, log_failure

#: The most characters of a refused value echoed back.
MAX_ECHO: Final = 60


#: What a pydantic type error's code says the argument needs, in a JSON caller's words.
NEEDED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "an integer",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "an object",
        "model_type": "an object",
    }
)


def shown_value(value: Any, limit: int = MAX_ECHO) -> str:
    """``value`` as the caller wrote it in JSON, clipped: ``"4"`` is a string, ``4`` a
    number, ``true`` a boolean (Python's repr would say ``'4'`` and ``True``)."""
    if isinstance(value, str):
        value = value if len(value) <= limit else value[: limit - 1] + "…"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit + 2 else text[: limit - 1] + "…"


def json_kind(value: Any) -> str:
    """What JSON calls ``value``'s type, with its article: ``a string``, ``a boolean``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _echo(value: Any) -> str:
    return f"{shown_value(value)}, {json_kind(value)}"


def _where(error: ErrorDetails) -> str:
    """``task_ids[2]`` or ``jobs[0].model``: the argument, then the item within it.

    pydantic adds a tag per member of a union (``constrained-float``,
    ``literal['first','middle','last']``); they are left out, so the members'
    complaints about one value come together under its name.
    """
    parts = [
        f"[{part}]" if isinstance(part, int) else f".{part}"
        for part in error["loc"]
        if isinstance(part, int) or part.isidentifier()
    ]
    where = "".join(parts).removeprefix(".") or "arguments"
    return where if len(where) <= MAX_ECHO else where[: MAX_ECHO - 1] + "…"


def _what(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "extra_forbidden":
        return "is not an argument of this tool"
    return str(error["msg"])


def describe(tool: str, exc: ValidationError) -> str:
    """The message for arguments of ``tool`` refused by its input schema."""
    found: dict[str, tuple[list[str], Any]] = {}
    for error in exc.errors():
        what, given = found.setdefault(_where(error), ([], error.get("input")))
        if _what(error) not in what:
            what.append(_what(error))
    problems = []
    for where, (what, given) in found.items():
        problem = f"{where}: {' or '.join(what)}"
        if what != ["is required"]:
            problem += f" (given: {_echo(given)})"
        problems.append(problem)
    if len(problems) == 1:
        body = f": {problems[0]}"
    else:
        body = f" ({len(problems)} problems):\n" + "\n".join(f"- {p}" for p in problems)
    return f"Invalid arguments for {tool}{body}\nNothing was done."


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
            log_failure(self.name, failure)
            if isinstance(failure, ToolError) and not isinstance(failure, UnexpectedToolError):
                text = str(failure)  # raised on purpose: its text is for the client
            else:
                text = failure_message(failure)
            return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
