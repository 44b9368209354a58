"""Following a task: polling it within a budget (with progress), its status, and
its video downloaded when asked.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ..domain import LOCAL_USER, Delivery, TaskStatus
from ..errors import (
    FIND_TASKS,
    APIError,
    DownloadError,
    DownloadInProgressError,
    GravitexError,
    JournalError,
    NotFoundError,
    StorageError,
    TaskFailedError,
    TaskNotFinishedError,
    UnknownTaskError,
    URLExpiredError,
)
from ..results import (
    CheckVideoTaskResult,
    DownloadVideoResult,
    SavedVideo,
    TaskErrorInfo,
    TaskResult,
)
from ..store.ondisk import Changed, FileIdentity, HeldFile, SavedFileChangedError
from ..store.records import TaskRecord
from ..store.seam import TaskStore
from ..upstream.answers import TaskSnapshot
from ..upstream.client import GravitexClient
from ..upstream.waiting import Answer, Clock, PollSchedule
from .delivery import delivery_of
from .progress import Progress, ProgressFn
from .saves import OnDisk, Saves
from .singleflight import JobStoppedError, SharedPolls

logger = logging.getLogger(__name__)

_Result = TypeVar("_Result", bound=TaskResult)


#: Time a wait may run past ``wait_seconds``: the last poll and the download. With
#: the default wait it keeps the whole call under 50 s.
FOLLOW_GRACE_SECONDS = 12.0

#: The most a download_video call (its query and the save) takes; a longer save
#: goes on in the background and a later call picks it up. Under the ~60 s at
#: which clients cut a call.
DOWNLOAD_BOUND_SECONDS = 45.0


class TaskCheckError(GravitexError):
    """A task was created, but following it failed; the message names the task id."""


def call_again(tool: str, task_id: str, how: str = "again later") -> str:
    """The one way a message tells the agent to call ``tool`` on ``task_id`` again."""
    return f"Call {tool} with task_id {task_id!r} {how}."


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
class TaskOutcome:
    """Where a followed task stands: what each call that follows a task (generate,
    check, a batch job) ends with, built once into that tool's result model."""

    task_id: str
    status: TaskStatus
    model: str | None
    url: str | None
    error: TaskErrorInfo | None
    elapsed_seconds: float
    next_step: str
    saved: SavedVideo | None = None
    """The video this call saved (or found saved), once."""
    download_error: str | None = None
    notes: tuple[str, ...] = ()
    """Notes of the call (the submit's), before the saved video's own."""

    def result(self, kind: type[_Result], **extra: Any) -> _Result:
        """This outcome as ``kind`` (with ``extra`` fields): the saved video's fields at
        the top level, where the contract puts them."""
        saved = self.saved.model_dump() if self.saved is not None else {}
        notes = [*self.notes, *saved.pop("notes", ())]
        return kind(
            **saved,
            task_id=self.task_id,
            status=self.status,
            model=self.model,
            url=self.url,
            error=self.error,
            elapsed_seconds=self.elapsed_seconds,
            next_step=self.next_step,
            download_error=self.download_error,
            notes=notes,
            **extra,
        )


