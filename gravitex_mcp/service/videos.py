"""What the tools do, without MCP: submit, wait, download, list.

The tool layer turns MCP calls into these methods and their results (or
:class:`~gravitex_mcp.errors.GravitexError`) back into MCP results. Everything
here is testable with an injected client transport and clock. ``VideoService`` is
the facade over the concerns: ``generate``, ``follow`` (a task's status and
download), ``saves`` (saving once, checking on disk, looking) and ``listing``.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from ..domain import LOCAL_USER, user_folder
from ..errors import GravitexError
from ..metrics import Metrics
from ..results import ExtractFramesResult, TaskSummary, Usage
from ..settings import Settings
from ..store.seam import TaskStore, VideoStore
from ..upstream.client import GravitexClient
from ..upstream.waiting import Clock, PollSchedule, SystemClock
from ..video.frames import FramePosition
from ..video.probe import ProbeError
from ..video.work import VideoWork, shared_video_work
from .follow import (
    DOWNLOAD_BOUND_SECONDS,
    FOLLOW_GRACE_SECONDS,
    Follow,
    TaskCheckError,
    TaskOutcome,
)
from .generate import Generate, Submission
from .listing import list_tasks
from .progress import ProgressFn
from .saves import SAVE_SLOTS, Saves

__all__ = [
    "DOWNLOAD_BOUND_SECONDS",
    "FOLLOW_GRACE_SECONDS",
    "FramesError",
    "ProgressFn",
    "Submission",
    "TaskCheckError",
    "TaskOutcome",
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
        journal: TaskStore,
        output: VideoStore,
        clock: Clock | None = None,
        schedule: PollSchedule | None = None,
        download_bound: float = DOWNLOAD_BOUND_SECONDS,
        video_work: VideoWork | None = None,
        metrics: Metrics | None = None,
        save_slots: int = SAVE_SLOTS,
    ) -> None:
        """``journal`` and ``output``: the task and video stores (the composition root
        picks them); ``metrics`` counts saves and storage errors; ``save_slots`` videos
        download at once."""
        self._settings = settings
        #: who this service works for (acting_for); the local user by default
        self.user_id = LOCAL_USER
        # Decoding (looks, frames, joins) is bounded by the cores, shared by every session.
        self.video_work = video_work or shared_video_work()
        self._journal = journal
        self._client = client
        clock = clock or SystemClock()
        self._output = output
        self._saves = Saves(
            client=client,
            journal=journal,
            clock=clock,
            output=self._output,
            video_work=self.video_work,
            metrics=metrics,
            save_slots=save_slots,
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
        # The operations, each defined (and documented) by the concern that owns it.
        self.generate = self._generate.generate
        self.prepare = self._generate.prepare
        self.submit = self._generate.submit
        self._bind()

    def _bind(self) -> None:
        """Point the operations at the current concerns (again in each user's view)."""
        self.generate = self._generate.generate
        self.prepare = self._generate.prepare
        self.submit = self._generate.submit
        self.reserve = self._generate.reserve
        self.follow_submission = self._generate.follow_submission
        self.check = self._follower.check
        self.waiting = self._follower.waiting
        self.download = self._follower.download
        self.held_video = self._follower.held_video

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

    def acting_for(
        self,
        user_id: str,
        upstream_key: str | None,
        *,
        storage_name: str | None = None,
        budget: float | None = None,
    ) -> VideoService:
        """This service working for ``user_id``, from here on in the current call: what
        the call sends upstream (submits, polls, and saves that go on after it returns)
        is paid with ``upstream_key``, or the server's key when None (the client keeps
        it in the call's context only: ``GravitexClient.pay_with``).

        The view holds ``user_id``'s task store (``TaskStore.for_user``: every task,
        key, listing and reservation is theirs) and the video store of
        ``storage_name`` (their folder; default ``user_id``), reads their own folder as
        input, and submits within ``budget`` seconds of video per UTC day (None: the
        server's GRAVITEX_BUDGET_SECONDS_PER_DAY)."""
        self._client.pay_with(upstream_key)
        if budget is None:
            budget = self._settings.budget_seconds_per_day
        storage = storage_name or user_id
        view = copy.copy(self)
        view.user_id = user_id
        view._journal = self._journal.for_user(user_id)
        view._output = self._output.for_user(storage)
        view._saves = self._saves.for_user(view._journal, view._output)
        view._follower = self._follower.for_user(view._journal, view._saves)
        view._generate = self._generate.for_user(
            view._journal,
            view._saves,
            view._follower,
            saved_dir=user_folder(self._settings.output_dir, storage),
            budget=budget,
        )
        view._bind()
        return view

    async def usage(self) -> Usage:
        """The caller's day so far: {user, seconds_today, budget_seconds_per_day,
        tasks_today} (UTC)."""
        used = await self._journal.usage()
        budget = self._generate.budget
        return Usage(
            user=self.user_id,
            seconds_today=round(used.seconds_today, 3),
            budget_seconds_per_day=None if budget is None else round(budget, 3),
            tasks_today=used.tasks_today,
        )

    def save_statistics(self) -> anyio.CapacityLimiterStatistics:
        """How many saves are under way and wait for a slot (every user's view shares them)."""
        return self._saves.statistics()

    @property
    def settings(self) -> Settings:
        """The settings the service runs with (output folder, input folders, ...)."""
        return self._settings

    @property
    def tasks(self) -> TaskStore:
        """The caller's task store (``acting_for``'s user's view)."""
        return self._journal

    @property
    def output(self) -> VideoStore:
        """The output folder, held since start-up (every saved file goes through it)."""
        return self._output

    async def extract_frames(
        self, task_id: str, at: list[float | FramePosition]
    ) -> tuple[ExtractFramesResult, list[bytes]]:
        """Frames of the task's saved video as PNG files, and the PNGs to show (scaled
        down where large); a finished task not yet saved is downloaded first."""
        from .looks import extract

        with await self.held_video(task_id) as video:
            try:
                frames = await self.video_work.run(lambda: extract(video, at, stills=self._output))
            except ProbeError as exc:
                raise FramesError(
                    f"Could not take frames from the saved video of task {task_id!r}: {exc}"
                ) from exc
        result = ExtractFramesResult(
            task_id=task_id, video_path=str(video.location), frames=[f.frame for f in frames]
        )
        return result, [f.shown_png for f in frames]

    async def list_tasks(self, *, limit: int, status: str | None) -> list[TaskSummary]:
        """Tasks from the local journal, newest first."""
        return await list_tasks(self._journal, limit=limit, status=status)
