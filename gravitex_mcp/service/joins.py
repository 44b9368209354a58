"""``join_videos``: the tasks' clips gathered (downloaded first where needed), joined by
``video/join.py`` into a temp file, read back, and published like every saved video.

The temp file is the video store's scratch file (a start-up sweep removes it after a
crash and leaves it alone while the join runs); the result is published through
:class:`~gravitex_mcp.store.seam.VideoStore` like every saved video (its own temp file,
fsync, sha256, no-clobber under the final name). Nothing is ever left under a final
name unless complete.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ..errors import GravitexError, InvalidArgumentsError, StorageError
from ..redact import clip
from ..results import JoinVideosResult, Preview, Probe
from ..store.ondisk import HeldFile
from ..store.seam import StoredFile, VideoStore
from ..video.join import MAX_CLIPS, MIN_CLIPS, ClipDone, ClipInfo, JoinError, JoinPlan, write_joined
from ..video.probe import ProbeError, probe_video
from ..video.source import VideoSource
from ..video.work import VideoWork, shared_video_work
from .looks import Seen, look_at

if TYPE_CHECKING:
    from .progress import ProgressFn
    from .videos import VideoService

logger = logging.getLogger(__name__)

_COPY_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class JoinedVideo:
    """A published joined video."""

    stored: StoredFile
    plan: JoinPlan
    probe: Probe
    preview: Preview | None
    #: what looking at the joined file found worth saying (e.g. no contact sheet)
    notes: list[str]


def _clip_reporter(progress: ProgressFn | None, total: int) -> ClipDone:
    """Called in the worker thread after each clip: a progress notification per clip.

    Made on the event loop: the worker thread is a video thread, not anyio's, so it
    reaches the loop through the loop's token.
    """
    done = 0
    token = anyio.lowlevel.current_token()

    def report(clip: ClipInfo) -> None:
        nonlocal done
        done += 1
        if progress is None:
            return
        send, value = progress, float(done)
        message = f"joined {done} of {total} clips ({clip.path.name})"

        async def notify() -> None:
            await send(value, float(total), message)

        anyio.from_thread.run(notify, token=token)

    return report


def _after(progress: ProgressFn, base: int) -> ProgressFn:
    """``progress`` shifted past ``base`` earlier steps, so it keeps increasing."""

    async def report(value: float, total: float | None, message: str) -> None:
        await progress(base + value, None if total is None else base + total, message)

    return report


async def _publish(tmp: Path, out: VideoStore, *, filename: str | None, stem: str) -> StoredFile:
    """Copy ``tmp`` into a writer of the video store and commit it."""
    async with (
        await anyio.open_file(tmp, "rb") as source,
        out.reserve(filename, default_stem=stem) as target,
    ):
        while chunk := await source.read(_COPY_CHUNK):
            await target.write(chunk)
        return await target.commit()


async def join_files(
    paths: Sequence[VideoSource],
    out: VideoStore,
    *,
    filename: str | None,
    default_stem: str,
    progress: ProgressFn | None = None,
    video: VideoWork | None = None,
) -> JoinedVideo:
    """Join the mp4s at ``paths`` (saved clips: held, checked files) in order and
    publish the result under ``out``.

    Raises :class:`JoinError` for clips that cannot be joined and
    :class:`~gravitex_mcp.errors.StorageError` when the disk refuses; in every case
    no file is left under a final name and the temp file is removed.
    """
    if not MIN_CLIPS <= len(paths) <= MAX_CLIPS:
        raise JoinError(f"Join {MIN_CLIPS} to {MAX_CLIPS} clips; got {len(paths)}.")
    # Decoding and encoding the clips is video work: bounded by the cores.
    work = video or shared_video_work()
    # The store's temp file: a start-up sweep removes it after a crash and leaves it
    # alone while this join runs.
    with out.scratch("join") as tmp:
        try:
            report = _clip_reporter(progress, len(paths))
            plan = await work.run(lambda: write_joined(list(paths), tmp, report))
        except OSError as exc:
            raise StorageError(
                f"Could not write the joined video in {tmp.parent}: {exc.strerror or exc}. "
                "Nothing was saved."
            ) from exc
        # Read back before it is published: a join that cannot be read is never saved.
        try:
            probe = await work.run(lambda: probe_video(tmp))
        except ProbeError as exc:
            raise JoinError(f"The joined video cannot be read back: {exc}") from exc
        stored = await _publish(tmp, out, filename=filename, stem=default_stem)
    # The contact sheet, as for every saved video (nothing was asked of a join); a
    # sheet that cannot be made is a note, the video is saved.
    seen = await work.run(lambda: _look_at_stored(out, stored))
    logger.info("joined %d clips into %s (%s)", len(paths), stored.location, plan.method)
    return JoinedVideo(
        stored=stored, plan=plan, probe=probe, preview=seen.preview, notes=seen.notes
    )


def _look_at_stored(out: VideoStore, stored: StoredFile) -> Seen:
    """:func:`~gravitex_mcp.service.looks.look_at` the published join, read through a checked
    descriptor (its identity as published), not whatever its name leads to now."""
    try:
        found = out.open_checked(
            stored.location, size=stored.size_bytes, sha256=stored.sha256, recorded=stored.identity
        )
    except StorageError as exc:
        return Seen(None, None, [f"No contact sheet: {exc}"])
    if not isinstance(found, HeldFile):
        why = found.sentence() if found else f"{stored.location} is gone."
        return Seen(None, None, [f"No contact sheet: {why}"])
    with found:
        return look_at(found, {}, stills=out)


# --- join_videos: tasks, downloaded first where needed ------------------------------------

#: Downloads at once while gathering the clips.
_PARALLEL_DOWNLOADS: Final = 4


def _unavailable(task_ids: Sequence[str], failures: Mapping[str, str]) -> str:
    """Why nothing was joined: each clip that could not be had, by its place in task_ids."""
    lines = []
    for task_id, why in failures.items():
        where = ", ".join(f"task_ids[{i}]" for i, t in enumerate(task_ids) if t == task_id)
        lines.append(f"- {where} ({json.dumps(clip(task_id, 80))}): {why}")
    count = f"{len(failures)} of {len(dict.fromkeys(task_ids))} clips"
    return f"Nothing was joined: {count} could not be had.\n" + "\n".join(lines)


async def join_tasks(
    service: VideoService,
    task_ids: Sequence[str],
    *,
    filename: str | None,
    output: VideoStore | None = None,
    progress: ProgressFn | None = None,
) -> JoinVideosResult:
    """Join the videos of ``task_ids`` in order; clips not yet saved are downloaded first.

    Raises :class:`JoinError` naming every task that could not be gathered (not
    finished, failed, download refused); nothing is joined then.
    """
    if not MIN_CLIPS <= len(task_ids) <= MAX_CLIPS:
        raise InvalidArgumentsError.about(
            "task_ids",
            f"must list {MIN_CLIPS} to {MAX_CLIPS} task ids, in the order to join; "
            f"got {len(task_ids)}",
        )
    paths: dict[str, HeldFile] = {}
    failures: dict[str, str] = {}
    limiter = anyio.CapacityLimiter(_PARALLEL_DOWNLOADS)
    unique = list(dict.fromkeys(task_ids))  # a clip used twice is fetched once

    async def gather(task_id: str) -> None:
        async with limiter:
            try:
                paths[task_id] = await service.held_video(task_id)
            except InvalidArgumentsError as exc:
                # Told under task_ids[i] below: the id's own problem, not a nested message.
                failures[task_id] = "; ".join(p.message for p in exc.problems)
                return
            except GravitexError as exc:
                failures[task_id] = str(exc)
                return
        if progress is not None:
            await progress(len(paths), None, f"{len(paths)} of {len(unique)} clips saved")

    try:
        async with anyio.create_task_group() as group:
            for task_id in unique:
                group.start_soon(gather, task_id)
        if failures:
            raise JoinError(_unavailable(task_ids, failures))
        out = output or service.output
        joined = await join_files(
            [paths[t] for t in task_ids],
            out,
            filename=filename,
            default_stem=f"joined-{task_ids[0]}-{len(task_ids)}-clips",
            progress=None if progress is None else _after(progress, len(unique)),
            video=service.video_work,
        )
    finally:
        for held in paths.values():
            held.close()
    stored = joined.stored
    return JoinVideosResult(
        path=None if stored.path is None else str(stored.path),
        uri=stored.uri,
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        task_ids=list(task_ids),
        method=joined.plan.method,
        probe=joined.probe,
        preview=joined.preview,
        notes=[*joined.plan.notes, *joined.notes],
    )
