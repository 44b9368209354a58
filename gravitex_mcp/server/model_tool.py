"""Register an MCP tool whose arguments are one pydantic model.

``MCPServer`` derives a tool's input schema from the function signature,
validates calls against it with pydantic's own messages, and silently drops
argument names it does not know. ``generate_video`` has twenty arguments that
already live in :class:`~gravitex_mcp.request.arguments.GenerateVideoInput`, and its
errors must name the model and its valid values, with every problem of a call
reported together. So the tool publishes the model's JSON Schema as its input
schema, while the SDK passes every argument through untouched (unknown names
included) for the tool to check in one place.

Why not a plainer SDK route (mcp 2.3, read in ``mcp/server/mcpserver/tools`` and
``utilities/func_metadata.py``): ``Tool.from_function`` only builds
``parameters`` and the argument model from the signature. A signature of one
``GenerateVideoInput`` parameter nests every argument under its name (a
different contract); a signature spelled out from the model's fields makes the
SDK refuse bad values with pydantic's text before the tool runs and drop unknown
names (its argument models ignore extras). No hook takes a schema or an argument
model. What the SDK does document is that ``Tool`` and ``FuncMetadata`` are
pydantic models whose fields are read live at each call, so this module builds
the tool with ``from_function`` and swaps in those two fields with
``model_copy`` rather than patching anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, create_model

from .schema_errors import CheckedTool


class _PassThrough(ArgModelBase):
    """Accepts anything; hands every given argument, known or not, to the tool."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    def model_dump_one_level(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return {**given, **(self.__pydantic_extra__ or {})}


def passthrough_argument_model(model: type[BaseModel]) -> type[ArgModelBase]:
    """An SDK argument model with ``model``'s field names, every one optional and untyped."""
    fields: dict[str, Any] = {name: (Any, None) for name in model.model_fields}
    return create_model(f"{model.__name__}Arguments", __base__=_PassThrough, **fields)


def tool_from_model(
    fn: Callable[..., Any],
    model: type[BaseModel],
    *,
    title: str,
    description: str,
    annotations: ToolAnnotations,
) -> Tool:
    """A :class:`Tool` calling ``fn(ctx, **arguments)`` with ``model``'s schema as its input
    schema, named after ``fn``; it receives exactly the arguments the caller gave and must
    check them."""
    # A CheckedTool: its failures are told like every other tool's.
    tool = CheckedTool.from_function(
        fn, title=title, description=description, annotations=annotations
    )
    metadata = tool.fn_metadata.model_copy(update={"arg_model": passthrough_argument_model(model)})
    schema = model.model_json_schema(by_alias=True)
    return tool.model_copy(update={"fn_metadata": metadata, "parameters": schema})
