"""The listing view of the journal: tasks newest first, long values clipped."""

from __future__ import annotations

from typing import Any

from ..redact import clip
from ..results import TaskErrorInfo, TaskSummary
from ..store.records import TaskRecord
from ..store.seam import TaskStore
from .saves import path_and_uri

#: Longest text value (a prompt, say) shown in a listing; the whole entry stays in
#: the gravitex://tasks/{task_id} resource. Keeps every listing small, whatever was asked.
LISTED_TEXT_LIMIT = 200

#: Most list items (reference images, say) shown per argument in a listing.
LISTED_ITEMS_LIMIT = 10


def _clipped(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value, LISTED_TEXT_LIMIT)
    if isinstance(value, list):
        return [_clipped(item) for item in value[:LISTED_ITEMS_LIMIT]]
    if isinstance(value, dict):
        return {clip(str(k), LISTED_TEXT_LIMIT): _clipped(v) for k, v in value.items()}
    return value


def summarize(record: TaskRecord) -> TaskSummary:
    """The public view of one journal entry (signed URLs without their query string),
    long texts clipped (see :data:`LISTED_TEXT_LIMIT`)."""
    public = record.public_dict()
    path, uri = path_and_uri(record.saved_path) if record.saved_path else (None, None)
    error = None
    if record.error_message:
        error = TaskErrorInfo(code=record.error_code, message=clip(record.error_message, 1000))
    return TaskSummary(
        task_id=record.task_id,
        model=record.model,
        family=record.family,
        status=record.status,
        created_at=public["created_at"],
        updated_at=public["updated_at"],
        url=public.get("url"),
        error=error,
        path=path,
        uri=uri,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        arguments=_clipped(dict(record.arguments)),
    )


async def list_tasks(journal: TaskStore, *, limit: int, status: str | None) -> list[TaskSummary]:
    """Tasks from the local journal, newest first."""
    records = await journal.list(limit=limit, status=status)
    return [summarize(r) for r in records]
