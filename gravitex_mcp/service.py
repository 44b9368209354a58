"""What the tools do, without MCP: submit, wait, download, list.

The tool layer turns MCP calls into these methods and their results (or
:class:`~gravitex_mcp.errors.GravitexError`) back into MCP results. Everything
here is testable with an injected client transport and clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from . import catalog
from .arguments import GenerateVideoInput
from .client import GravitexClient, TaskSnapshot
from .domain import Family, TaskStatus
from .downloads import SavedVideo, download_video
from .errors import (
    APIError,
    DownloadError,
    GravitexError,
    JournalError,
    StorageError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskNotFinishedError,
)
from .frames import FramePosition
from .journal import Journal, TaskRecord
from .prepare import prepare_request
from .probe import ProbeError
from .results import (
    CheckVideoTaskResult,
    DownloadVideoResult,
    ExtractFramesResult,
    GenerateVideoResult,
    SavedVideoInfo,
    TaskErrorInfo,
    TaskSummary,
)
from .seeing import extract, look_at
from .settings import Settings
from .waiting import Clock, PollSchedule, SystemClock, wait_for_task

logger = logging.getLogger(__name__)

#: Time a wait may run past ``wait_seconds``: the last poll and the download. With
#: the default wait it keeps the whole call under 50 s.
FOLLOW_GRACE_SECONDS = 12.0

#: progress(progress, total, message): monotonic progress notifications.
ProgressFn = Callable[[float, float | None, str], Awaitable[None]]


class TaskCheckError(GravitexError):
    """A task was created, but following it failed; the message names the task id."""


class FramesError(GravitexError):
    """The saved video could not be decoded into frames."""


@dataclass(slots=True)
class _ProgressTracker:
    """Keeps reported progress strictly increasing, as the protocol requires."""

    report: ProgressFn | None
    total: float
    last: float = -1.0

    async def __call__(self, snapshot: TaskSnapshot, elapsed: float) -> None:
        if self.report is None:
            return
        value = max(elapsed, self.last + 0.001)
        self.last = value
        message = f"status: {snapshot.status.value}, waited {elapsed:.0f}s of {self.total:.0f}s"
        await self.report(value, self.total, message)


def _saved_info(saved: SavedVideo) -> SavedVideoInfo:
    return SavedVideoInfo(
        path=str(saved.path),
        uri=saved.uri,
        size_bytes=saved.size_bytes,
        sha256=saved.sha256,
        mime_type=saved.mime_type,
    )


def _next_step(task_id: str, status: TaskStatus, *, downloaded: bool) -> str:
    if status is TaskStatus.SUCCEEDED:
        if downloaded:
            return "The video is saved; its path is in this result."
        return f"The video is ready: call download_video with task_id {task_id!r} to save it."
    if status is TaskStatus.FAILED:
        return (
            "The task failed upstream; change the prompt or arguments as the error says "
            "and call generate_video again."
        )
    return (
        f"The video is not ready yet (status {status.value}; generation usually takes "
        f"1-5 minutes). Call check_video_task with task_id {task_id!r} (and download: true) "
        "to keep waiting."
    )


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
    ) -> None:
        self._settings = settings
        self._client = client
        self._journal = journal
        self._clock: Clock = clock or SystemClock()
        self._schedule = schedule or PollSchedule()

    # --- generate -------------------------------------------------------------

    async def generate(
        self, request: GenerateVideoInput, progress: ProgressFn | None = None
    ) -> GenerateVideoResult:
        """Validate, translate and (unless ``dry_run``) submit; then wait and download."""
        args = request.video_arguments()
        # Reading local images is file I/O: keep it off the event loop.
        prepared = await anyio.to_thread.run_sync(
            lambda: prepare_request(args, input_dirs=self._settings.media_input_dirs)
        )
        if request.dry_run:
            return GenerateVideoResult(
                task_id="",
                status="dry_run",
                model=args.model,
                dry_run=True,
                payload=prepared.body,
                notes=list(prepared.notes),
                next_step="Nothing was sent. Call generate_video without dry_run to submit.",
            )
        local_id = await self._journal.begin_submission(
            model=prepared.spec.id,
            family=prepared.spec.family.value,
            arguments=prepared.journal_arguments,
        )
        # Once the POST may have left, its answer must reach the journal and the agent:
        # a client cancel here would otherwise lose the id of a paid task. The client's
        # own time-outs bound this.
        with anyio.CancelScope(shield=True):
            submitted = await self._submit(local_id, prepared.body)
        logger.info("submitted task %s (%s)", submitted.task_id, prepared.spec.id)
        result = await self._follow(
            submitted.task_id,
            model=prepared.spec.id,
            family=prepared.spec.family,
            wait_seconds=request.wait_seconds,
            download=request.download,
            progress=progress,
            initial=submitted,
            on_disk=None,
        )
        return GenerateVideoResult.model_validate(
            {**result.model_dump(), "notes": [*prepared.notes, *result.notes]}
        )

    async def _submit(self, local_id: str, body: dict[str, Any]) -> TaskSnapshot:
        try:
            submitted = await self._client.submit(body)
        except SubmitOutcomeUnknownError as exc:
            await self._journal.fail_submission(local_id, message=str(exc), outcome_unknown=True)
            raise
        except APIError as exc:
            await self._journal.fail_submission(local_id, message=str(exc), outcome_unknown=False)
            raise
        try:
            await self._journal.complete_submission(
                local_id, task_id=submitted.task_id, status=submitted.status
            )
        except JournalError:
            # The task exists and is paid for: its id must reach the agent even if
            # the journal cannot record it.
            logger.exception("could not record task %s in the journal", submitted.task_id)
        return submitted

    # --- check ------------------------------------------------------------------

    async def check(
        self,
        task_id: str,
        *,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None = None,
    ) -> CheckVideoTaskResult:
        """The task's status after waiting at most ``wait_seconds``; download when asked."""
        record = await self._journal.get(task_id)
        model = record.model if record else None
        family = _family_of(record)
        return await self._follow(
            task_id,
            model=model,
            family=family,
            wait_seconds=wait_seconds,
            download=download,
            progress=progress,
            initial=None,
            on_disk=_existing_download(record) if record else None,
        )

    async def _follow(
        self,
        task_id: str,
        *,
        model: str | None,
        family: Family | None,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None,
        initial: TaskSnapshot | None,
        on_disk: SavedVideoInfo | None,
    ) -> CheckVideoTaskResult:
        tracker = _ProgressTracker(progress, float(wait_seconds))
        latest = initial

        async def on_update(snapshot: TaskSnapshot, elapsed: float) -> None:
            nonlocal latest
            latest = snapshot
            await self._record(snapshot)
            await tracker(snapshot, elapsed)

        saved: SavedVideoInfo | None = None
        download_error: str | None = None
        start = self._clock.monotonic()
        # One deadline for polls (with their retries) and the download: a slow or
        # rate-limiting API must not hold the call past what the client will wait.
        with self._clock.deadline(wait_seconds + FOLLOW_GRACE_SECONDS) as scope:
            if initial is None or wait_seconds > 0:
                try:
                    await wait_for_task(
                        lambda: self._client.query(task_id),
                        wait_seconds=wait_seconds,
                        clock=self._clock,
                        on_update=on_update,
                        schedule=self._schedule,
                    )
                except APIError as exc:
                    raise TaskCheckError(
                        f"Task {task_id!r} exists, but checking its status failed: {exc}. "
                        f"Call check_video_task with task_id {task_id!r} again later."
                    ) from exc
            if latest is not None and latest.status is TaskStatus.SUCCEEDED and download:
                try:
                    # A video already saved for this task is not downloaded again.
                    saved = (
                        await self._seen(task_id, on_disk)
                        if on_disk
                        else await self._save(task_id, family=family, url=latest.url, filename=None)
                    )
                except (DownloadError, StorageError, APIError) as exc:
                    # The task succeeded and stays downloadable: keep its id in the result.
                    download_error = str(exc)
        elapsed = self._clock.monotonic() - start
        if latest is None:
            raise TaskCheckError(
                f"No status for task {task_id!r} within {wait_seconds:g} s (the API is slow "
                f"or rate-limiting). Call check_video_task with task_id {task_id!r} again later."
            )
        if scope.cancelled_caught:
            logger.info("wait for task %s handed over after %.1f s", task_id, elapsed)
        error = (
            TaskErrorInfo(code=latest.error.code, message=latest.error.message)
            if latest.error
            else None
        )
        next_step = _next_step(task_id, latest.status, downloaded=saved is not None)
        if download_error is not None:
            next_step = (
                f"The video is ready but saving it failed: {download_error} "
                f"Call download_video with task_id {task_id!r} to try again."
            )
        return CheckVideoTaskResult(
            task_id=task_id,
            status=latest.status,
            model=model,
            url=latest.url,
            error=error,
            elapsed_seconds=round(elapsed, 3),
            next_step=next_step,
            video=saved,
            download_error=download_error,
            **(saved.model_dump() if saved else {}),
        )

    # --- download -----------------------------------------------------------------

    async def download(self, task_id: str, *, filename: str | None) -> DownloadVideoResult:
        """Save the finished video of ``task_id`` under the output directory."""
        record = await self._journal.get(task_id)
        if filename is None and record is not None:
            reused = _existing_download(record)
            if reused is not None:
                reused = await self._seen(task_id, reused)
                return DownloadVideoResult(task_id=task_id, reused=True, **reused.model_dump())
        snapshot = await self._client.query(task_id)
        await self._record(snapshot)
        if snapshot.status is TaskStatus.FAILED:
            message = snapshot.error.message if snapshot.error else "no reason given"
            raise TaskFailedError(
                f"Task {task_id!r} failed, so there is no video: {message}",
                code=snapshot.error.code if snapshot.error else None,
                upstream_message=message,
            )
        if snapshot.status is not TaskStatus.SUCCEEDED:
            raise TaskNotFinishedError(
                f"Task {task_id!r} is {snapshot.status.value}, not finished yet. "
                f"Call check_video_task with task_id {task_id!r} and download: true to wait for it."
            )
        saved = await self._save(
            task_id, family=_family_of(record), url=snapshot.url, filename=filename
        )
        return DownloadVideoResult(task_id=task_id, **saved.model_dump())

    async def _save(
        self, task_id: str, *, family: Family | None, url: str | None, filename: str | None
    ) -> SavedVideoInfo:
        """Download the video of finished task ``task_id`` and journal where it went."""
        # A task this server did not submit has no journal entry: a result URL means a
        # URL family; no URL means Sora's download endpoint.
        if family is None:
            family = Family.SORA if url is None else Family.VEO
        saved = await download_video(
            self._client,
            task_id=task_id,
            family=family,
            url=url,
            output_dir=self._settings.output_dir,
            filename=filename,
        )
        try:
            await self._journal.record_download(
                task_id, path=saved.path, size_bytes=saved.size_bytes, sha256=saved.sha256
            )
        except JournalError:
            logger.exception("could not record the download of task %s", task_id)
        logger.info("saved task %s to %s (%d bytes)", task_id, saved.path, saved.size_bytes)
        return await self._seen(task_id, _saved_info(saved))

    async def _seen(self, task_id: str, saved: SavedVideoInfo) -> SavedVideoInfo:
        """``saved`` with its probe, contact sheet and asked-versus-found notes.

        Every saved video (new or reused) passes here. Looking never fails the save:
        a video that cannot be read gets a note saying why.
        """
        try:
            record = await self._journal.get(task_id)
        except JournalError:
            logger.exception("could not read the journal entry of task %s", task_id)
            record = None
        asked = dict(record.arguments) if record is not None else {}
        # PyAV decoding and the sheet's write are blocking: keep them off the event loop.
        # Shielded: the video is already saved, and a deadline that ran out meanwhile
        # must not drop it from this result (the look takes a second or two at most).
        with anyio.CancelScope(shield=True):
            seen = await anyio.to_thread.run_sync(lambda: look_at(Path(saved.path), asked))
        return saved.model_copy(
            update={"probe": seen.probe, "preview": seen.preview, "notes": seen.notes}
        )

    # --- frames -------------------------------------------------------------------

    async def extract_frames(
        self, task_id: str, at: list[float | FramePosition]
    ) -> tuple[ExtractFramesResult, list[bytes]]:
        """Frames of the task's saved video as PNG files, and the PNGs to show (scaled
        down where large); a finished task not yet saved is downloaded first."""
        record = await self._journal.get(task_id)
        saved = _existing_download(record) if record is not None else None
        if saved is None:
            downloaded = await self.download(task_id, filename=None)
            video = Path(downloaded.path)
        else:
            video = Path(saved.path)
        try:
            frames = await anyio.to_thread.run_sync(lambda: extract(video, at))
        except ProbeError as exc:
            raise FramesError(
                f"Could not take frames from the saved video of task {task_id!r}: {exc}"
            ) from exc
        result = ExtractFramesResult(
            task_id=task_id, video_path=str(video), frames=[f.frame for f in frames]
        )
        return result, [f.shown_png for f in frames]

    async def _record(self, snapshot: TaskSnapshot) -> None:
        try:
            await self._journal.record_status(
                snapshot.task_id,
                status=snapshot.status,
                raw_status=snapshot.raw_status,
                url=snapshot.url,
                error_code=None if snapshot.error is None else _str_or_none(snapshot.error.code),
                error_message=None if snapshot.error is None else snapshot.error.message,
            )
        except JournalError:
            # A journal that cannot be written must not end a wait the agent needs.
            logger.exception("could not record the status of task %s", snapshot.task_id)

    # --- journal ------------------------------------------------------------------

    async def list_tasks(self, *, limit: int, status: str | None) -> list[TaskSummary]:
        """Tasks from the local journal, newest first."""
        records = await self._journal.list(limit=limit, status=status)
        return [summarize(r) for r in records]


def summarize(record: TaskRecord) -> TaskSummary:
    """The public view of one journal entry (signed URLs without their query string)."""
    public = record.public_dict()
    error = None
    if record.error_message:
        error = TaskErrorInfo(code=record.error_code, message=record.error_message)
    return TaskSummary(
        task_id=record.task_id,
        model=record.model,
        family=record.family,
        status=record.status,
        created_at=public["created_at"],
        updated_at=public["updated_at"],
        url=public.get("url"),
        error=error,
        path=record.saved_path,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        arguments=dict(record.arguments),
    )


def _family_of(record: TaskRecord | None) -> Family | None:
    if record is None:
        return None
    try:
        return catalog.get_model(record.model).family
    except GravitexError:
        try:
            return Family(record.family)
        except ValueError:
            return None


def _existing_download(record: TaskRecord) -> SavedVideoInfo | None:
    if not (record.saved_path and record.sha256 and record.size_bytes is not None):
        return None
    path = Path(record.saved_path)
    try:
        if not path.is_file() or path.stat().st_size != record.size_bytes:
            return None
    except OSError:
        return None
    return SavedVideoInfo(
        path=str(path),
        uri=path.as_uri(),
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        mime_type="video/mp4",
    )


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)
