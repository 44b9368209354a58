"""The five MCP tools: thin wrappers that parse, call the service, and shape results.

Every failure the agent can act on (a bad argument, an upstream refusal, a
failed task) comes back as a result with ``isError: true`` and a message that
says what to change; never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from . import catalog
from .arguments import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, GenerateVideoInput
from .domain import Family, TaskStatus
from .errors import GravitexError
from .media import MediaLinks, request_host
from .model_tool import tool_from_model
from .results import (
    CheckVideoTaskResult,
    DownloadVideoResult,
    GenerateVideoResult,
    ListModelsResult,
    ListVideoTasksResult,
    SavedVideoInfo,
    TaskResult,
)
from .service import ProgressFn, VideoService
from .validation import parse_request

logger = logging.getLogger(__name__)

ServiceGetter = Callable[[Context], VideoService]
LinksGetter = Callable[[Context], MediaLinks | None]
_Saved = TypeVar("_Saved", bound=BaseModel)

StatusFilter = Literal[
    "submitted",
    "queued",
    "in_progress",
    "succeeded",
    "failed",
    "unknown",
    "submitting",
    "submit_unknown",
    "submit_failed",
]

GENERATE_DESCRIPTION = f"""\
Generate a video with Sora 2, Google Veo, Alibaba Wan or ByteDance Doubao Seedance.

Pick `model` (call list_models to see what each model accepts), write `prompt`, and add
only the settings you need: duration, resolution, aspect_ratio, image (first frame),
last_frame, reference_images, seed, ... Arguments a model does not take are refused
before anything is sent, with the valid values named. Images may be https URLs, data
URLs or local paths inside the configured input folders.

