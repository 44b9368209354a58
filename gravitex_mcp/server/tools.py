"""The MCP tools: thin wrappers that parse, call the service, and render its result.

Every failure (a bad argument, an upstream refusal, a failed task, a full disk)
comes back as a result with ``isError: true`` and a message that says what to
change; never a traceback. The tools raise; :class:`~.schema_errors.CheckedTool`
is the one place that turns what they raise into that result.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, get_args

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from ..catalog import models as catalog
from ..catalog.describe import describe
from ..domain import Family, JournalStatus
from ..request.arguments import (
    DEFAULT_WAIT_SECONDS,
    MAX_WAIT_SECONDS,
    PREVIEW_DESCRIPTION,
    GenerateVideoInput,
)
from ..results import (
    CheckVideoTaskResult,
    DownloadVideoResult,
    ExtractFramesResult,
    GenerateVideoResult,
    GenerateVideosResult,
    JoinVideosResult,
    ListModelsResult,
    ListVideoTasksResult,
    Usage,
)
from ..service.batch import MAX_JOBS, GenerateVideosInput, check_batch, run_batch
from ..service.videos import VideoService
from ..store.media_links import MediaLinks
from ..store.seam import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from ..video.frames import FramePosition
from .media import request_host
from .model_tool import tool_from_model
from .rendering import Rendering, image, listing_text, plain
from .schema_errors import CheckedTool, strict_arguments
from .users import ApprovalParameter, check_spending

ServiceGetter = Callable[[Context], VideoService]
LinksGetter = Callable[[Context], MediaLinks | None]


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
Generate 1 to {MAX_JOBS} videos in one call: several takes of one prompt, or the shots of a
sequence.

Each job in `jobs` takes the arguments of one generate_video call (model, prompt, duration,
...). Every job is checked before anything is sent: one bad job sends nothing, and each
problem names its job's index (jobs[1].duration). Then all are submitted at once and
waited for together, up to `wait_seconds` (default {DEFAULT_WAIT_SECONDS}s), with progress
notifications. A job whose submit fails does not stop the others; the result lists which
jobs to send again (retry_jobs). With `download: true` finished videos are saved, each
with its probe, notes and contact sheet image, as generate_video shows them.
"""
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
Preview = Annotated[bool, Field(description=PREVIEW_DESCRIPTION)]
MAX_FRAMES = 12
DEFAULT_FRAMES: tuple[FramePosition, ...] = get_args(FramePosition)
#: One frame to extract: seconds from the start, or a position word. Strict: true is
#: not a number, as the schema says (pydantic's lax mode read it as 1.0).
FrameTime = Annotated[float, Field(ge=0, strict=True)] | FramePosition


# --- registration ----------------------------------------------------------------


