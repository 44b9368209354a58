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


class Probe(_Result):
    """What the saved file itself holds, read with FFmpeg's libraries (PyAV)."""

    duration_seconds: Annotated[float, Field(description="Length of the video in seconds.")]
    width: Annotated[int, Field(description="Frame width in pixels.")]
    height: Annotated[int, Field(description="Frame height in pixels.")]
    fps: Annotated[float | None, Field(description="Frames per second, when known.")] = None
    video_codec: Annotated[str, Field(description="Video codec, e.g. h264.")]
    has_audio: Annotated[bool, Field(description="Whether the file has an audio track.")]


class Preview(_Result):
    """A contact sheet: frames spread over the video, tiled into one JPEG beside it."""

    path: Annotated[str, Field(description="Absolute path of the contact sheet JPEG.")]
    uri: Annotated[str, Field(description="file:// URI of the contact sheet.")]
    width: Annotated[int, Field(description="Width of the sheet in pixels.")]
    height: Annotated[int, Field(description="Height of the sheet in pixels.")]
    at_seconds: Annotated[
        list[float], Field(description="Time of each tile in the video, left to right, top down.")
    ]


class Frame(_Result):
    """One frame of a saved video, saved as PNG in the output folder."""

    at_seconds: Annotated[float, Field(description="Time of the frame in the video.")]
    path: Annotated[
        str,
        Field(
            description="Absolute path of the PNG (usable as image/last_frame of generate_video)."
        ),
    ]
    uri: Annotated[str, Field(description="file:// URI of the PNG.")]
    width: Annotated[int, Field(description="Width in pixels.")]
    height: Annotated[int, Field(description="Height in pixels.")]


class SavedVideoInfo(_Result):
    """A video saved on this machine."""

    path: Annotated[str, Field(description="Absolute path of the saved mp4.")]
    uri: Annotated[str, Field(description="file:// URI of the saved mp4.")]
    size_bytes: Annotated[int, Field(description="Size of the file in bytes.", ge=0)]
    sha256: Annotated[str, Field(description="SHA-256 of the file, hex.")]
    mime_type: Annotated[str, Field(description="Always video/mp4.")] = "video/mp4"
    probe: Annotated[
        Probe | None, Field(description="Duration, size, fps, codec, audio read from the file.")
    ] = None
    preview: Annotated[
        Preview | None, Field(description="The contact sheet JPEG saved beside the video.")
    ] = None
    notes: Annotated[
        list[str],
        Field(description="Each difference between what was asked and what the file holds."),
    ] = Field(default_factory=list)


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
    probe: Probe | None = None
    preview: Preview | None = None
    notes: Annotated[
        list[str],
        Field(description="Differences between what was asked and what the saved file holds."),
    ] = Field(default_factory=list)


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
        Field(
            description=(
                "Things worth knowing about how the model treats these arguments, and each "
                "difference between what was asked and what the saved file holds."
            )
        ),
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


class ExtractFramesResult(_Result):
    """``extract_frames``: frames of a task's saved video, as PNG files."""

    task_id: Annotated[str, Field(description="The task the video belongs to.")]
    video_path: Annotated[str, Field(description="The saved video the frames come from.")]
    frames: Annotated[list[Frame], Field(description="The frames, in the order asked.")]


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
