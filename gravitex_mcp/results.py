"""Result models of the five tools: their output schemas and ``structuredContent``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .domain import TaskStatus


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskErrorInfo(_Result):
    """Why a task failed, as the upstream reported it."""

    code: Annotated[str | int | None, Field(description="Upstream error code, when given.")] = None
    message: Annotated[str, Field(description="Upstream error message.")]


class SavedVideoInfo(_Result):
    """A video saved on this machine."""

    path: Annotated[str, Field(description="Absolute path of the saved mp4.")]
    uri: Annotated[str, Field(description="file:// URI of the saved mp4.")]
    size_bytes: Annotated[int, Field(description="Size of the file in bytes.", ge=0)]
    sha256: Annotated[str, Field(description="SHA-256 of the file, hex.")]
    mime_type: Annotated[str, Field(description="Always video/mp4.")] = "video/mp4"
    media_url: Annotated[
        str | None,
        Field(
            description=(
                "http(s) link serving the saved file (Range requests included) to whoever "
                "holds it; unguessable, only for files this server saved."
            )
        ),
    ] = None


class TaskResult(_Result):
    """Where a task stands, and what to do next."""

    task_id: Annotated[str, Field(description="The upstream task id.")]
    status: Annotated[
        TaskStatus,
        Field(description="submitted, queued, in_progress, succeeded, failed (or unknown)."),
    ]
    model: Annotated[str | None, Field(description="Model id, when known.")] = None
    url: Annotated[
        str | None,
        Field(description="Result URL the upstream gave (signed, valid about 24 h)."),
    ] = None
    error: Annotated[TaskErrorInfo | None, Field(description="Why the task failed.")] = None
    elapsed_seconds: Annotated[
        float | None, Field(description="How long this call waited for the task.")
    ] = None
    next_step: Annotated[str | None, Field(description="What to do next, in plain words.")] = None
    video: Annotated[
        SavedVideoInfo | None,
        Field(description="The saved video, when it was downloaded by this call."),
    ] = None
    download_error: Annotated[
        str | None,
        Field(description="Why saving the finished video failed (it can be downloaded again)."),
    ] = None
    # Mirrors of ``video``'s fields, as the contract puts them at the top level.
    path: str | None = None
    uri: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    mime_type: str | None = None
    media_url: str | None = None


class GenerateVideoResult(TaskResult):
    """``generate_video``: the submitted task, or with ``dry_run`` the exact upstream body."""

    task_id: Annotated[
        str, Field(description="The upstream task id (empty for a dry run: nothing was sent).")
    ]
    status: Annotated[  # type: ignore[assignment]
        TaskStatus | Literal["dry_run"],
        Field(description="The task's status, or dry_run when nothing was submitted."),
    ]
    dry_run: Annotated[bool, Field(description="True when nothing was submitted.")] = False
    payload: Annotated[
        dict[str, Any] | None,
        Field(description="With dry_run: the exact JSON body that would be sent upstream."),
    ] = None
    notes: Annotated[
        list[str],
        Field(description="Things worth knowing about how the model treats these arguments."),
    ] = Field(default_factory=list)


class CheckVideoTaskResult(TaskResult):
    """``check_video_task``: the task's status after waiting at most ``wait_seconds``."""


class DownloadVideoResult(SavedVideoInfo):
    """``download_video``: the saved file."""

    task_id: Annotated[str, Field(description="The task the video belongs to.")]
    reused: Annotated[
        bool,
        Field(description="True when an earlier download of this task was still on disk."),
    ] = False


class ListModelsResult(_Result):
    """``list_models``: every model with the valid values of each argument it takes."""

    models: list[dict[str, Any]]


class TaskSummary(_Result):
    """One task from the local journal."""

    task_id: str | None
    model: str
    family: str
    status: str
    created_at: str
    updated_at: str
    url: str | None = None
    error: TaskErrorInfo | None = None
    path: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)


class ListVideoTasksResult(_Result):
    """``list_video_tasks``: tasks from the local journal, newest first."""

    tasks: list[TaskSummary]
