"""The pydantic-error text every layer shows: a refused value as the caller wrote it.

The one formatter of pydantic's errors (``describe``: each argument named, what was
wrong, what was given, clipped), and its pieces (``shown_value``, ``json_kind``,
``NEEDED``) that request validation and batches use for their own messages. Pure
text: no MCP; the server's :mod:`~gravitex_mcp.server.schema_errors` wraps tools in it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

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
            problem += f" (given: {shown_value(given)}, {json_kind(given)})"
        problems.append(problem)
    if len(problems) == 1:
        body = f": {problems[0]}"
    else:
        body = f" ({len(problems)} problems):\n" + "\n".join(f"- {p}" for p in problems)
    return f"Invalid arguments for {tool}{body}\nNothing was done."
