"""One SDK middleware around every tool call: its metrics, and the task its logs name.

The SDK's own middleware already opens an OpenTelemetry span per request; this one
counts each ``tools/call`` by tool and outcome (an ``isError`` result is a refusal)
and, when the call names a task (``task_id``), makes every log line it causes carry it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from ..logs import task_context
from ..metrics import Metrics


class ToolCalls:
    """``ServerMiddleware`` for ``tools/call``: counted into ``metrics`` (when given)
    under the tool's name (one of ``tools``; anything else is ``other``, so a client
    cannot grow the label set)."""

    def __init__(self, metrics: Metrics | None, tools: Iterable[str]) -> None:
        self._metrics = metrics
        self._tools = frozenset(tools)

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        params: Mapping[str, Any] = ctx.params or {}
        arguments = params.get("arguments")
        task_id = arguments.get("task_id") if isinstance(arguments, Mapping) else None
        with task_context(task_id if isinstance(task_id, str) else None):
            result = await call_next(ctx)
        if self._metrics is not None:
            name = params.get("name")
            tool = name if isinstance(name, str) and name in self._tools else "other"
            refused = _is_error(result)
            self._metrics.tool_calls.labels(tool, "refused" if refused else "ok").inc()
        return result


def _is_error(result: HandlerResult) -> bool:
    if isinstance(result, Mapping):
        return bool(result.get("isError") or result.get("is_error"))
    return bool(getattr(result, "is_error", False))