def described(text: str) -> str:
    """A docstring as clients should show it: no indentation, one line per paragraph."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _tool(
    fn: Callable[..., Any],
    title: str,
    annotations: ToolAnnotations,
    arguments: type[BaseModel] | None = None,
    description: str | None = None,
) -> Tool:
    """The tool ``fn``, named after it; with ``arguments``, that model is its input schema."""
    text = described(description or fn.__doc__ or "")
    if arguments is not None:
        return tool_from_model(
            fn, arguments, title=title, description=text, annotations=annotations
        )
    tool = CheckedTool.from_function(fn, title=title, description=text, annotations=annotations)
    return strict_arguments(tool)


def build_tools(service_of: ServiceGetter, links_of: LinksGetter | None = None) -> list[Tool]:
    """The tools, in the order clients list them; ``service_of(ctx)`` finds the service,
    ``links_of(ctx)`` the media links (none: saved videos get no ``media_url``)."""

    def rendering(ctx: Context) -> Rendering:
        links = links_of(ctx) if links_of is not None else None
        return Rendering(
            links,
            request_host(ctx.headers),
            over_http=ctx.headers is not None,
            videos=service_of(ctx).output,
        )

    async def list_models(
        family: Annotated[
            Family | None,
            # Not strict: a strict enum takes only the Python member, never "veo".
            Field(
                strict=False,
                description=f"Only this family: {', '.join(Family)}. Omit for all.",
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
        return plain(text, result)

    async def generate_video(
        ctx: Context, approval: ApprovalParameter, **arguments: Any
    ) -> Annotated[CallToolResult, GenerateVideoResult]:
        service = service_of(ctx)
        await check_spending(ctx, service.tasks, arguments, approval)
        # Every argument is checked in one place: the service.
        result = await service.generate(arguments, ctx.report_progress)
        return await rendering(ctx).render(result, preview=arguments.get("preview") is not False)

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
        preview: Preview = True,
    ) -> Annotated[CallToolResult, CheckVideoTaskResult]:
        """Check a video task's status, waiting up to wait_seconds for it to finish.
        Returns succeeded (with the result url), failed (with the reason), or the
        current status and how to keep waiting. With download: true the finished video
        is saved and its path returned."""

        result = await service_of(ctx).check(
            task_id, wait_seconds=wait_seconds, download=download, progress=ctx.report_progress
        )
        return await rendering(ctx).render(result, preview=preview)

    async def download_video(
        ctx: Context,
        task_id: Annotated[str, Field(min_length=1, description="The finished task's task_id.")],
        filename: Filename = None,
        preview: Preview = True,
    ) -> Annotated[CallToolResult, DownloadVideoResult]:
        """Save a finished video as an mp4 in the output folder and return its path,
        size, sha256, a resource_link, its probe (duration, size, fps, codec, audio),
        notes on what differs from what was asked, and a contact sheet image. Works for
        every model family. The video bytes are not put in the conversation."""

        result = await service_of(ctx).download(task_id, filename=filename)
        return await rendering(ctx).render(result, preview=preview)

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
                    "time past the end is refused), or "
                    + ", ".join(f'"{word}"' for word in DEFAULT_FRAMES)
                    + ". Default: all three words."
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
        return plain("\n".join(lines), result, *(image(png, "image/png") for png in shown))

    async def list_video_tasks(
        ctx: Context,
        limit: Annotated[
            int,
            Field(ge=1, le=MAX_LIST_LIMIT, description="How many tasks to return, newest first."),
        ] = DEFAULT_LIST_LIMIT,
        status: Annotated[
            JournalStatus | None,
            Field(strict=False, description="Only tasks with this status. Omit for all."),
        ] = None,
    ) -> Annotated[CallToolResult, ListVideoTasksResult]:
        """List your video tasks from the task store, newest first (it survives
        restarts). Use it to find a task_id, or to check whether a submit whose answer
        was lost created a task before trying again."""
        tasks = await service_of(ctx).list_tasks(limit=limit, status=status)
        result = ListVideoTasksResult(tasks=tasks)
        return plain(listing_text(result), result)

    async def get_usage(ctx: Context) -> Annotated[CallToolResult, Usage]:
        """Show your seconds of video and tasks submitted today (UTC) and your daily
        budget of seconds (null: no cap). A submission that would pass the budget is
        refused before anything is sent; a submit the API refused gives its seconds
        back."""
        usage = await service_of(ctx).usage()
        cap = (
            "no daily budget"
            if usage.budget_seconds_per_day is None
            else f"budget {usage.budget_seconds_per_day:g} s per UTC day, "
            f"{max(0.0, usage.budget_seconds_per_day - usage.seconds_today):g} s left"
        )
        text = (
            f"{usage.user}: {usage.seconds_today:g} s of video in {usage.tasks_today} "
            f"task(s) today (UTC); {cap}."
        )
        return plain(text, usage)

    async def generate_videos(
        ctx: Context, approval: ApprovalParameter, **arguments: Any
    ) -> Annotated[CallToolResult, GenerateVideosResult]:
        service = service_of(ctx)
        # null means "not given", as in generate_video.
        given = {k: v for k, v in arguments.items() if v is not None}
        batch = await check_batch(service, given)
        await check_spending(ctx, service.tasks, given, approval)
        result = await run_batch(service, batch, ctx.report_progress)
        return await rendering(ctx).render(result)

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
        preview: Preview = True,
    ) -> Annotated[CallToolResult, JoinVideosResult]:
        """Join several finished videos, in order, into one mp4 in the output folder,
        for videos longer than one clip. Clips with the same codec, size and time base
        are joined without re-encoding; others are re-encoded to the first clip's size
        and frame rate (a clip of another shape fits inside on black bars). Audio is
        kept when every clip has it. Returns the saved file's path, size, sha256, a
        probe (duration, size, fps, codec, audio) and its contact sheet."""

        from ..service.joins import join_tasks  # PyAV's joining: loaded by the first join only

        joined = await join_tasks(
            service_of(ctx), task_ids, filename=filename, progress=ctx.report_progress
        )
        return await rendering(ctx).render(joined, preview=preview)

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
        _tool(list_models, "List video models", read_only),
        _tool(
            generate_video, "Generate a video", creates, GenerateVideoInput, GENERATE_DESCRIPTION
        ),
        _tool(check_video_task, "Check a video task", saves_once),
        _tool(download_video, "Download a finished video", saves_once),
        _tool(
            generate_videos,
            "Generate several videos",
            creates,
            GenerateVideosInput,
            GENERATE_MANY_DESCRIPTION,
        ),
        _tool(join_videos, "Join videos into one", creates),
        _tool(extract_frames, "Extract frames of a video", saves_once),
        _tool(list_video_tasks, "List video tasks", read_only),
        _tool(get_usage, "Show today's usage", read_only),
    ]
