"""Argument completion: task ids for ``gravitex://tasks/{task_id}``, model ids for prompts.

Clients ask as a person types; the answer is the known values starting with
what was typed, newest tasks first: at most 100 (the protocol's limit), with the
count of all that match.
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

from ..catalog import models as catalog
from ..store.seam import TaskStore

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


async def task_completion(journal: TaskStore | None, prefix: str) -> Completion:
    """Task ids in the journal starting with ``prefix``, newest first."""
    if journal is None:
        return Completion(values=[], total=0, has_more=False)
    # Filtered in the journal: the newest 100 ids need not hold the one being typed.
    values, total = await journal.task_ids_starting_with(prefix, limit=MAX_VALUES)
    return Completion(values=values, total=total, has_more=total > len(values))


def register_completions(server: MCPServer[Any], journal: Callable[[], TaskStore | None]) -> None:
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
