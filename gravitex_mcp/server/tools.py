"""The MCP tools: thin wrappers that parse, call the service, and shape results.

Every failure (a bad argument, an upstream refusal, a failed task, a full disk)
comes back as a result with ``isError: true`` and a message that says what to
change; never a traceback. The tools raise; :class:`~.schema_errors.CheckedTool`
is the one place that turns what they raise into that result.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import (
    CallToolResult,
    ContentBlock,
    ImageContent,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, Field

from ..catalog import models as catalog
from ..catalog.describe import describe
from ..domain import Family, JournalStatus, TaskStatus
from ..redact import clip, redact_data_urls
from ..request.arguments import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, GenerateVideoInput
from ..results import (
    CheckVideoTaskResult,
    DownloadVideoResult,
    ExtractFramesResult,
    GenerateVideoResult,
    GenerateVideosResult,
    JoinVideosResult,
    ListModelsResult,
    ListVideoTasksResult,
    Probe,
    SavedVideo,
    TaskResult,
)
from ..service.batch import GenerateVideosInput, check_batch, run_batch
from ..service.videos import ProgressFn, VideoService
from ..store.media_links import MediaLinks
from ..video.frames import FramePosition
from .media import request_host
from .model_tool import tool_from_model
from .schema_errors import CheckedTool, strict_arguments

logger = logging.getLogger(__name__)

ServiceGetter = Callable[[Context], VideoService]
LinksGetter = Callable[[Context], MediaLinks | None]
_Saved = TypeVar("_Saved", bound=BaseModel)


GENERATE_DESCRIPTION = f"""\
Generate a video with Sora 2, Google Veo, Alibaba Wan or ByteDance Doubao Seedance.

Pick `model` (call list_models to see what each model accepts), write `prompt`, and add
only the settings you need: duration, resolution, aspect_ratio, image (first frame),
last_frame, reference_images, seed, ... Arguments a model does not take are refused
before anything is sent, with the valid values named. Images may be https URLs, data
URLs or local paths inside the configured input folders.

The call waits up to `wait_seconds` (default {DEFAULT_WAIT_SECONDS}s) with progress notifications.
If the video is not ready by then, it returns the task_id: call check_video_task to keep
waiting. With `download: true` a finished video is saved and its path returned, with
its probe (duration, size, fps, codec, audio read from the file), notes on anything that
differs from what was asked, and a contact sheet image (frames spread over the clip).
Use `dry_run: true` to see the exact upstream request without submitting (no cost).
"""


GENERATE_MANY_DESCRIPTION = f"""\
Generate 1 to 8 videos in one call: several takes of one prompt, or the shots of a sequence.

