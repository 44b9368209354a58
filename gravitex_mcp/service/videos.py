"""What the tools do, without MCP: submit, wait, download, list.

The tool layer turns MCP calls into these methods and their results (or
:class:`~gravitex_mcp.errors.GravitexError`) back into MCP results. Everything
here is testable with an injected client transport and clock.
"""

from __future__ import annotations

import copy
import glob
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..catalog import models as catalog
from ..catalog.models import ModelSpec
from ..domain import Delivery, Family, TaskStatus
from ..errors import (
    APIError,
    DownloadError,
    DownloadInProgressError,
    GravitexError,
    JournalError,
    NotFoundError,
    StorageError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskNotFinishedError,
    UnknownTaskError,
    URLExpiredError,
)
from ..redact import clip
from ..request.arguments import GenerateVideoInput, VideoArguments
from ..results import (
    CheckVideoTaskResult,
    DownloadVideoResult,
    ExtractFramesResult,
    GenerateVideoResult,
    SavedVideo,
    TaskErrorInfo,
    TaskSummary,
)
from ..settings import Settings
from ..store.journal import Journal, TaskRecord
from ..store.leftovers import TEMP_SUFFIX
from ..store.ondisk import Changed, FileIdentity, HeldFile, SavedFileChangedError, open_saved
from ..store.storage import OutputDir, safe_filename
from ..store.tasklock import TaskLock, TaskLocks
from ..upstream.client import GravitexClient, TaskSnapshot
from ..upstream.waiting import Clock, PollSchedule, SystemClock
from ..video.frames import FramePosition
from ..video.probe import ProbeError
from ..video.work import VideoWork, shared_video_work
from .singleflight import BackgroundJobs, JobStoppedError, SharedPolls

if TYPE_CHECKING:  # checking and preparing a request: loaded by the first generate
    from ..request.prepare import PreparedRequest

logger = logging.getLogger(__name__)

#: Time a wait may run past ``wait_seconds``: the last poll and the download. With
#: the default wait it keeps the whole call under 50 s.
FOLLOW_GRACE_SECONDS = 12.0

#: The most a download_video call (its query and the save) takes; a longer save
#: goes on in the background and a later call picks it up. Under the ~60 s at
#: which clients cut a call.
DOWNLOAD_BOUND_SECONDS = 45.0

#: How often a save waiting for another process's save of the same task looks again.
TASK_LOCK_RETRY_SECONDS = 1.0

#: How long a save waits for another process's save of the same task (whose own
#: retries and time-outs end well before) before calling that process stuck.
TASK_LOCK_PATIENCE_SECONDS = 600.0

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


async def _ignore_update(snapshot: TaskSnapshot, elapsed: float) -> None:
    """A wait nobody reports progress of."""


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


@dataclass(frozen=True, slots=True)
class Submission:
    """A task submitted by this call, or found again by its idempotency key."""

    task_id: str
    spec: ModelSpec
    initial: TaskSnapshot | None
    """The submit's answer; ``None`` for a task found again (its status is queried)."""
    notes: tuple[str, ...] = ()
    replayed: bool = False
    on_disk: OnDisk | None = None


