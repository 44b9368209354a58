"""Result models of the tools: their output schemas and ``structuredContent``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from .domain import URL_LIFETIME_TEXT, JournalStatus, TaskStatus


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


class SavedVideo(_Result):
    """A video saved on this machine: what the save pipeline returns.

    Every field added here also appears (optional) at the top level of the task
    results, where the contract puts a saved video's fields (see :class:`TaskResult`).
    """

    path: Annotated[
        str | None,
        Field(
            description=(
                "Absolute path of the saved mp4; null when it is an object in object "
                "storage (see uri)."
            )
        ),
    ]
    uri: Annotated[
        str,
        Field(description="file:// URI of the saved mp4 (s3://bucket/key in object storage)."),
    ]
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
    media_url: Annotated[
        str | None,
        Field(
            description=(
                "http(s) link serving the saved file (Range requests included) to whoever "
                "holds it; unguessable, only for files this server saved."
            )
        ),
    ] = None

    @property
    def location(self) -> str:
        """Where it is, for the store and for words: its local path, else its URI."""
        return self.path if self.path is not None else self.uri

    def saved_video(self) -> SavedVideo:
        """The saved video this result is (the renderer's view of every saving tool)."""
        return self


def _all_optional(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s fields as ``create_model`` definitions, each defaulting to None."""
    return {
        name: (info.annotation | None, Field(default=None, description=info.description))  # type: ignore[operator]
        for name, info in model.model_fields.items()
    }


if TYPE_CHECKING:
    _WhenSaved = _Result
else:
    # SavedVideo's fields, each optional: set when the call saved the video.
    _WhenSaved = create_model("_WhenSaved", __base__=_Result, **_all_optional(SavedVideo))


class TaskResult(_WhenSaved):
    """Where a task stands, and what to do next.

    When the call saved the video, its fields are at the top level, where the
    contract puts them (once: there is no nested copy).
    """

    task_id: Annotated[str, Field(description="The upstream task id.")]
    status: Annotated[
        TaskStatus,
        Field(description=", ".join(TaskStatus) + " (the last for any other upstream status)."),
    ]
    model: Annotated[str | None, Field(description="Model id, when known.")] = None
    url: Annotated[
        str | None,
        Field(description=f"Result URL the upstream gave (signed, valid {URL_LIFETIME_TEXT})."),
    ] = None
    error: Annotated[TaskErrorInfo | None, Field(description="Why the task failed.")] = None
    elapsed_seconds: Annotated[
        float | None, Field(description="How long this call waited for the task.")
    ] = None
    next_step: Annotated[str | None, Field(description="What to do next, in plain words.")] = None
    download_error: Annotated[
        str | None,
        Field(description="Why saving the finished video failed (it can be downloaded again)."),
    ] = None
    notes: Annotated[
        list[str],
        Field(description="Differences between what was asked and what the saved file holds."),
    ] = Field(default_factory=list)

    def saved_video(self) -> SavedVideo | None:
        """The video this call saved, from its top-level fields; None when nothing was."""
        if getattr(self, "sha256", None) is None:  # the field every saved video has
            return None
        return SavedVideo.model_validate(self.model_dump(include=set(SavedVideo.model_fields)))


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
    replayed: Annotated[
        bool,
        Field(
            description=(
                "True when idempotency_key matched an earlier call: its task is returned "
                "and nothing new was submitted."
            )
        ),
    ] = False


class CheckVideoTaskResult(TaskResult):
    """``check_video_task``: the task's status after waiting at most ``wait_seconds``."""


class DownloadVideoResult(SavedVideo):
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
    status: JournalStatus
    created_at: str
    updated_at: str
    url: str | None = None
    error: TaskErrorInfo | None = None
    path: str | None = None
    """The saved video's local path; ``None`` for an object (see ``uri``)."""
    uri: str | None = None
    """The saved video's URI (``file://`` or ``s3://``), when one was saved."""
    size_bytes: int | None = None
    sha256: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)


class ListVideoTasksResult(_Result):
    """``list_video_tasks``: tasks from the local journal, newest first."""

    tasks: list[TaskSummary]


class BatchJobResult(GenerateVideoResult):
    """One job of ``generate_videos``: what ``generate_video`` gives, plus its index."""

    index: Annotated[int, Field(description="The job's 0-based index in jobs.", ge=0)]
    status: Annotated[  # type: ignore[assignment]
        TaskStatus | Literal[JournalStatus.SUBMIT_FAILED, JournalStatus.SUBMIT_UNKNOWN],
        Field(
            description=(
                "The task's status; submit_failed when the submit was refused (nothing was "
                "created: send the job again), submit_unknown when its answer was lost "
                "(a task may exist: see list_video_tasks)."
            )
        ),
    ]
    submit_error: Annotated[
        str | None, Field(description="Why submitting this job failed, when it did.")
    ] = None


class GenerateVideosResult(_Result):
    """``generate_videos``: every job's result, in job order."""

    jobs: Annotated[list[BatchJobResult], Field(description="One result per job, in order.")]
    retry_jobs: Annotated[
        list[int],
        Field(description="Indexes of jobs whose submit failed and created nothing: resend."),
    ] = Field(default_factory=list)
    uncertain_jobs: Annotated[
        list[int],
        Field(
            description=(
                "Indexes of jobs whose submit answer was lost: check list_video_tasks "
                "before resending."
            )
        ),
    ] = Field(default_factory=list)
    next_step: Annotated[str, Field(description="What to do next, in plain words.")]


class JoinVideosResult(SavedVideo):
    """``join_videos``: the joined mp4, as download_video describes a saved file."""

    task_ids: Annotated[list[str], Field(description="The joined tasks, in order.")]
    method: Annotated[
        Literal["stream_copy", "re_encode"],
        Field(
            description=(
                "stream_copy when every clip shared codec, size and time base (no quality "
                "loss); re_encode otherwise (to the first clip's size and frame rate)."
            )
        ),
    ]
    probe: Annotated[Probe, Field(description="What the joined file holds.")]
    notes: Annotated[list[str], Field(description="Things worth knowing (e.g. audio dropped).")] = (
        Field(default_factory=list)
    )


class Usage(_Result):
    """What ``get_usage`` returns: the caller's day so far (UTC)."""

    user: str = Field(description="Your user id on this server.")
    seconds_today: float = Field(
        description="Seconds of video submitted today (UTC), a batch counting every job; "
        "a submit the API refused is not counted."
    )
    budget_seconds_per_day: float | None = Field(
        description="Your cap on seconds of video per UTC day; null: no cap."
    )
    tasks_today: int = Field(description="Tasks submitted today (UTC), refused ones excepted.")
