"""Register an MCP tool whose arguments are one pydantic model.

``MCPServer`` derives a tool's input schema from the function signature and
silently drops argument names it does not know. ``generate_video`` has twenty
arguments that already live in :class:`~gravitex_mcp.arguments.GenerateVideoInput`;
writing them again as parameters would be a second copy to keep in sync, and a
misspelt argument (``seconds`` for ``duration``) must be refused, not dropped.
So the tool is built from the function as usual and then given the model
(``extra="forbid"``) as its argument model and input schema.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp.types import ToolAnnotations
from pydantic import BaseModel, model_validator


def strict_argument_model(model: type[BaseModel]) -> type[ArgModelBase]:
    """``model`` as the SDK's argument model, refusing unknown names with the valid ones."""
    valid = frozenset(f.alias or name for name, f in model.model_fields.items())
    listing = ", ".join(sorted(valid))

    class Strict(model, ArgModelBase):  # type: ignore[misc,valid-type]
        @model_validator(mode="before")
        @classmethod
        def refuse_unknown_arguments(cls, data: Any) -> Any:
            if isinstance(data, dict):
                unknown = sorted(str(k) for k in data if k not in valid)
                if unknown:
                    raise ValueError(
                        f"unknown argument(s) {', '.join(unknown)}; valid arguments: {listing}"
                    )
            return data

    Strict.__name__ = Strict.__qualname__ = f"{model.__name__}Arguments"
    return Strict


def tool_from_model(
    fn: Callable[..., Any],
    model: type[BaseModel],
    *,
    name: str,
    title: str,
    description: str,
    annotations: ToolAnnotations,
) -> Tool:
    """A :class:`Tool` calling ``fn(ctx, **fields)`` with ``model`` as its input schema.

    ``fn`` must take a ``Context`` parameter and ``**arguments``.
    """
    tool = Tool.from_function(
        fn, name=name, title=title, description=description, annotations=annotations
    )
    arg_model = strict_argument_model(model)
    tool.fn_metadata.arg_model = arg_model
    tool.parameters = arg_model.model_json_schema(by_alias=True)
    return tool