Each job in `jobs` takes the arguments of one generate_video call (model, prompt, duration,
...). Every job is checked before anything is sent: one bad job sends nothing, and each
problem names its job's index (jobs[1].duration). Then all are submitted at once and
waited for together, up to `wait_seconds` (default {DEFAULT_WAIT_SECONDS}s), with progress
notifications. A job whose submit fails does not stop the others; the result lists which
jobs to send again (retry_jobs). With `download: true` finished videos are saved, each
with its probe, notes and contact sheet image, as generate_video shows them.
"""
PREVIEW_DESCRIPTION = (
    "Put the saved video's contact sheet (frames spread over the clip, one JPEG) in the "
    "result as an image. false leaves the image out (probe, notes and the sheet's path stay)."
)
#: The name a saved mp4 is asked to have.
Filename = Annotated[
    str | None,
    Field(
        max_length=200,
        description=(
            "Optional file name for the mp4 (reduced to a safe base name, .mp4 added). "
            "An existing file is never overwritten: a suffix is added instead."
        ),
    ),
]
MAX_FRAMES = 12
#: Largest contact sheet put in a result (they are made near 150 KiB).
MAX_SHOWN_SHEET_BYTES = 8 * 1024 * 1024
DEFAULT_FRAMES: tuple[FramePosition, ...] = ("first", "middle", "last")
#: One frame to extract: seconds from the start, or a position word. Strict: true is
#: not a number, as the schema says (pydantic's lax mode read it as 1.0).
FrameTime = Annotated[float, Field(ge=0, strict=True)] | FramePosition


# --- result shaping ------------------------------------------------------------


def _video_link(video: SavedVideo, *, over_http: bool = False) -> ResourceLink:
    # A file:// path on the server is useless to a client on another machine.
    uri = video.media_url if over_http and video.media_url else video.uri
    return ResourceLink(
        type="resource_link",
        uri=uri,
        name=Path(video.path).name,
        title="Generated video",
        description=f"mp4, {video.size_bytes} bytes, sha256 {video.sha256[:12]}…",
        mime_type=video.mime_type,
        size=video.size_bytes,
    )


def _probe_text(probe: Probe) -> str:
    fps = f", {probe.fps:g} fps" if probe.fps else ""
    audio = "with audio" if probe.has_audio else "no audio"
    return (
        f"Probe: {probe.duration_seconds:.1f} s, {probe.width}x{probe.height}{fps}, "
        f"{probe.video_codec}, {audio}."
    )


def _seen_lines(video: SavedVideo) -> list[str]:
    """The probe and contact sheet lines of a saved video."""
    lines = []
    if video.probe is not None:
        lines.append(_probe_text(video.probe))
    if video.preview is not None:
        lines.append(f"Contact sheet: {video.preview.path}")
    return lines


def _image(data: bytes, mime_type: str) -> ImageContent:
    return ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime_type)


async def _preview_block(video: SavedVideo | None, wanted: bool) -> list[ContentBlock]:
    """The contact sheet as an image block, when wanted and readable."""
    if not wanted or video is None or video.preview is None:
        return []
    from ..store.ondisk import read_regular

    sheet = Path(video.preview.path)
    try:
        # Never through a symlink swapped in under the sheet's name.
        data = await anyio.to_thread.run_sync(
            lambda: read_regular(sheet, limit=MAX_SHOWN_SHEET_BYTES)
        )
    except OSError as exc:
        logger.warning("could not read %s for the result: %s", Path(video.preview.path).name, exc)
        return []
    return [_image(data, "image/jpeg")]


def _task_text(result: CheckVideoTaskResult | GenerateVideoResult) -> str:
    lines = [
        f"Task {result.task_id}: {result.status}" + (f" ({result.model})" if result.model else "")
    ]
    if result.error is not None:
        code = f" [{result.error.code}]" if result.error.code is not None else ""
        lines.append(f"Error{code}: {result.error.message}")
    if result.video is not None:
        lines.append(f"Saved to {result.video.path} ({result.video.size_bytes} bytes).")
        lines.extend(_seen_lines(result.video))
        if result.video.media_url:
            lines.append(f"Watch it at {result.video.media_url}")
    if result.download_error is not None:
        lines.append(f"Saving failed: {result.download_error}")
    lines.extend(f"Note: {note}" for note in result.notes)
    if result.next_step:
        lines.append(result.next_step)
    return "\n".join(lines)


def _with_media_url(result: _Saved, url: str | None) -> _Saved:
    """``result`` with ``media_url`` set, on the saved video and on its top-level mirror."""
    if url is None:
        return result
    update: dict[str, Any] = {"media_url": url}
    if isinstance(result, TaskResult) and result.video is not None:
        update["video"] = result.video.model_copy(update={"media_url": url})
    return result.model_copy(update=update)


async def _task_result(
    result: CheckVideoTaskResult | GenerateVideoResult, *, preview: bool, over_http: bool = False
) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=_task_text(result))]
    if result.video is not None:
        content.append(_video_link(result.video, over_http=over_http))
    content.extend(await _preview_block(result.video, preview))
    return CallToolResult(
        content=content,
        structured_content=result.model_dump(mode="json"),
        is_error=result.status == TaskStatus.FAILED or result.download_error is not None,
    )


async def _saved_result(
    result: SavedVideo,
    lines: list[str],
    *,
    preview: bool,
    over_http: bool,
) -> CallToolResult:
    """The result of a tool that saved one file: ``lines``, its link, its contact sheet."""
    if result.media_url:
        lines.append(f"Watch it at {result.media_url}")
    return CallToolResult(
        content=[
            TextContent(type="text", text="\n".join(lines)),
            _video_link(result, over_http=over_http),
            *await _preview_block(result, preview),
        ],
        structured_content=result.model_dump(mode="json"),
    )


def _listing_text(result: ListVideoTasksResult) -> str:
    """One short line per task: the whole data is in structuredContent, so the text
    does not repeat it (a JSON copy doubled every listing)."""
    if not result.tasks:
        return "No tasks in the journal."
    lines = [f"{len(result.tasks)} task(s), newest first:"]
    for task in result.tasks:
        prompt = task.arguments.get("prompt")
        about = f' "{clip(" ".join(prompt.split()), 60)}"' if isinstance(prompt, str) else ""
        saved = f", saved to {task.path}" if task.path else ""
        name = task.task_id or "(no task id)"
        lines.append(f"- {name}: {task.status} ({task.model}, {task.created_at}){about}{saved}")
    return "\n".join(lines)


async def _batch_result(result: GenerateVideosResult, *, over_http: bool = False) -> CallToolResult:
    """One text for all the jobs, then each saved video's link and contact sheet (as
    generate_video shows it: at most 8 sheets of at most 150 KB each)."""
    content: list[ContentBlock] = []
    lines = []
    for job in result.jobs:
        if job.task_id:
            lines.append(f"jobs[{job.index}]: " + _task_text(job).replace("\n", "\n  "))
        else:
            lines.append(f"jobs[{job.index}]: {job.status}: {job.submit_error}")
        if job.video is not None:
            content.append(_video_link(job.video, over_http=over_http))
            content.extend(await _preview_block(job.video, True))
    lines.append(result.next_step)
    content.insert(0, TextContent(type="text", text="\n".join(lines)))
    return CallToolResult(
        content=content,
        structured_content=result.model_dump(mode="json"),
        # Partly done is not an error: the result says which jobs to send again.
        is_error=not any(job.task_id for job in result.jobs),
    )


def _progress_of(ctx: Context) -> ProgressFn:
    async def report(progress: float, total: float | None, message: str) -> None:
        await ctx.report_progress(progress, total, message)

    return report


# --- registration ----------------------------------------------------------------


def described(text: str) -> str:
    """A docstring as clients should show it: no indentation, one line per paragraph."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _tool(fn: Callable[..., Any], **options: Any) -> Tool:
    return strict_arguments(
        CheckedTool.from_function(fn, description=described(fn.__doc__ or ""), **options)
    )


