"""Saving a finished task's video once: in the background, under the task's save
lease across processes; then checking it on disk and looking at it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
from anyio.abc import TaskGroup

from ..catalog import models as catalog
from ..domain import Delivery
from ..errors import JournalError, StorageError
from ..metrics import Metrics
from ..results import SavedVideo
from ..store.ondisk import Changed, FileIdentity, HeldFile
from ..store.records import TaskRecord
from ..store.seam import LeaseKind, TaskStore, VideoStore, wait_for_lease
from ..upstream.answers import TaskSnapshot
from ..upstream.client import GravitexClient
from ..upstream.waiting import Clock
from ..video.work import VideoWork
from .delivery import delivery_from_answer
from .singleflight import BackgroundJobs, Job

logger = logging.getLogger(__name__)

#: Saves under way at once in one process (the others wait for a slot in the
#: background; a waiting call still gets the outcome within its bound, or the note that
#: the save goes on). Every task that finishes starts its save: under 1,000 jobs that was
#: up to 1,000 downloads at once, each holding its response, buffers and, on object
#: storage, the parts it uploads (see store/objects.py).
SAVE_SLOTS: Final = 4


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


class Saves:
    """Each task's video saved at most once at a time (in the background, under the
    task's save lease across processes), checked on disk and looked at."""

    def __init__(
        self,
        *,
        client: GravitexClient,
        journal: TaskStore,
        clock: Clock,
        output: VideoStore,
        video_work: VideoWork,
        metrics: Metrics | None = None,
        save_slots: int = SAVE_SLOTS,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._journal = journal
        self._clock = clock
        self._output = output
        self.video_work = video_work
        self._jobs: BackgroundJobs[SavedVideo] = BackgroundJobs()
        # One per process: the users' views (for_user) share it.
        self._slots = anyio.CapacityLimiter(save_slots)
        self._save_names: dict[str, str | None] = {}  # filename asked of each running save

    @property
    def output(self) -> VideoStore:
        """The video store saves go to."""
        return self._output

    def for_user(self, journal: TaskStore, output: VideoStore) -> Saves:
        """These saves for one user's stores (the running saves still shared per task)."""
        view = copy.copy(self)
        view._journal, view._output = journal, output
        return view

    def attach(self, group: TaskGroup | None) -> None:
        """Run saves in ``group`` (the server's lifespan); ``None`` when it ends."""
        self._jobs.attach(group)

    def running(self, task_id: str) -> Job[SavedVideo] | None:
        """The save of ``task_id`` running now, if any."""
        return self._jobs.running(task_id)

    def statistics(self) -> anyio.CapacityLimiterStatistics:
        """How many saves are under way (``borrowed_tokens``) and wait for a slot
        (``tasks_waiting``)."""
        return self._slots.statistics()

    def pending(self, task_id: str) -> Job[SavedVideo] | None:
        """The save of ``task_id`` running, or one that failed with nobody waiting (once)."""
        return self._jobs.pending(task_id)

    async def save_once(
        self,
        task_id: str,
        *,
        delivery: Delivery | None,
        snapshot: TaskSnapshot,
        filename: str | None,
    ) -> SavedVideo:
        """Download the finished task's video and journal where it went, at most once at
        a time per task: in the background (it outlives the caller's bound), and under the
        task's save lease so another server sharing the store does not save it too. A
        caller joining a running save gets its file (whatever ``filename`` it was given)."""

        async def save() -> SavedVideo:
            self._save_names[task_id] = filename
            try:
                async with contextlib.AsyncExitStack() as held:
                    # A slot, then the lease: a lease is held only by a save under way
                    # (another process with a free slot takes the next task meanwhile),
                    # and no lease holder here waits for a slot that a save waiting for
                    # another process's lease holds.
                    async with self._slots:
                        lease = await wait_for_lease(
                            self._journal, task_id, LeaseKind.SAVE, clock=self._clock
                        )
                        held.push_async_callback(lease.release)
                        saved, identity = await self._fetch(
                            task_id, delivery=delivery, snapshot=snapshot, filename=filename
                        )
                    # Looked at with the slot free, under the lease (one contact sheet).
                    return await self.seen(task_id, saved, identity)
            finally:
                self._save_names.pop(task_id, None)

        job = await self._jobs.join(task_id, save)
        return await job.wait()

    async def _fetch(
        self,
        task_id: str,
        *,
        delivery: Delivery | None,
        snapshot: TaskSnapshot,
        filename: str | None,
    ) -> tuple[SavedVideo, FileIdentity | None]:
        """Under the task's save lease: the video another process saved meanwhile, else
        downloaded now and journalled; with its identity."""
        # The save pipeline: loaded by the first save.
        from ..upstream.downloads import download_stored, saved_video

        if filename is None:
            # Another process may have saved it while this one waited.
            found = await self.on_disk(await self._journal.get(task_id))
            if found.saved is not None:
                return found.saved, found.identity
        try:
            stored = await download_stored(
                self._client,
                task_id=task_id,
                delivery=delivery or delivery_from_answer(snapshot),
                url=snapshot.url,
                output=self._output,
                filename=filename,
            )
        except Exception as exc:
            self.count_failure(exc, "save")
            raise
        if self._metrics is not None:
            self._metrics.saves.labels("saved").inc()
            self._metrics.saved_bytes.inc(stored.size_bytes)
        identity = stored.identity
        # Journalled before the lease goes: the next holder finds the file.
        try:
            path, size, sha = stored.location, stored.size_bytes, stored.sha256
            await self._journal.record_download(
                task_id,
                path=path,
                size_bytes=size,
                sha256=sha,
                identity=None if identity is None else identity.text(),
            )
        except JournalError:
            logger.exception("could not record the download of task %s", task_id)
        logger.info("saved task %s to %s (%d bytes)", task_id, path, size)
        return saved_video(stored), identity

    def count_failure(self, exc: BaseException, operation: str) -> None:
        """Count a save that failed (``operation`` "save") or a saved file that could not
        be opened ("open"); a storage error also by what was being done."""
        if self._metrics is None:
            return
        if operation == "save":
            self._metrics.saves.labels("failed").inc()
        if isinstance(exc, StorageError):
            self._metrics.storage_errors.labels(operation).inc()

    def so_far(self, task_id: str) -> str:
        """``", N bytes so far"`` for a running save; ``""`` when nothing is written yet."""
        if task_id not in self._save_names:
            return ""
        size = self._output.bytes_so_far(self._save_names[task_id], default_stem=task_id)
        return "" if size is None else f", {size} bytes so far"

    async def seen(
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
        from .looks import Seen, look_at  # PyAV's probe and sheet: loaded by the first look

        def look() -> Seen:
            try:
                found = self.open_saved(saved.location, saved, identity)
            except StorageError as exc:
                self.count_failure(exc, "open")
                return Seen(None, None, [f"Could not look at the saved video: {exc}"])
            if not isinstance(found, HeldFile):
                why = found.sentence() if found else f"{saved.location} is gone."
                return Seen(None, None, [f"Could not look at the saved video: {why}"])
            with found:
                return look_at(found, asked, picked_size=picked, stills=self._output)

        with anyio.CancelScope(shield=True):
            seen = await self.video_work.run(look)
        return saved.model_copy(
            update={"probe": seen.probe, "preview": seen.preview, "notes": seen.notes}
        )

    def open_saved(
        self, path: Path | str, saved: SavedVideo, identity: FileIdentity | None
    ) -> HeldFile | Changed | None:
        return self._output.open_checked(
            path, size=saved.size_bytes, sha256=saved.sha256, recorded=identity
        )

    async def check_saved(
        self, record: TaskRecord | None, *, keep: bool = False
    ) -> HeldFile | Changed | None:
        """The file the journal names for ``record``, opened and verified (a changed
        identity with the same bytes is journalled, so the next check is cheap); closed
        again unless ``keep``. ``None`` when nothing was saved or the file is gone."""
        saved = saved_of(record)
        if record is None or saved is None:
            return None
        recorded = FileIdentity.parse(record.saved_identity)
        try:
            found = await anyio.to_thread.run_sync(self.open_saved, saved.location, saved, recorded)
        except StorageError as exc:  # the folder itself changed: nothing in it is trusted
            self.count_failure(exc, "open")
            return Changed(Path(saved.location), f"cannot be checked: {exc}")
        if isinstance(found, HeldFile):
            if found.identity != recorded:
                try:
                    await self._journal.record_identity(
                        record.local_id, path=found.location, identity=found.identity.text()
                    )
                except JournalError:
                    logger.exception("could not record the identity of %s", found.path)
            if not keep:
                found.close()
        return found

    async def on_disk(self, record: TaskRecord | None) -> OnDisk:
        """The saved video of ``record`` when it is still the one saved; else why not."""
        found = await self.check_saved(record)
        if isinstance(found, HeldFile):
            return OnDisk(saved=saved_of(record), identity=found.identity)
        return OnDisk(changed=found)


def path_and_uri(location: str) -> tuple[str | None, str]:
    """A recorded location as results give it: an object has no local path, only its
    ``s3://`` URI; a local file has both."""
    if location.startswith("s3://"):
        return None, location
    return str(Path(location)), Path(location).as_uri()


def saved_of(record: TaskRecord | None) -> SavedVideo | None:
    """The saved video ``record`` names (unchecked: see :meth:`Saves.on_disk`)."""
    if record is None or not (
        record.saved_path and record.sha256 and record.size_bytes is not None
    ):
        return None
    path, uri = path_and_uri(record.saved_path)
    return SavedVideo(
        path=path,
        uri=uri,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        mime_type="video/mp4",
    )
