"""The service's outcomes as MCP results: each rendered once, by one path.

A tool that saves a video (generate_video, each job of generate_videos,
check_video_task, download_video, join_videos) gets the same blocks from
:meth:`Rendering.render`: a text, the result as ``structuredContent``, a
``resource_link`` to the file (its ``media_url`` over HTTP) and the contact sheet
as an ``image`` block unless ``preview: false``. The media link is minted here,
once per saved video, so the text, the link block and the structured result agree.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
from mcp.types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel

from ..domain import TaskStatus
from ..errors import StorageError
from ..redact import clip, redact_data_urls
from ..results import (
    DownloadVideoResult,
    GenerateVideoResult,
    GenerateVideosResult,
    JoinVideosResult,
    ListVideoTasksResult,
    SavedVideo,
    TaskResult,
)
from ..store.media_links import MediaLinks
from ..store.seam import VideoStore

logger = logging.getLogger(__name__)

#: Largest contact sheet put in a result (they are made near 150 KiB).
MAX_SHOWN_SHEET_BYTES = 8 * 1024 * 1024

#: What a tool returns: the result of one task, of a saved file, or of a batch.
Outcome = TaskResult | DownloadVideoResult | JoinVideosResult | GenerateVideosResult
_Linkable = TypeVar("_Linkable", bound=BaseModel)


def plain(text: str, result: BaseModel, *images: ContentBlock) -> CallToolResult:
    """A result that saves no video: ``text``, any ``images``, ``result`` as structured."""
    return CallToolResult(
        content=[TextContent(type="text", text=text), *images],
        structured_content=result.model_dump(mode="json"),
    )


def image(data: bytes, mime_type: str) -> ImageContent:
    return ImageContent(type="image", data=base64.b64encode(data).decode(), mime_type=mime_type)


@dataclass(frozen=True)
class Rendering:
    """How one call's results are shown: its media links and the transport it came on."""

    links: MediaLinks | None
    request_host: str | None
    over_http: bool
    #: the video store: an object store signs its own links and holds the sheets
    videos: VideoStore | None = None

    async def render(self, result: Outcome, *, preview: bool = True) -> CallToolResult:
        """``result`` as the client sees it: text, structured, the file's link and sheet."""
        if isinstance(result, GenerateVideosResult):
            jobs = [await self._linked(job) for job in result.jobs]
            result = result.model_copy(update={"jobs": jobs})
            saved = [job.saved_video() for job in jobs]
            # Partly done is not an error: the result says which jobs to send again.
            is_error = not any(job.task_id for job in jobs)
            text = _batch_text(result)
        else:
            result = await self._linked(result)
            saved = [result.saved_video()]
            is_error = isinstance(result, TaskResult) and (
                result.status == TaskStatus.FAILED or result.download_error is not None
            )
            text = _text(result)
        content: list[ContentBlock] = [TextContent(type="text", text=text)]
        for video in saved:
            if video is not None:
                content.append(self._video_link(video))
                content.extend(await _preview_block(video, preview, self.videos))
        return CallToolResult(
            content=content,
            structured_content=result.model_dump(mode="json"),
            is_error=is_error,
        )

    async def _linked(self, result: _Linkable) -> _Linkable:
        """``result`` with the ``media_url`` of the video it saved, when links are on."""
        video = result.saved_video() if isinstance(result, TaskResult | SavedVideo) else None
        if self.links is None or video is None:
            return result
        # An object store serves its own objects: a presigned GET (signed locally).
        direct = self.videos.media_url(video.location) if self.videos is not None else None
        if direct is not None:
            return result.model_copy(update={"media_url": direct})
        if video.path is None:  # an object the store gives no link to: none minted here
            return result
        links, host, path = self.links, self.request_host, Path(video.path)
        await links.ready()
        # Minting stats the file: keep file-system calls off the event loop.
        url = await anyio.to_thread.run_sync(lambda: links.url_for(path, request_host=host))
        return result if url is None else result.model_copy(update={"media_url": url})

    def _video_link(self, video: SavedVideo) -> ResourceLink:
        # A file:// path on the server is useless to a client on another machine.
        uri = video.media_url if self.over_http and video.media_url else video.uri
        return ResourceLink(
            type="resource_link",
            uri=uri,
            name=Path(video.path).name if video.path else video.uri.rsplit("/", 1)[-1],
            title="Generated video",
            description=f"mp4, {video.size_bytes} bytes, sha256 {video.sha256[:12]}…",
            mime_type=video.mime_type,
            size=video.size_bytes,
        )