The call waits up to `wait_seconds` (default {DEFAULT_WAIT_SECONDS}s) with progress notifications.
If the video is not ready by then, it returns the task_id: call check_video_task to keep
waiting. With `download: true` a finished video is saved and its path returned.
Use `dry_run: true` to see the exact upstream request without submitting (no cost).
"""


# --- result shaping ------------------------------------------------------------


def _error(message: str, structured: BaseModel | None = None) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=message)],
        structured_content=None if structured is None else structured.model_dump(mode="json"),
        is_error=True,
    )


def _video_link(video: SavedVideoInfo, *, over_http: bool = False) -> ResourceLink:
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


def _task_text(result: CheckVideoTaskResult | GenerateVideoResult) -> str:
    lines = [
        f"Task {result.task_id}: {result.status}" + (f" ({result.model})" if result.model else "")
    ]
    if result.error is not None:
        code = f" [{result.error.code}]" if result.error.code is not None else ""
        lines.append(f"Error{code}: {result.error.message}")
    if result.video is not None:
        lines.append(f"Saved to {result.video.path} ({result.video.size_bytes} bytes).")
        if result.media_url:
            lines.append(f"Watch it at {result.media_url}")
    if result.download_error is not None:
        lines.append(f"Saving failed: {result.download_error}")
    if isinstance(result, GenerateVideoResult):
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


def _task_result(
    result: CheckVideoTaskResult | GenerateVideoResult, *, over_http: bool = False
) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=_task_text(result))]
    if result.video is not None:
        content.append(_video_link(result.video, over_http=over_http))
    return CallToolResult(
        content=content,
        structured_content=result.model_dump(mode="json"),
        is_error=result.status == TaskStatus.FAILED or result.download_error is not None,
    )


def _progress_of(ctx: Context) -> ProgressFn:
    async def report(progress: float, total: float | None, message: str) -> None:
        await ctx.report_progress(progress, total, message)

    return report


async def _guarded(call: Callable[[], Awaitable[CallToolResult]]) -> CallToolResult:
    """Run a tool body; a :class:`GravitexError` becomes an ``isError`` result."""
    try:
        return await call()
    except GravitexError as exc:
        logger.info("tool error: %s: %s", type(exc).__name__, exc)
        return _error(str(exc))


# --- registration ----------------------------------------------------------------


def build_tools(service_of: ServiceGetter, links_of: LinksGetter | None = None) -> list[Tool]:
    """The five tools, in the order clients list them; ``service_of(ctx)`` finds the service,
    ``links_of(ctx)`` the media links (none: saved videos get no ``media_url``)."""

    async def linked(ctx: Context, result: _Saved) -> _Saved:
        # One place mints the link of every saved video a tool returns.
        links = links_of(ctx) if links_of is not None else None
        path = getattr(result, "path", None)
        if links is None or path is None:
            return result
        host = request_host(ctx.headers)
        # Minting stats the file: keep file-system calls off the event loop.
        url = await anyio.to_thread.run_sync(lambda: links.url_for(Path(path), request_host=host))
        return _with_media_url(result, url)

    def over_http(ctx: Context) -> bool:
        return ctx.headers is not None

    async def list_models(
        family: Annotated[
            Family | None,
            Field(description="Only this family: sora, veo, wan or seedance. Omit for all."),
        ] = None,
    ) -> ListModelsResult:
        """List every video model with its family, modes and the valid values of each
        argument it takes (durations, resolutions, aspect ratios, sizes, ...). Call this
        before generate_video when unsure what a model accepts."""
        specs = catalog.models(family)
        return ListModelsResult(models=[catalog.describe(s) for s in specs])

    async def generate_video(
        ctx: Context, **arguments: Any
    ) -> Annotated[CallToolResult, GenerateVideoResult]:
        async def body() -> CallToolResult:
            # null means "not given"; every argument is checked in one place.
            request = parse_request({k: v for k, v in arguments.items() if v is not None})
            result = await service_of(ctx).generate(request, _progress_of(ctx))
            if result.dry_run:
                notes = "".join(f"Note: {note}\n" for note in result.notes)
                text = f"{notes}Dry run, nothing sent. Upstream body:\n" + json.dumps(
                    result.payload, indent=2, ensure_ascii=False
                )
                return CallToolResult(
                    content=[TextContent(type="text", text=text)],
                    structured_content=result.model_dump(mode="json"),
                )
            return _task_result(await linked(ctx, result), over_http=over_http(ctx))

        return await _guarded(body)

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
    ) -> Annotated[CallToolResult, CheckVideoTaskResult]:
        """Check a video task's status, waiting up to wait_seconds for it to finish.
        Returns succeeded (with the result url), failed (with the reason), or the
        current status and how to keep waiting. With download: true the finished video
        is saved and its path returned."""

        async def body() -> CallToolResult:
            result = await service_of(ctx).check(
                task_id, wait_seconds=wait_seconds, download=download, progress=_progress_of(ctx)
            )
            return _task_result(await linked(ctx, result), over_http=over_http(ctx))

        return await _guarded(body)

    async def download_video(
        ctx: Context,
        task_id: Annotated[str, Field(min_length=1, description="The finished task's task_id.")],
        filename: Annotated[
            str | None,
            Field(
                max_length=200,
                description=(
                    "Optional file name (reduced to a safe base name, .mp4 added). "
                    "An existing file is never overwritten: a suffix is added instead."
                ),
            ),
        ] = None,
    ) -> Annotated[CallToolResult, DownloadVideoResult]:
        """Save a finished video as an mp4 in the output folder and return its path,
        size, sha256 and a resource_link. Works for every model family. The video bytes
        are not put in the conversation."""

        async def body() -> CallToolResult:
            saved = await service_of(ctx).download(task_id, filename=filename)
            result = await linked(ctx, saved)
            verb = "Already saved at" if result.reused else "Saved to"
            text = f"{verb} {result.path} ({result.size_bytes} bytes, sha256 {result.sha256})."
            if result.media_url:
                text += f"\nWatch it at {result.media_url}"
            return CallToolResult(
                content=[
                    TextContent(type="text", text=text),
                    _video_link(result, over_http=over_http(ctx)),
                ],
                structured_content=result.model_dump(mode="json"),
            )

        return await _guarded(body)

    async def list_video_tasks(
        ctx: Context,
        limit: Annotated[
            int, Field(ge=1, le=100, description="How many tasks to return, newest first.")
        ] = 20,
        status: Annotated[
            StatusFilter | None,
            Field(description="Only tasks with this status. Omit for all."),
        ] = None,
    ) -> ListVideoTasksResult:
        """List video tasks from this machine's journal, newest first (it survives
        restarts). Use it to find a task_id, or to check whether a submit whose answer
        was lost created a task before trying again."""
        tasks = await service_of(ctx).list_tasks(limit=limit, status=status)
        return ListVideoTasksResult(tasks=tasks)

    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    return [
        Tool.from_function(
            list_models, name="list_models", title="List video models", annotations=read_only
        ),
        tool_from_model(
            generate_video,
            GenerateVideoInput,
            name="generate_video",
            title="Generate a video",
            description=GENERATE_DESCRIPTION,
            annotations=ToolAnnotations(
                read_only_hint=False,
                destructive_hint=False,
                idempotent_hint=False,
                open_world_hint=True,
            ),
        ),
        Tool.from_function(
            check_video_task,
            name="check_video_task",
            title="Check a video task",
            annotations=ToolAnnotations(
                read_only_hint=True, idempotent_hint=True, open_world_hint=True
            ),
        ),
        Tool.from_function(
            download_video,
            name="download_video",
            title="Download a finished video",
            annotations=ToolAnnotations(
                read_only_hint=False,
                destructive_hint=False,
                idempotent_hint=True,
                open_world_hint=True,
            ),
        ),
        Tool.from_function(
            list_video_tasks,
            name="list_video_tasks",
            title="List video tasks",
            annotations=read_only,
        ),
    ]