@dataclass(frozen=True, slots=True)
class OnDisk:
    """What the file the journal names for a task turned out to be, once checked."""

    saved: SavedVideo | None = None
    """The saved video, verified to be the one saved: reuse it."""
    identity: FileIdentity | None = None
    """Its identity now (what a later look checks it by cheaply)."""
    changed: Changed | None = None
    """Something else is there now: a fresh copy is to be saved."""

    def note(self) -> str | None:
        """Why a fresh copy was saved (None when nothing had changed)."""
        if self.changed is None:
            return None
        return (
            f"{self.changed.sentence()} A fresh copy was downloaded; the changed file was "
            "left as it is."
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
        download_bound: float = DOWNLOAD_BOUND_SECONDS,
        output: OutputDir | None = None,
        video_work: VideoWork | None = None,
    ) -> None:
        """``output`` (tests) replaces the output folder's writer, e.g. with a full disk."""
        self._settings = settings
        #: who this service works for (acting_for); the local user by default
        self.user_id = "local"
        # Decoding (looks, frames, joins) is bounded by the cores, shared by every session.
        self.video_work = video_work or shared_video_work()
        self._client = client
        self._journal = journal
        self._clock: Clock = clock or SystemClock()
        self._schedule = schedule or PollSchedule()
        self._download_bound = download_bound
        # One poll loop and one save per task, however many calls wait on it.
        self._polls = SharedPolls(self._clock, self._schedule)
        self._saves: BackgroundJobs[SavedVideo] = BackgroundJobs()
        self._task_locks = TaskLocks(settings.state_dir)
        self._save_names: dict[str, str | None] = {}  # filename asked of each running save
        # Held from start-up: a folder swapped for a symlink later is refused.
        self._output = output or OutputDir(settings.output_dir)
        try:
            self._output.ensure()
        except StorageError as exc:  # reported again by the first download
            logger.warning("%s", exc)

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

    def acting_for(self, user_id: str, upstream_key: str | None) -> VideoService:
        """This service working for ``user_id``: what it sends upstream (submits, polls,
        saves, also those that go on after the call returns) is paid with
        ``upstream_key``, or the server's key when None. The key is held only by the
        returned view, in memory, while the work holding it runs. (Scoping the journal
        per user comes with the task store's seam.)"""
        view = copy.copy(self)
        view.user_id = user_id
        if upstream_key is not None:
            view._client = self._client.with_key(upstream_key, what="The caller's Gravitex key")
        return view

    @property
    def settings(self) -> Settings:
        """The settings the service runs with (output folder, input folders, ...)."""
        return self._settings

    @property
    def output(self) -> OutputDir:
        """The output folder, held since start-up (every saved file goes through it)."""
        return self._output

    # --- generate -------------------------------------------------------------

    async def generate(
        self, request: GenerateVideoInput, progress: ProgressFn | None = None
    ) -> GenerateVideoResult:
        """Validate, translate and (unless ``dry_run``) submit; then wait and download."""
        prepared = await self.prepare(request)
        if request.dry_run:
            return GenerateVideoResult(
                task_id="",
                status="dry_run",
                model=prepared.spec.id,
                dry_run=True,
                payload=prepared.body,
                notes=list(prepared.notes),
                next_step="Nothing was sent. Call generate_video without dry_run to submit.",
            )
        submission = await self.submit(prepared, idempotency_key=request.idempotency_key)
        return await self.follow_submission(
            submission,
            wait_seconds=request.wait_seconds,
            download=request.download,
            progress=progress,
        )

    async def prepare(self, args: VideoArguments) -> PreparedRequest:
        """Check ``args`` and build the upstream body (InvalidArgumentsError if refused)."""
        from ..request.prepare import prepare_request

        # Reading local images is file I/O: keep it off the event loop.
        return await anyio.to_thread.run_sync(
            lambda: prepare_request(
                args,
                input_dirs=self._settings.input_dirs,
                saved_dir=self._settings.output_dir,
            )
        )

    async def submit(
        self, prepared: PreparedRequest, *, idempotency_key: str | None = None
    ) -> Submission:
        """Journal and send ``prepared``; with a key already used, find its task instead."""
        from .idempotency import arguments_digest, claim_or_find, repeat_notes, replay_note

        # The body may hold ~27 MB of inline images: hash it off the event loop.
        digest = await anyio.to_thread.run_sync(arguments_digest, prepared)
        notes = list(prepared.notes)
        if idempotency_key is not None:
            found = await claim_or_find(
                self._journal, idempotency_key, prepared, digest=digest, clock=self._clock
            )
            if isinstance(found, TaskRecord) and found.task_id is not None:
                return Submission(
                    task_id=found.task_id,
                    spec=prepared.spec,
                    initial=None,
                    notes=(*notes, replay_note(idempotency_key, found)),
                    replayed=True,
                    on_disk=await self._on_disk(found),
                )
            assert isinstance(found, str)  # claim_or_find: a local id or a task's record
            local_id = found
        else:
            try:
                notes.extend(await repeat_notes(self._journal, digest))
            except JournalError:
                logger.exception("could not look for earlier submissions of these arguments")
            local_id = await self._journal.begin_submission(
                model=prepared.spec.id,
                family=prepared.spec.family.value,
                arguments=prepared.journal_arguments,
                arguments_hash=digest,
            )
        # Once the POST may have left, its answer must reach the journal and the agent:
        # a client cancel here would otherwise lose the id of a paid task. The client's
        # own time-outs bound this.
        with anyio.CancelScope(shield=True):
            submitted = await self._submit(local_id, prepared.body)
        logger.info("submitted task %s (%s)", submitted.task_id, prepared.spec.id)
        return Submission(
            task_id=submitted.task_id, spec=prepared.spec, initial=submitted, notes=tuple(notes)
        )

    async def follow_submission(
        self,
        submission: Submission,
        *,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None = None,
    ) -> GenerateVideoResult:
        """Wait at most ``wait_seconds`` for a submitted task (and save it if asked)."""
        result = await self._follow(
            submission.task_id,
            model=submission.spec.id,
            delivery=submission.spec.delivery,
            wait_seconds=wait_seconds,
            download=download,
            progress=progress,
            initial=submission.initial,
            on_disk=submission.on_disk,
        )
        return GenerateVideoResult.model_validate(
            {
                **result.model_dump(),
                "notes": [*submission.notes, *result.notes],
                "replayed": submission.replayed,
            }
        )

    async def _submit(self, local_id: str, body: dict[str, Any]) -> TaskSnapshot:
        try:
            submitted = await self._client.submit(body)
        except SubmitOutcomeUnknownError as exc:
            await self._journal.fail_submission(local_id, message=str(exc), outcome_unknown=True)
            raise
        except GravitexError as exc:  # refused (an API error), or never sent
            await self._journal.fail_submission(local_id, message=str(exc), outcome_unknown=False)
            raise
        except BaseException as exc:
            # Not an answer (a bug, the server stopping): the POST may have gone out.
            # Recording it ends the submit's lease, so its key is not held forever.
            try:
                with anyio.CancelScope(shield=True):
                    await self._journal.fail_submission(
                        local_id,
                        message=f"The submit ended without an answer ({type(exc).__name__}); "
                        "a task may exist upstream.",
                        outcome_unknown=True,
                    )
            except JournalError:  # the lease is ended all the same; exc is what matters
                logger.exception("could not record the submit's end in the journal")
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
        return await self._follow(
            task_id,
            model=model,
            delivery=_delivery_of(record),
            wait_seconds=wait_seconds,
            download=download,
            progress=progress,
            initial=None,
            on_disk=await self._on_disk(record),
        )

    async def _follow(
        self,
        task_id: str,
        *,
        model: str | None,
        delivery: Delivery | None,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None,
        initial: TaskSnapshot | None,
        on_disk: OnDisk | None,
    ) -> CheckVideoTaskResult:
        tracker = _ProgressTracker(progress, float(wait_seconds))
        latest = initial

        async def on_update(snapshot: TaskSnapshot, elapsed: float) -> None:
            nonlocal latest
            latest = snapshot
            await tracker(snapshot, elapsed)

        saved: SavedVideo | None = None
        download_error: str | None = None
        download_retry = True
        start = self._clock.monotonic()
        # One deadline for polls (with their retries) and the download: a slow or
        # rate-limiting API must not hold the call past what the client will wait.
        with self._clock.deadline(wait_seconds + FOLLOW_GRACE_SECONDS) as scope:
            if initial is None or wait_seconds > 0:
                try:
                    # Concurrent waits on this task share one poll loop; each poll
                    # is journalled once.
                    await self._polls.wait(
                        task_id,
                        lambda: self._client.query(task_id),
                        wait_seconds=wait_seconds,
                        on_poll=self._record,
                        on_update=on_update,
                    )
                except APIError as exc:
                    raise await self._check_failed(task_id, exc) from exc
            if latest is not None and latest.status is TaskStatus.SUCCEEDED and download:
                try:
                    # A video already saved for this task is not downloaded again.
                    saved = (
                        await self._seen(task_id, on_disk.saved, on_disk.identity)
                        # A save still running (looking at its video) is joined instead.
                        if on_disk and on_disk.saved and self._saves.running(task_id) is None
                        else await self._save_once(
                            task_id, delivery=delivery, snapshot=latest, filename=None
                        )
                    )
                except (DownloadError, StorageError, APIError, JobStoppedError) as exc:
                    # The task succeeded and stays downloadable: keep its id in the result.
                    download_error = str(exc)
                    if on_disk is not None and on_disk.changed is not None:
                        download_error = f"{on_disk.changed.sentence()} {download_error}"
                    download_retry = _waiting_helps(exc)
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
        done = latest.status is TaskStatus.SUCCEEDED
        if saved is None and on_disk is not None and on_disk.saved is not None and done:
            # Telling the agent to "save it" again would make a second copy.
            next_step = (
                f"The video is already saved at {on_disk.saved.path}. Call download_video "
                f"with task_id {task_id!r} to get its link and contact sheet again."
            )
        elif saved is None and on_disk is not None and on_disk.changed is not None and done:
            next_step = (
                f"{on_disk.changed.sentence()} Call download_video with task_id {task_id!r} "
                "to save a fresh copy."
            )
        if saved is not None and on_disk is not None and (note := on_disk.note()):
            saved = saved.model_copy(update={"notes": [note, *saved.notes]})
        if download_error is not None:
            next_step = f"The video is ready but saving it failed: {download_error}"
            if download_retry:
                next_step += f" Call download_video with task_id {task_id!r} to try again."
        elif download and saved is None and self._saves.running(task_id) is not None:
            next_step = (
                f"The video is ready and is being saved in the background"
                f"{self._so_far(task_id)}. Call "
                f"download_video (or check_video_task with download: true) with task_id "
                f"{task_id!r} again to get its path."
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
        """Save the finished video of ``task_id`` under the output directory.

        Bounded like the waits: a save that takes longer goes on in the background
        (:class:`DownloadInProgressError` says so) and a later call picks it up.
        """
        result: DownloadVideoResult | None = None
        with self._clock.deadline(self._download_bound):
            result = await self._download(task_id, filename=filename)
        if result is not None:
            return result
        if self._saves.running(task_id) is not None:
            so_far = self._so_far(task_id)
            raise DownloadInProgressError(
                f"The video of task {task_id!r} is still downloading (for more than "
                f"{self._download_bound:g} s{so_far}); it goes on in the background. Call "
                f"download_video with task_id {task_id!r} again in a minute to get its path."
            )
        raise TaskCheckError(
            f"No answer about task {task_id!r} within {self._download_bound:g} s (the API is "
            f"slow or rate-limiting). Call download_video with task_id {task_id!r} again later."
        )

    async def _download(self, task_id: str, *, filename: str | None) -> DownloadVideoResult:
        pending = self._saves.pending(task_id)
        if pending is not None:
            # A save of this task is under way (started by an earlier call): join it
            # rather than fetch the same video twice (or hear how it failed). Before
            # the journal: a save is journalled before it has looked at its video.
            saved = await pending.wait()
            return DownloadVideoResult(task_id=task_id, **saved.model_dump())
        record = await self._journal.get(task_id)
        on_disk = OnDisk()
        if filename is None:
            on_disk = await self._on_disk(record)
            if on_disk.saved is not None:
                reused = await self._seen(task_id, on_disk.saved, on_disk.identity)
                return DownloadVideoResult(task_id=task_id, reused=True, **reused.model_dump())
        try:
            result = await self._download_afresh(task_id, record, filename=filename)
        except GravitexError as exc:
            if on_disk.changed is None:
                raise
            raise SavedFileChangedError(
                f"{on_disk.changed.sentence()} Saving a fresh copy failed: {exc} Restore the "
                "file, or make the video again (generate_video) if the task is gone upstream."
            ) from exc
        note = on_disk.note()
        if note is not None:
            result = result.model_copy(update={"notes": [note, *result.notes]})
        return result

    async def _download_afresh(
        self, task_id: str, record: TaskRecord | None, *, filename: str | None
    ) -> DownloadVideoResult:
        try:
            # One look, shared with any wait already polling this task (each answer
            # journalled once), and its errors told as check_video_task tells them.
            snapshot = await self._polls.wait(
                task_id,
                lambda: self._client.query(task_id),
                wait_seconds=0,
                on_poll=self._record,
                on_update=_ignore_update,
            )
        except APIError as exc:
            raise await self._check_failed(task_id, exc) from exc
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
        saved = await self._save_once(
            task_id, delivery=_delivery_of(record), snapshot=snapshot, filename=filename
        )
        return DownloadVideoResult(task_id=task_id, **saved.model_dump())

    async def _save_once(
        self,
        task_id: str,
        *,
        delivery: Delivery | None,
        snapshot: TaskSnapshot,
        filename: str | None,
    ) -> SavedVideo:
        """Download the finished task's video and journal where it went, at most once at
        a time per task: in the background (it outlives the caller's bound), and under the
        task's lock file so another server sharing the folders does not save it too. A
        caller joining a running save gets its file (whatever ``filename`` it was given)."""

        async def save() -> SavedVideo:
            # The save pipeline: loaded by the first save.
            from ..upstream.downloads import download_stored, saved_video

            self._save_names[task_id] = filename
            lock = await self._lock_task(task_id)
            try:
                if filename is None:
                    # Another process may have saved it while this one waited.
                    found = await self._on_disk(await self._journal.get(task_id))
                    if found.saved is not None:
                        return await self._seen(task_id, found.saved, found.identity)
                stored = await download_stored(
                    self._client,
                    task_id=task_id,
                    delivery=delivery or _delivery_from_answer(snapshot),
                    url=snapshot.url,
                    output_dir=self._output,
                    filename=filename,
                )
                saved = saved_video(stored)
                identity = stored.identity
                # Journalled before the lock goes: the next holder finds the file.
                try:
                    path, size, sha = stored.path, stored.size_bytes, stored.sha256
                    await self._journal.record_download(
                        task_id,
                        path=path,
                        size_bytes=size,
                        sha256=sha,
                        identity=None if identity is None else identity.text(),
                    )
                except JournalError:
                    logger.exception("could not record the download of task %s", task_id)
                logger.info("saved task %s to %s (%d bytes)", task_id, saved.path, size)
                return await self._seen(task_id, saved, identity)
            finally:
                lock.release()
                self._save_names.pop(task_id, None)

        job = await self._saves.join(task_id, save)
        return await job.wait()

    def _so_far(self, task_id: str) -> str:
        """``", N bytes so far"`` for a running save, from its temp file's size; ``""``
        when that cannot be seen (cheap: one directory listing, no I/O on the data)."""
        if task_id not in self._save_names:
            return ""
        name = safe_filename(self._save_names[task_id], default_stem=task_id)
        pattern = f".{glob.escape(name.removesuffix('.mp4'))}.*{TEMP_SUFFIX}"
        try:
            sizes = [p.stat().st_size for p in self._settings.output_dir.glob(pattern)]
        except OSError:
            return ""
        return f", {max(sizes)} bytes so far" if sizes else ""

    async def _lock_task(self, task_id: str) -> TaskLock:
        logged = False
        give_up = self._clock.monotonic() + TASK_LOCK_PATIENCE_SECONDS
        while True:
            try:
                # open + flock + pid write: file calls, kept off the event loop
                held = await anyio.to_thread.run_sync(self._task_locks.try_acquire, task_id)
            except OSError as exc:
                raise StorageError(
                    f"Cannot lock task {task_id!r} for its download in the state folder "
                    f"{self._settings.state_dir}: {exc.strerror or exc}"
                ) from exc
            if isinstance(held, TaskLock):
                return held
            if self._clock.monotonic() >= give_up:
                raise StorageError(
                    f"Another gravitex-mcp process (pid {held or 'unknown'}) has held the "
                    f"download of task {task_id!r} for over {TASK_LOCK_PATIENCE_SECONDS:g} s; "
                    "it looks stuck. Stop it, then call download_video again."
                )
            if not logged:
                logger.info(
                    "task %s is being saved by another process (pid %s); waiting for it",
                    task_id,
                    held or "unknown",
                )
                logged = True
            await self._clock.sleep(TASK_LOCK_RETRY_SECONDS)

    async def _check_failed(self, task_id: str, exc: APIError) -> GravitexError:
        """The error for a failed status check: an unknown task says so (and whether
        the journal knows it); retry advice only where waiting can help."""
        if isinstance(exc, NotFoundError):
            try:
                record = await self._journal.get(task_id)
            except JournalError:
                record = None
            return _unknown_task(task_id, record)
        message = f"Checking the status of task {task_id!r} failed: {str(exc).rstrip('.')}."
        if _waiting_helps(exc):
            message += f" Call check_video_task with task_id {task_id!r} again later."
        return TaskCheckError(message)

    async def _seen(
        self, task_id: str, saved: SavedVideo, identity: FileIdentity | None
    ) -> SavedVideo:
        """``saved`` with its probe, contact sheet and asked-versus-found notes.

        Every saved video (new or reused) passes here. Looking never fails the save:
        a video that cannot be read gets a note saying why. What is looked at is the
        file checked to be ``saved`` (by ``identity``, else its sha256), read through
        the descriptor that was checked.
        """
        try:
            record = await self._journal.get(task_id)
        except JournalError:
            logger.exception("could not read the journal entry of task %s", task_id)
            record = None
        asked = dict(record.arguments) if record is not None else {}
        # The model's own size table says what a resolution means (Wan's 720p 1:1 is
        # 960x960), where it has one.
        spec = catalog.CATALOG.get(record.model) if record is not None else None
        prompt = asked.get("prompt")
        if spec is not None and isinstance(prompt, str):
            # Settings written in the prompt (Seedance's --dur 10) were asked for too.
            from ..catalog.markers import prompt_settings

            asked = {**prompt_settings(prompt, spec.family), **asked}
        picked = catalog.derived_size(spec, asked) if spec is not None else None
        # PyAV decoding and the sheet's write are blocking: keep them off the event loop.
        # Shielded: the video is already saved, and a deadline that ran out meanwhile
        # must not drop it from this result (the look takes a second or two at most).
        from ..video.seeing import Seen, look_at  # PyAV's probe and sheet: loaded by the first look

        def look() -> Seen:
            try:
                found = self._open_saved(Path(saved.path), saved, identity)
            except StorageError as exc:
                return Seen(None, None, [f"Could not look at the saved video: {exc}"])
            if not isinstance(found, HeldFile):
                why = found.sentence() if found else f"{saved.path} is gone."
                return Seen(None, None, [f"Could not look at the saved video: {why}"])
            with found:
                return look_at(found, asked, picked_size=picked)

        with anyio.CancelScope(shield=True):
            seen = await self.video_work.run(look)
        return saved.model_copy(
            update={"probe": seen.probe, "preview": seen.preview, "notes": seen.notes}
        )

    # --- frames -------------------------------------------------------------------

    async def held_video(self, task_id: str) -> HeldFile:
        """The task's saved video, checked and open (the caller closes it); a finished
        task not yet saved, or whose saved file changed, is downloaded first. For callers
        that read the file, not a look at it (frames, joins): they read it through the
        returned descriptor, never through its path again."""
        found = await self._check_saved(await self._journal.get(task_id), keep=True)
        if isinstance(found, HeldFile):
            return found
        saved = await self.download(task_id, filename=None)
        record = await self._journal.get(task_id)
        identity = None if record is None else FileIdentity.parse(record.saved_identity)
        try:
            fresh = await anyio.to_thread.run_sync(
                self._open_saved, Path(saved.path), saved, identity
            )
        except StorageError as exc:
            fresh = Changed(Path(saved.path), f"cannot be checked: {exc}")
        if isinstance(fresh, HeldFile):
            return fresh
        why = fresh.sentence() if fresh else f"{saved.path} disappeared."
        raise SavedFileChangedError(
            f"The video of task {task_id!r} changed on disk right after it was saved: {why} "
            "Something else is writing to the output folder; stop it and call again."
        )

    def _open_saved(
        self, path: Path, saved: SavedVideo, identity: FileIdentity | None
    ) -> HeldFile | Changed | None:
        return open_saved(
            self._output, path, size=saved.size_bytes, sha256=saved.sha256, recorded=identity
        )

    async def _check_saved(
        self, record: TaskRecord | None, *, keep: bool = False
    ) -> HeldFile | Changed | None:
        """The file the journal names for ``record``, opened and verified (a changed
        identity with the same bytes is journalled, so the next check is cheap); closed
        again unless ``keep``. ``None`` when nothing was saved or the file is gone."""
        saved = _saved_of(record)
        if record is None or saved is None:
            return None
        recorded = FileIdentity.parse(record.saved_identity)
        try:
            found = await anyio.to_thread.run_sync(
                self._open_saved, Path(saved.path), saved, recorded
            )
        except StorageError as exc:  # the folder itself changed: nothing in it is trusted
            return Changed(Path(saved.path), f"cannot be checked: {exc}")
        if isinstance(found, HeldFile):
            if found.identity != recorded:
                try:
                    await self._journal.record_identity(
                        record.local_id, path=found.path, identity=found.identity.text()
                    )
                except JournalError:
                    logger.exception("could not record the identity of %s", found.path)
            if not keep:
                found.close()
        return found

    async def _on_disk(self, record: TaskRecord | None) -> OnDisk:
        """The saved video of ``record`` when it is still the one saved; else why not."""
        found = await self._check_saved(record)
        if isinstance(found, HeldFile):
            return OnDisk(saved=_saved_of(record), identity=found.identity)
        return OnDisk(changed=found)

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

    async def _record(self, snapshot: TaskSnapshot) -> None:
        try:
            await self._journal.record_status(
                snapshot.task_id,
                status=snapshot.status,
                raw_status=snapshot.raw_status,
                url=snapshot.url,
                error_code=None if snapshot.error is None else snapshot.error.code,
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


#: Longest text value (a prompt, say) shown in a listing; the whole entry stays in
#: the gravitex://tasks/{task_id} resource. Keeps every listing small, whatever was asked.
LISTED_TEXT_LIMIT = 200

#: Most list items (reference images, say) shown per argument in a listing.
LISTED_ITEMS_LIMIT = 10


def _clipped(value: Any) -> Any:
    if isinstance(value, str):
        return clip(value, LISTED_TEXT_LIMIT)
    if isinstance(value, list):
        return [_clipped(item) for item in value[:LISTED_ITEMS_LIMIT]]
    if isinstance(value, dict):
        return {clip(str(k), LISTED_TEXT_LIMIT): _clipped(v) for k, v in value.items()}
    return value


def summarize(record: TaskRecord) -> TaskSummary:
    """The public view of one journal entry (signed URLs without their query string),
    long texts clipped (see :data:`LISTED_TEXT_LIMIT`)."""
    public = record.public_dict()
    error = None
    if record.error_message:
        error = TaskErrorInfo(code=record.error_code, message=clip(record.error_message, 1000))
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
        arguments=_clipped(dict(record.arguments)),
    )


def _delivery_of(record: TaskRecord | None) -> Delivery | None:
    """Where a journalled task's video comes from: its model's (or else family's) entry."""
    if record is None:
        return None
    try:
        return catalog.get_model(record.model).delivery
    except GravitexError:
        try:
            family = Family(record.family)
        except ValueError:
            return None
        return next((m.delivery for m in catalog.models(family)), None)


def _delivery_from_answer(snapshot: TaskSnapshot) -> Delivery:
    """For a task the journal does not know: the model its query answer names, if known;
    else its video URL, and without one the download endpoint (the only other source)."""
    model = snapshot.raw.get("model")
    if isinstance(model, str):
        try:
            return catalog.get_model(model.strip()).delivery
        except GravitexError:
            pass
    return Delivery.TASK_URL if snapshot.url else Delivery.DOWNLOAD_ENDPOINT


def _saved_of(record: TaskRecord | None) -> SavedVideo | None:
    """The saved video ``record`` names (unchecked: see :meth:`VideoService._on_disk`)."""
    if record is None or not (
        record.saved_path and record.sha256 and record.size_bytes is not None
    ):
        return None
    path = Path(record.saved_path)
    return SavedVideo(
        path=str(path),
        uri=path.as_uri(),
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        mime_type="video/mp4",
    )


def _waiting_helps(exc: BaseException) -> bool:
    """Whether trying again later can succeed: not after the API refused the key,
    the request or the id (401/403/400/404); yes after a fault, a time-out, a rate
    limit, an expired link (a new query renews it) or a local failure."""
    if isinstance(exc, APIError):
        return exc.retryable or isinstance(exc, URLExpiredError)
    return True


def _unknown_task(task_id: str, record: TaskRecord | None) -> UnknownTaskError:
    if record is None:
        local = (
            "The local journal has no task with this id either: check the id "
            "(list_video_tasks lists the tasks this server submitted)."
        )
    else:
        local = (
            f"The local journal knows it (model {record.model}, submitted "
            f"{record.created_at:%Y-%m-%d %H:%M} UTC, last seen {record.status.value}): it was "
            "probably made with another API key or gateway, or has expired upstream."
        )
    return UnknownTaskError(f"Task {task_id!r} is unknown to the Gravitex API (HTTP 404). {local}")