async def _preview_block(
    video: SavedVideo, wanted: bool, videos: VideoStore | None = None
) -> list[ContentBlock]:
    """The contact sheet as an image block, when wanted and readable."""
    if not wanted or video.preview is None:
        return []
    from ..store.ondisk import read_regular

    where = video.preview.path
    if videos is not None and videos.owns(where):  # an object: read from the store
        try:
            held = await anyio.to_thread.run_sync(
                lambda: videos.read_saved(where, limit=MAX_SHOWN_SHEET_BYTES)
            )
        except StorageError as exc:
            logger.warning("could not read %s for the result: %s", where, exc)
            return []
        return [] if held is None else [image(held, "image/jpeg")]

    sheet = Path(video.preview.path)
    try:
        # Never through a symlink swapped in under the sheet's name.
        data = await anyio.to_thread.run_sync(
            lambda: read_regular(sheet, limit=MAX_SHOWN_SHEET_BYTES)
        )
    except OSError as exc:
        logger.warning("could not read %s for the result: %s", sheet.name, exc)
        return []
    return [image(data, "image/jpeg")]


# --- texts ---------------------------------------------------------------------


def _text(result: TaskResult | DownloadVideoResult | JoinVideosResult) -> str:
    if isinstance(result, GenerateVideoResult) and result.dry_run:
        return _dry_run_text(result)
    if isinstance(result, TaskResult):
        return _task_text(result)
    if isinstance(result, DownloadVideoResult):
        verb = "Already saved at" if result.reused else "Saved to"
        first = f"{verb} {result.location} ({result.size_bytes} bytes, sha256 {result.sha256})."
    else:
        how = "stream copy" if result.method == "stream_copy" else "re-encoded"
        first = (
            f"Joined {len(result.task_ids)} clips ({how}) into {result.location} "
            f"({result.size_bytes} bytes)."
        )
    lines = [first, *_seen_lines(result), *(f"Note: {note}" for note in result.notes)]
    if result.media_url:
        lines.append(f"Watch it at {result.media_url}")
    return "\n".join(lines)


def _dry_run_text(result: GenerateVideoResult) -> str:
    notes = "".join(f"Note: {note}\n" for note in result.notes)
    # An image travels as a data URL of megabytes: the text shows its digest
    # (payload in structuredContent keeps the exact body).
    shown = redact_data_urls(result.payload)
    digests = " (data URLs shown by their digest)" if shown != result.payload else ""
    return f"{notes}Dry run, nothing sent. Upstream body{digests}:\n" + json.dumps(
        shown, indent=2, ensure_ascii=False
    )


def _task_text(result: TaskResult) -> str:
    lines = [
        f"Task {result.task_id}: {result.status}" + (f" ({result.model})" if result.model else "")
    ]
    if result.error is not None:
        code = f" [{result.error.code}]" if result.error.code is not None else ""
        lines.append(f"Error{code}: {result.error.message}")
    if (video := result.saved_video()) is not None:
        lines.append(f"Saved to {video.location} ({video.size_bytes} bytes).")
        lines.extend(_seen_lines(video))
        if video.media_url:
            lines.append(f"Watch it at {video.media_url}")
    if result.download_error is not None:
        lines.append(f"Saving failed: {result.download_error}")
    lines.extend(f"Note: {note}" for note in result.notes)
    if result.next_step:
        lines.append(result.next_step)
    return "\n".join(lines)


def _batch_text(result: GenerateVideosResult) -> str:
    lines = [
        f"jobs[{job.index}]: " + _task_text(job).replace("\n", "\n  ")
        if job.task_id
        else f"jobs[{job.index}]: {job.status}: {job.submit_error}"
        for job in result.jobs
    ]
    return "\n".join([*lines, result.next_step])


def _seen_lines(video: SavedVideo) -> list[str]:
    """The probe and contact sheet lines of a saved video."""
    lines = []
    if (probe := video.probe) is not None:
        fps = f", {probe.fps:g} fps" if probe.fps else ""
        audio = "with audio" if probe.has_audio else "no audio"
        lines.append(
            f"Probe: {probe.duration_seconds:.1f} s, {probe.width}x{probe.height}{fps}, "
            f"{probe.video_codec}, {audio}."
        )
    if video.preview is not None:
        lines.append(f"Contact sheet: {video.preview.path}")
    return lines


def listing_text(result: ListVideoTasksResult) -> str:
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
