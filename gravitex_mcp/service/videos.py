"""What the tools do, without MCP: submit, wait, download, list.

The tool layer turns MCP calls into these methods and their results (or
:class:`~gravitex_mcp.errors.GravitexError`) back into MCP results. Everything
here is testable with an injected client transport and clock. ``VideoService`` is
the facade over the concerns: ``generate``, ``follow`` (a task's status and
download), ``saves`` (saving once, checking on disk, looking) and ``listing``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from ..errors import GravitexError, StorageError
from ..request.arguments import GenerateVideoInput, VideoArguments
from ..results import (
    CheckVideoTaskResult,
    DownloadVideoResult,
    ExtractFramesResult,
    GenerateVideoResult,
    TaskSummary,
)
from ..settings import Settings
from ..store.journal import Journal
from ..store.ondisk import HeldFile
from ..store.storage import OutputDir
from ..upstream.client import GravitexClient
from ..upstream.waiting import Clock, PollSchedule, SystemClock
from ..video.frames import FramePosition
from ..video.probe import ProbeError
from ..video.work import VideoWork, shared_video_work
from .follow import DOWNLOAD_BOUND_SECONDS, FOLLOW_GRACE_SECONDS, Follow, ProgressFn, TaskCheckError
from .generate import Generate, Submission
from .listing import list_tasks
from .saves import Saves

if TYPE_CHECKING:
    from ..request.prepare import PreparedRequest

__all__ = [
    "DOWNLOAD_BOUND_SECONDS",
    "FOLLOW_GRACE_SECONDS",
    "FramesError",
    "ProgressFn",
    "Submission",
    "TaskCheckError",
    "VideoService",
]

logger = logging.getLogger(__name__)


class FramesError(GravitexError):
    """The saved video could not be decoded into frames."""


class VideoService:
    """The server's operations over one upstream client and one journal."""

    def __init__(
        self,
        *,
        settings: Settings,
        client: GravitexClient,
        journal: Journal,
        clock: Clock | None = None,
        schedule: PollSchedule | None = None,
        download_bound: float = DOWNLOAD_BOUND_SECONDS,
        output: OutputDir | None = None,
        video_work: VideoWork | None = None,
    ) -> None:
        """``output`` (tests) replaces the output folder's writer, e.g. with a full disk."""
        self._settings = settings
        # Decoding (looks, frames, joins) is bounded by the cores, shared by every session.
        self.video_work = video_work or shared_video_work()
        self._journal = journal
        clock = clock or SystemClock()
        # Held from start-up: a folder swapped for a symlink later is refused.
        self._output = output or OutputDir(settings.output_dir)
        try:
            self._output.ensure()
        except StorageError as exc:  # reported again by the first download
            logger.warning("%s", exc)
        self._saves = Saves(
            settings=settings,
            client=client,
            journal=journal,
            clock=clock,
            output=self._output,
            video_work=self.video_work,
        )
        self._follower = Follow(
            client=client,
            journal=journal,
            clock=clock,
            schedule=schedule or PollSchedule(),
            saves=self._saves,
            download_bound=download_bound,
        )
        self._generate = Generate(
            settings=settings,
            client=client,
            journal=journal,
            clock=clock,
            saves=self._saves,
            follower=self._follower,
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[VideoService]:
        """Run saves in the background while inside (the server's lifespan);
        leaving cancels the ones still running (their temp files go with them)."""
        async with anyio.create_task_group() as group:
            self._saves.attach(group)
            try:
                yield self
            finally:
                self._saves.attach(None)
                group.cancel_scope.cancel()

    @property
    def settings(self) -> Settings:
        """The settings the service runs with (output folder, input folders, ...)."""
        return self._settings

    @property
    def output(self) -> OutputDir:
        """The output folder, held since start-up (every saved file goes through it)."""
        return self._output

    async def generate(
        self, request: GenerateVideoInput, progress: ProgressFn | None = None
    ) -> GenerateVideoResult:
        """Validate, translate and (unless ``dry_run``) submit; then wait and download."""
        return await self._generate.generate(request, progress)

    async def prepare(self, args: VideoArguments) -> PreparedRequest:
        """Check ``args`` and build the upstream body (InvalidArgumentsError if refused)."""
        return await self._generate.prepare(args)

    async def submit(
        self, prepared: PreparedRequest, *, idempotency_key: str | None = None
    ) -> Submission:
        """Journal and send ``prepared``; with a key already used, find its task instead."""
        return await self._generate.submit(prepared, idempotency_key=idempotency_key)

    async def follow_submission(
        self,
        submission: Submission,
        *,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None = None,
    ) -> GenerateVideoResult:
        """Wait at most ``wait_seconds`` for a submitted task (and save it if asked)."""
        return await self._generate.follow_submission(
            submission, wait_seconds=wait_seconds, download=download, progress=progress
        )

    async def check(
        self,
        task_id: str,
        *,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None = None,
    ) -> CheckVideoTaskResult:
        """The task's status after waiting at most ``wait_seconds``; download when asked."""
        return await self._follower.check(
            task_id, wait_seconds=wait_seconds, download=download, progress=progress
        )

    async def download(self, task_id: str, *, filename: str | None) -> DownloadVideoResult:
        """Save the finished video of ``task_id`` under the output directory (bounded;
        a longer save goes on in the background)."""
        return await self._follower.download(task_id, filename=filename)

    async def held_video(self, task_id: str) -> HeldFile:
        """The task's saved video, checked and open (the caller closes it)."""
        return await self._follower.held_video(task_id)

    async def extract_frames(
        self, task_id: str, at: list[float | FramePosition]
    ) -> tuple[ExtractFramesResult, list[bytes]]:
        """Frames of the task's saved video as PNG files, and the PNGs to show (scaled
        down where large); a finished task not yet saved is downloaded first."""
        from ..video.seeing import extract

        with await self.held_video(task_id) as video:
            try:
                frames = await self.video_work.run(lambda: extract(video, at))
            except ProbeError as exc:
                raise FramesError(
                    f"Could not take frames from the saved video of task {task_id!r}: {exc}"
                ) from exc
        result = ExtractFramesResult(
            task_id=task_id, video_path=str(video.path), frames=[f.frame for f in frames]
        )
        return result, [f.shown_png for f in frames]

    async def list_tasks(self, *, limit: int, status: str | None) -> list[TaskSummary]:
        """Tasks from the local journal, newest first."""
        return await list_tasks(self._journal, limit=limit, status=status)
