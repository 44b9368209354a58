"""Argument completion: task ids for ``gravitex://tasks/{task_id}``, model ids for prompts.

Clients ask as a person types; the answer is the known values starting with
what was typed (at most 100, the protocol's limit), newest tasks first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import (
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from . import catalog
from .journal import MAX_LIST_LIMIT, Journal

TASK_TEMPLATE = "gravitex://tasks/{task_id}"
#: The protocol allows at most this many values in one answer.
MAX_VALUES = 100


def _answer(values: list[str], prefix: str) -> Completion:
    matches = [v for v in values if v.startswith(prefix)]
    return Completion(
        values=matches[:MAX_VALUES], total=len(matches), has_more=len(matches) > MAX_VALUES
    )


def model_completion(prefix: str) -> Completion:
    """Model ids starting with ``prefix``, in catalog order."""
    return _answer(list(catalog.MODEL_IDS), prefix)


async def task_completion(journal: Journal | None, prefix: str) -> Completion:
    """Task ids in the journal starting with ``prefix``, newest first."""
    if journal is None:
        return Completion(values=[], total=0, has_more=False)
    records = await journal.list(limit=MAX_LIST_LIMIT)
    return _answer([r.task_id for r in records if r.task_id], prefix)


def register_completions(server: MCPServer[Any], journal: Callable[[], Journal | None]) -> None:
    """Answer ``completion/complete`` on ``server``; ``journal`` gives the open journal."""

    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if argument.name == "model" and isinstance(ref, PromptReference):
            return model_completion(argument.value)
        if argument.name == "task_id" and (
            isinstance(ref, PromptReference) or ref.uri == TASK_TEMPLATE
        ):
            return await task_completion(journal(), argument.value)
        return None

    # The SDK's decorator is untyped; registering by call keeps ``complete`` typed.
    server.completion()(complete)  # type: ignore[no-untyped-call]