def build_tools(service_of: ServiceGetter, links_of: LinksGetter | None = None) -> list[Tool]:
    """The tools, in the order clients list them; ``service_of(ctx)`` finds the service,
    ``links_of(ctx)`` the media links (none: saved videos get no ``media_url``)."""

    async def linked(ctx: Context, result: _Saved) -> _Saved:
        # One place mints the link of every saved video a tool returns.
        links = links_of(ctx) if links_of is not None else None
        path = getattr(result, "path", None)
        if links is None or path is None:
            return result
        # An object store serves its own objects: a presigned GET (signed locally).
        direct = service_of(ctx).output.media_url(path)
        if direct is not None:
            return _with_media_url(result, direct)
        host = request_host(ctx.headers)
        await links.ready()
        # Minting stats the file: keep file-system calls off the event loop.
        url = await anyio.to_thread.run_sync(lambda: links.url_for(Path(path), request_host=host))
        return _with_media_url(result, url)

    def over_http(ctx: Context) -> bool:
        return ctx.headers is not None

    async def list_models(
        family: Annotated[
            Family | None,
            # Not strict: a strict enum takes only the Python member, never "veo".
            Field(
                strict=False,
                description="Only this family: sora, veo, wan or seedance. Omit for all.",
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ListModelsResult]:
        """List every video model with its family, modes and the valid values of each
        argument it takes (durations, resolutions, aspect ratios, sizes, ...). Call this
        before generate_video when unsure what a model accepts."""
        from .model_table import models_table

        specs = catalog.models(family)
        result = ListModelsResult(models=[describe(s) for s in specs])
        # The text is a compact table (~3 KB); the whole catalog (~60 KB as indented
        # JSON, 9k tokens) stays in structuredContent and gravitex://models.
        text = (
            f"{len(specs)} model(s). Each model's notes, rules and sizes per aspect ratio "
            "are in structuredContent and the gravitex://models resource.\n" + models_table(family)
        )
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=result.model_dump(mode="json"),
        )

    async def generate_video(
        ctx: Context, **arguments: Any
    ) -> Annotated[CallToolResult, GenerateVideoResult]:
        # Every argument is checked in one place: the service.
        result = await service_of(ctx).generate(arguments, _progress_of(ctx))
        if result.dry_run:
            notes = "".join(f"Note: {note}\n" for note in result.notes)
            # An image travels as a data URL of megabytes: the text shows its
            # digest (payload in structuredContent keeps the exact body).
            shown = redact_data_urls(result.payload)
            digests = " (data URLs shown by their digest)" if shown != result.payload else ""
            text = f"{notes}Dry run, nothing sent. Upstream body{digests}:\n" + json.dumps(
                shown, indent=2, ensure_ascii=False
            )
            return CallToolResult(
                content=[TextContent(type="text", text=text)],
                structured_content=result.model_dump(mode="json"),
            )
        # The service has checked preview (a strict bool; null or absent: true).
        preview = arguments.get("preview") is not False
        return await _task_result(
            await linked(ctx, result), preview=preview, over_http=over_http(ctx)
        )

    async def check_video_task(
        ctx: Context,
        task_id: Annotated[
            str, Field(min_length=1, description="The task_id returned by generate_video.")
        ],
        wait_seconds: Annotated[
            int,
            Field(
                ge=0,
                le=MAX_WAIT_SECONDS,
                description=(
                    "Wait at most this long for the task to finish, with progress "
                    f"notifications (default {DEFAULT_WAIT_SECONDS}; 0 = just look)."
                ),
            ),
        ] = DEFAULT_WAIT_SECONDS,
        download: Annotated[
            bool, Field(description="Save the video when it is finished within the wait.")
        ] = False,
        preview: Annotated[bool, Field(description=PREVIEW_DESCRIPTION)] = True,
    ) -> Annotated[CallToolResult, CheckVideoTaskResult]:
        """Check a video task's status, waiting up to wait_seconds for it to finish.
        Returns succeeded (with the result url), failed (with the reason), or the
        current status and how to keep waiting. With download: true the finished video
        is saved and its path returned."""

        result = await service_of(ctx).check(
            task_id, wait_seconds=wait_seconds, download=download, progress=_progress_of(ctx)
        )
        return await _task_result(
            await linked(ctx, result), preview=preview, over_http=over_http(ctx)
        )

    async def download_video(
        ctx: Context,
        task_id: Annotated[str, Field(min_length=1, description="The finished task's task_id.")],
        filename: Filename = None,
        preview: Annotated[bool, Field(description=PREVIEW_DESCRIPTION)] = True,
    ) -> Annotated[CallToolResult, DownloadVideoResult]:
        """Save a finished video as an mp4 in the output folder and return its path,
        size, sha256, a resource_link, its probe (duration, size, fps, codec, audio),
        notes on what differs from what was asked, and a contact sheet image. Works for
        every model family. The video bytes are not put in the conversation."""

        saved = await service_of(ctx).download(task_id, filename=filename)
        result = await linked(ctx, saved)
        verb = "Already saved at" if result.reused else "Saved to"
        lines = [
            f"{verb} {result.path} ({result.size_bytes} bytes, sha256 {result.sha256}).",
            *_seen_lines(result),
            *(f"Note: {note}" for note in result.notes),
        ]
        return await _saved_result(result, lines, preview=preview, over_http=over_http(ctx))

    async def extract_frames(
        ctx: Context,
        task_id: Annotated[
            str, Field(min_length=1, description="The task whose saved video to take frames from.")
        ],
        at: Annotated[
            list[FrameTime] | None,
            Field(
                min_length=1,
                max_length=MAX_FRAMES,
                description=(
                    "Which frames: seconds from the start (0 up to the clip's length; a "
                    'time past the end is refused), or "first", "middle", "last". Default: '
                    "all three words."
                ),
            ),
        ] = None,
    ) -> Annotated[CallToolResult, ExtractFramesResult]:
        """Save frames of a task's video as PNG files in the output folder and show them.
        A frame's path can be given as image, last_frame or reference_images of the next
        generate_video, e.g. to continue a shot from its last frame. A finished video
        that was not saved yet is downloaded first."""

        wanted: list[float | FramePosition] = list(at) if at else list(DEFAULT_FRAMES)
        result, shown = await service_of(ctx).extract_frames(task_id, wanted)
        lines = [f"{len(result.frames)} frame(s) of {result.video_path}:"]
        lines.extend(
            f"  {f.at_seconds:.3f} s: {f.path} ({f.width}x{f.height})" for f in result.frames
        )
        content: list[ContentBlock] = [TextContent(type="text", text="\n".join(lines))]
        content.extend(_image(png, "image/png") for png in shown)
        return CallToolResult(content=content, structured_content=result.model_dump(mode="json"))

    async def list_video_tasks(
        ctx: Context,
        limit: Annotated[
            int, Field(ge=1, le=100, description="How many tasks to return, newest first.")
        ] = 20,
        status: Annotated[
            JournalStatus | None,
            Field(strict=False, description="Only tasks with this status. Omit for all."),
        ] = None,
    ) -> Annotated[CallToolResult, ListVideoTasksResult]:
        """List video tasks from this machine's journal, newest first (it survives
        restarts). Use it to find a task_id, or to check whether a submit whose answer
        was lost created a task before trying again."""
        tasks = await service_of(ctx).list_tasks(limit=limit, status=status)
        result = ListVideoTasksResult(tasks=tasks)
        return CallToolResult(
            content=[TextContent(type="text", text=_listing_text(result))],
            structured_content=result.model_dump(mode="json"),
        )

    async def generate_videos(
        ctx: Context, **arguments: Any
    ) -> Annotated[CallToolResult, GenerateVideosResult]:
        service = service_of(ctx)
        # null means "not given", as in generate_video.
        given = {k: v for k, v in arguments.items() if v is not None}
        batch = await check_batch(service, given)
        result = await run_batch(service, batch, _progress_of(ctx))
        jobs = [await linked(ctx, job) for job in result.jobs]
        return await _batch_result(
            result.model_copy(update={"jobs": jobs}), over_http=over_http(ctx)
        )

    async def join_videos(
        ctx: Context,
        task_ids: Annotated[
            list[str],
            Field(
                min_length=2,
                max_length=20,
                description=(
                    "2 to 20 finished tasks' ids, in the order their videos are to play. "
                    "Videos not saved yet are downloaded first."
                ),
            ),
        ],
        filename: Filename = None,
        preview: Annotated[bool, Field(description=PREVIEW_DESCRIPTION)] = True,
    ) -> Annotated[CallToolResult, JoinVideosResult]:
        """Join several finished videos, in order, into one mp4 in the output folder,
        for videos longer than one clip. Clips with the same codec, size and time base
        are joined without re-encoding; others are re-encoded to the first clip's size
        and frame rate (a clip of another shape fits inside on black bars). Audio is
        kept when every clip has it. Returns the saved file's path, size, sha256, a
        probe (duration, size, fps, codec, audio) and its contact sheet."""

        from ..service.joins import join_tasks  # PyAV's joining: loaded by the first join only

        joined = await join_tasks(
            service_of(ctx), task_ids, filename=filename, progress=_progress_of(ctx)
        )
        result = await linked(ctx, joined)
        how = "stream copy" if result.method == "stream_copy" else "re-encoded"
        lines = [
            f"Joined {len(result.task_ids)} clips ({how}) into {result.path} "
            f"({result.size_bytes} bytes).",
            *_seen_lines(result),
            *(f"Note: {note}" for note in result.notes),
        ]
        return await _saved_result(result, lines, preview=preview, over_http=over_http(ctx))

    # What each tool may do, told truthfully: a tool that can save a file is not
    # read-only, whatever else it does (check_video_task saves with download: true).
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    # Tools that make something new (a task, a file) and never replace anything.
    creates = ToolAnnotations(
        read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
    )
    # Asked again, these return what the first call made (the saved file, the frame).
    saves_once = creates.model_copy(update={"idempotent_hint": True})
    return [
        _tool(list_models, name="list_models", title="List video models", annotations=read_only),
        tool_from_model(
            generate_video,
            GenerateVideoInput,
            name="generate_video",
            title="Generate a video",
            description=described(GENERATE_DESCRIPTION),
            annotations=creates,
        ),
        _tool(
            check_video_task,
            name="check_video_task",
            title="Check a video task",
            annotations=saves_once,
        ),
        _tool(
            download_video,
            name="download_video",
            title="Download a finished video",
            annotations=saves_once,
        ),
        tool_from_model(
            generate_videos,
            GenerateVideosInput,
            name="generate_videos",
            title="Generate several videos",
            description=described(GENERATE_MANY_DESCRIPTION),
            annotations=creates,
        ),
        _tool(
            join_videos,
            name="join_videos",
            title="Join videos into one",
            annotations=creates,
        ),
        _tool(
            extract_frames,
            name="extract_frames",
            title="Extract frames of a video",
            annotations=saves_once,
        ),
        _tool(
            list_video_tasks,
            name="list_video_tasks",
            title="List video tasks",
            annotations=read_only,
        ),
    ]