class Follow:
    """Following a task: waits shared per task (each answer journalled once), its
    status, and its saved video."""

    def __init__(
        self,
        *,
        client: GravitexClient,
        journal: TaskStore,
        clock: Clock,
        schedule: PollSchedule,
        saves: Saves,
        download_bound: float,
    ) -> None:
        self._client = client
        self._journal = journal
        self._clock = clock
        self._saves = saves
        self._download_bound = download_bound
        # One poll loop per task, however many calls wait on it.
        self._polls = SharedPolls(clock, schedule)

    def for_user(self, journal: TaskStore, saves: Saves) -> Follow:
        """This follower for the user of ``journal`` (waits still shared per task)."""
        view = copy.copy(self)
        view._journal, view._saves = journal, saves
        return view

    def waiting(self, task_id: str) -> int:
        """How many calls of this process wait on ``task_id`` now (tests, logs)."""
        return self._polls.waiting(task_id)

    async def _own(self, task_id: str) -> TaskRecord | None:
        """The caller's record of ``task_id``. An id the store says is another user's
        is answered as one that never existed, before anything is asked upstream; so is
        any id not in a non-local user's store (the same answer, the same timing: a
        missing id is not asked upstream either). Only the local user (one user per
        server) may follow a task this store never recorded."""
        record = await self._journal.get(task_id)
        if record is not None:
            return record
        if self._journal.user_id != LOCAL_USER or await self._journal.is_foreign(task_id):
            raise no_such_task(task_id)
        return None

    async def check(
        self,
        task_id: str,
        *,
        wait_seconds: float,
        download: bool,
        progress: ProgressFn | None = None,
    ) -> CheckVideoTaskResult:
        """The task's status after waiting at most ``wait_seconds``; download when asked."""
        record = await self._own(task_id)
        model = record.model if record else None
        outcome = await self.follow(
            task_id,
            model=model,
            delivery=delivery_of(record),
            wait_seconds=wait_seconds,
            download=download,
            progress=progress,
            initial=None,
            on_disk=await self._saves.on_disk(record),
        )
        return outcome.result(CheckVideoTaskResult)

    async def follow(
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
        notes: tuple[str, ...] = (),
    ) -> TaskOutcome:
        """Wait at most ``wait_seconds`` for the task (and save it if asked): where it
        stands, and what to do next. ``notes`` come first in the result's notes."""
        stream, total = Progress(progress), float(wait_seconds)
        latest = initial
        saved: SavedVideo | None = None
        download_error: str | None = None
        download_retry = True
        start = self._clock.monotonic()
        # One deadline for polls (with their retries) and the download: a slow or
        # rate-limiting API must not hold the call past what the client will wait.
        with self._clock.deadline(wait_seconds + FOLLOW_GRACE_SECONDS) as scope:
            if initial is None or wait_seconds > 0:
                async with aclosing(self._answers(task_id, wait_seconds)) as answers:
                    async for answer in answers:
                        latest = answer.snapshot
                        waited = f"waited {answer.elapsed:.0f}s of {total:.0f}s"
                        await stream.send(
                            answer.elapsed, total, f"status: {latest.status.value}, {waited}"
                        )
            if latest is not None and latest.status is TaskStatus.SUCCEEDED and download:
                try:
                    # A video already saved for this task is not downloaded again.
                    saved = (
                        await self._saves.seen(task_id, on_disk.saved, on_disk.identity)
                        # A save still running (looking at its video) is joined instead.
                        if on_disk and on_disk.saved and self._saves.running(task_id) is None
                        else await self._saves.save_once(
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
                f"or rate-limiting). {call_again('check_video_task', task_id)}"
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
                f"The video is already saved at {on_disk.saved.location}. Call download_video "
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
                next_step += f" {call_again('download_video', task_id, 'to try again')}"
        elif download and saved is None and self._saves.running(task_id) is not None:
            next_step = (
                f"The video is ready and is being saved in the background"
                f"{self._saves.so_far(task_id)}. Call "
                f"download_video (or check_video_task with download: true) with task_id "
                f"{task_id!r} again to get its path."
            )
        return TaskOutcome(
            task_id=task_id,
            status=latest.status,
            model=model,
            url=latest.url,
            error=error,
            elapsed_seconds=round(elapsed, 3),
            next_step=next_step,
            saved=saved,
            download_error=download_error,
            notes=notes,
        )

    async def download(self, task_id: str, *, filename: str | None) -> DownloadVideoResult:
        """Save the finished video of ``task_id`` under the output directory.

        Bounded like the waits: a save that takes longer goes on in the background
        (:class:`DownloadInProgressError` says so) and a later call picks it up.
        """
        await self._own(task_id)  # before any save of it is looked for
        result: DownloadVideoResult | None = None
        with self._clock.deadline(self._download_bound):
            result = await self._download(task_id, filename=filename)
        if result is not None:
            return result
        if self._saves.running(task_id) is not None:
            so_far = self._saves.so_far(task_id)
            raise DownloadInProgressError(
                f"The video of task {task_id!r} is still downloading (for more than "
                f"{self._download_bound:g} s{so_far}); it goes on in the background. "
                f"{call_again('download_video', task_id, 'again in a minute to get its path')}"
            )
        raise TaskCheckError(
            f"No answer about task {task_id!r} within {self._download_bound:g} s (the API is "
            f"slow or rate-limiting). {call_again('download_video', task_id)}"
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
            on_disk = await self._saves.on_disk(record)
            if on_disk.saved is not None:
                reused = await self._saves.seen(task_id, on_disk.saved, on_disk.identity)
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
        # One look, shared with any wait already polling this task, and its errors
        # told as check_video_task tells them.
        async with aclosing(self._answers(task_id, 0)) as answers:
            snapshot = (await anext(answers)).snapshot
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
        saved = await self._saves.save_once(
            task_id, delivery=delivery_of(record), snapshot=snapshot, filename=filename
        )
        return DownloadVideoResult(task_id=task_id, **saved.model_dump())

    async def _answers(self, task_id: str, wait_seconds: float) -> AsyncGenerator[Answer, None]:
        """The answers about ``task_id`` within ``wait_seconds``, from one poll loop shared
        by every wait on it, in this process and in every other one sharing the task
        store; each answer journalled once (by the wait that polled it).
        A failed poll raises the error check_video_task gives."""
        answers = self._polls.follow(
            task_id,
            lambda: self._client.query(task_id),
            wait_seconds=wait_seconds,
            store=self._journal,
        )
        try:
            async with aclosing(answers):
                async for answer in answers:
                    if answer.fresh:
                        await self._record(answer.snapshot)
                    yield answer
        except APIError as exc:
            raise await self._check_failed(task_id, exc) from exc

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
            message += f" {call_again('check_video_task', task_id)}"
        return TaskCheckError(message)

    async def held_video(self, task_id: str) -> HeldFile:
        """The task's saved video, checked and open (the caller closes it); a finished
        task not yet saved, or whose saved file changed, is downloaded first. For callers
        that read the file, not a look at it (frames, joins): they read it through the
        returned descriptor, never through its path again."""
        found = await self._saves.check_saved(await self._own(task_id), keep=True)
        if isinstance(found, HeldFile):
            return found
        saved = await self.download(task_id, filename=None)
        record = await self._journal.get(task_id)
        identity = None if record is None else FileIdentity.parse(record.saved_identity)
        try:
            fresh = await anyio.to_thread.run_sync(
                self._saves.open_saved, saved.location, saved, identity
            )
        except StorageError as exc:
            self._saves.count_failure(exc, "open")
            fresh = Changed(Path(saved.location), f"cannot be checked: {exc}")
        if isinstance(fresh, HeldFile):
            return fresh
        why = fresh.sentence() if fresh else f"{saved.location} disappeared."
        raise SavedFileChangedError(
            f"The video of task {task_id!r} changed on disk right after it was saved: {why} "
            "Something else is writing to the output folder; stop it and call again."
        )

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


def _waiting_helps(exc: BaseException) -> bool:
    """Whether trying again later can succeed: not after the API refused the key,
    the request or the id (401/403/400/404); yes after a fault, a time-out, a rate
    limit, an expired link (a new query renews it) or a local failure."""
    if isinstance(exc, APIError):
        return exc.retryable or isinstance(exc, URLExpiredError)
    return True


def no_such_task(task_id: str) -> UnknownTaskError:
    """The answer for an id that is not the caller's: one that never existed and another
    user's read the same."""
    return UnknownTaskError(f"No task {task_id!r} among your tasks: check the id ({FIND_TASKS}).")


def _unknown_task(task_id: str, record: TaskRecord | None) -> UnknownTaskError:
    if record is None:
        local = f"The local journal has no task with this id either: check the id ({FIND_TASKS})."
    else:
        local = (
            f"The local journal knows it (model {record.model}, submitted "
            f"{record.created_at:%Y-%m-%d %H:%M} UTC, last seen {record.status.value}): it was "
            "probably made with another API key or gateway, or has expired upstream."
        )
    return UnknownTaskError(f"Task {task_id!r} is unknown to the Gravitex API (HTTP 404). {local}")
