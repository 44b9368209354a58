"""``join_videos``: several clips, in order, into one mp4 (PyAV, imported lazily).

* **Stream copy** (remux: no quality loss, fast) when every clip has the same
  video codec, frame size and time base (and, for the audio to be copied too,
  the same audio codec, sample rate and channel layout). Each clip's packets are
  shifted by the length of the clips before it.
* **Re-encode** otherwise: every frame is scaled to the first clip's size (a clip
  of another shape fits inside it on black bars, never stretched) and
  re-timed to the first clip's frame rate (frames are repeated or dropped, so
  each clip keeps its length), H.264 video and AAC audio.
* **Audio** is kept when every clip has an audio track and dropped, with a note,
  when any clip has none (a joined track with holes would drift out of sync).

The mp4 muxer seeks back to finish its index, so PyAV writes a hidden temp file
in the output folder; it is then published through
:class:`~gravitex_mcp.store.storage.OutputDir` like every saved video (its own temp
file, fsync, sha256, no-clobber link under the final name), and the first temp
file is removed whatever happens. Nothing is ever left under a final name
unless complete.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from ..errors import GravitexError, InvalidArgumentsError, StorageError
from ..redact import clip
from ..results import JoinVideosResult, Preview, Probe
from ..store.ondisk import HeldFile, VideoSource, open_saved, path_of
from ..store.storage import OutputDir, StoredFile
from ..store.tempfiles import create_temp
from .probe import ProbeError, probe_video
from .seeing import Seen, look_at
from .work import VideoWork, shared_video_work

if TYPE_CHECKING:
    import av.container

    from ..service.videos import ProgressFn, VideoService

logger = logging.getLogger(__name__)

MIN_CLIPS: Final = 2
MAX_CLIPS: Final = 20
_COPY_CHUNK: Final = 1 << 20
_AUDIO_FRAME: Final = 1024  # samples per AAC frame

Method = Literal["stream_copy", "re_encode"]


class JoinError(GravitexError):
    """The clips could not be joined (unreadable, no video track, ...); nothing was saved."""


@dataclass(frozen=True, slots=True)
class _Audio:
    codec: str
    rate: int
    layout: str
    extradata: bytes | None


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """What joining needs to know about one clip."""

    path: Path
    codec: str
    width: int
    height: int
    time_base: Fraction
    fps: Fraction | None
    duration: float
    audio: _Audio | None
    extradata: bytes | None = None
    """The codec's setup (H.264 SPS/PPS, ...): a copied stream carries the first clip's."""
    source: VideoSource | None = None
    """What to read (a saved clip through its checked descriptor); ``path`` when none."""

    def opened(self) -> contextlib.AbstractContextManager[av.container.InputContainer]:
        return _open(self.source if self.source is not None else self.path)


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """How the clips will be joined."""

    method: Method
    keep_audio: bool
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class JoinedVideo:
    """A published joined video."""

    stored: StoredFile
    plan: JoinPlan
    probe: Probe
    preview: Preview | None
    #: what looking at the joined file found worth saying (e.g. no contact sheet)
    notes: list[str]


@contextlib.contextmanager
def _open(source: VideoSource) -> Iterator[av.container.InputContainer]:
    """``source`` opened for reading; a held file through its checked descriptor (its
    reader closed with the container: PyAV leaves a file object it was given open)."""
    import av

    path = path_of(source)
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(source.reader()) if isinstance(source, HeldFile) else None
        try:
            container = av.open(target if target is not None else str(path), "r")
        except (OSError, av.FFmpegError) as exc:
            raise JoinError(f"Cannot read {path.name} as a video: {exc}") from exc
        with container:
            yield container


def _duration(container: av.container.InputContainer) -> float:
    """Length in seconds: the container's, else the longest stream's."""
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    ends = [
        float(s.duration * s.time_base)
        for s in container.streams
        if s.duration is not None and s.time_base is not None
    ]
    return max(ends, default=0.0)


def inspect_clip(source: VideoSource) -> ClipInfo:
    """Read ``source``'s streams (blocking). Raises :class:`JoinError` if it has no video."""
    path = path_of(source)
    with _open(source) as container:
        if not container.streams.video:
            raise JoinError(f"{path.name} has no video track.")
        video = container.streams.video[0]
        ctx = video.codec_context
        audio = None
        if container.streams.audio:
            a = container.streams.audio[0].codec_context
            audio = _Audio(
                codec=a.name,
                rate=int(a.sample_rate),
                layout=a.layout.name,
                extradata=a.extradata,
            )
        fps = video.average_rate or video.guessed_rate
        assert video.time_base is not None  # set by every demuxer
        return ClipInfo(
            path=path,
            codec=ctx.name,
            width=int(ctx.width),
            height=int(ctx.height),
            time_base=Fraction(video.time_base),
            fps=Fraction(fps) if fps else None,
            duration=_duration(container),
            audio=audio,
            extradata=ctx.extradata,
            source=source,
        )


def plan_join(clips: Sequence[ClipInfo]) -> JoinPlan:
    """Stream copy when the clips allow it, else re-encode; keep audio if all have it."""
    first = clips[0]
    notes: list[str] = []
    keep_audio = all(c.audio is not None for c in clips)
    if not keep_audio and any(c.audio is not None for c in clips):
        silent = [i for i, c in enumerate(clips) if c.audio is None]
        notes.append(
            f"Audio was dropped: clips {silent} have no audio track, and a joined track "
            "with holes would drift out of sync."
        )
    # The output keeps one copy of the codec setup (the first clip's), so copied
    # packets of a clip encoded with other settings would decode wrongly.
    same_video = all(
        (c.codec, c.width, c.height, c.time_base, c.extradata)
        == (first.codec, first.width, first.height, first.time_base, first.extradata)
        for c in clips
    )
    same_audio = not keep_audio or len({c.audio for c in clips}) == 1
    if same_video and same_audio:
        return JoinPlan("stream_copy", keep_audio, tuple(notes))
    if not same_video:
        sizes = sorted({f"{c.width}x{c.height} {c.codec}" for c in clips})
        what = ", ".join(sizes) if len(sizes) > 1 else "encoder settings or time base"
        bars = (
            " (clips of another shape fit inside it on black bars)" if _shapes_differ(clips) else ""
        )
        notes.append(
            f"The clips differ ({what}): re-encoded to the first clip's size "
            f"{first.width}x{first.height} and frame rate{bars}."
        )
    else:
        notes.append("The clips' audio formats differ: re-encoded.")
    return JoinPlan("re_encode", keep_audio, tuple(notes))


def _same_shape(width: int, height: int, other_width: int, other_height: int) -> bool:
    """Aspect ratios within 1 %: 284x160 and 1280x720 are both 16:9 (a stretch that
    small is invisible, where fitting would add bars a pixel wide)."""
    return abs(width * other_height - height * other_width) <= 0.01 * height * other_width


def _shapes_differ(clips: Sequence[ClipInfo]) -> bool:
    first = clips[0]
    return not all(_same_shape(c.width, c.height, first.width, first.height) for c in clips)


# --- stream copy ---------------------------------------------------------------------


def _remux(clips: Sequence[ClipInfo], dest: Path, keep_audio: bool, on_clip: ClipDone) -> None:
    import av

    with av.open(str(dest), "w", format="mp4") as output:
        out_streams: dict[str, Any] = {}
        offset = 0.0  # seconds of the clips written so far
        last_dts: dict[str, int] = {}
        for clip in clips:
            with clip.opened() as container:
                inputs: dict[str, Any] = {"video": container.streams.video[0]}
                if keep_audio:
                    inputs["audio"] = container.streams.audio[0]
                if not out_streams:
                    for kind, stream in inputs.items():
                        out_streams[kind] = output.add_stream_from_template(stream)
                end = offset
                for packet in container.demux(list(inputs.values())):
                    if packet.dts is None or packet.size == 0:
                        continue  # the demuxer's end-of-stream marker
                    kind = packet.stream.type
                    tb = packet.time_base
                    shift = round(offset / tb)
                    packet.dts += shift
                    if packet.pts is not None:
                        packet.pts += shift
                    # Leading packets may carry negative timestamps (B-frame delay): keep
                    # each stream's dts strictly increasing across the seam.
                    bump = last_dts.get(kind, -(1 << 62)) + 1 - packet.dts
                    if bump > 0:
                        packet.dts += bump
                        if packet.pts is not None:
                            packet.pts += bump
                    last_dts[kind] = packet.dts
                    stamp = packet.pts if packet.pts is not None else packet.dts
                    end = max(end, float((stamp + (packet.duration or 0)) * tb))
                    packet.stream = out_streams[kind]
                    output.mux(packet)
                offset = max(end, offset + clip.duration)
            on_clip(clip)


# --- re-encode -------------------------------------------------------------------------


def _video_frames(container: av.container.InputContainer) -> Iterator[tuple[float, Any]]:
    """(seconds, frame) of the first video stream, in order."""
    stream = container.streams.video[0]
    for frame in container.decode(stream):
        if frame.pts is None or frame.time_base is None:
            continue
        yield float(frame.pts * frame.time_base), frame


class _Fit:
    """Frames of any size onto the output's ``width`` x ``height``, keeping their shape.

    A frame of the output's shape is just scaled; one of another shape (a 9:16 clip
    joined after a 16:9 one) is scaled to fit inside and centred on black bars,
    not stretched. FFmpeg's ``scale`` and ``pad`` filters do it; a graph is built
    per input size and format.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._graphs: dict[tuple[int, int, str], Any] = {}
        self._count = 0

    def __call__(self, frame: Any) -> Any:
        w, h = self.width, self.height
        if _same_shape(frame.width, frame.height, w, h):
            return frame.reformat(width=w, height=h, format="yuv420p")
        key = (frame.width, frame.height, frame.format.name)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._graph(frame)
        frame.pts = self._count  # the filters want increasing timestamps
        self._count += 1
        graph.push(frame)
        return graph.vpull()

    def _graph(self, frame: Any) -> Any:
        import av

        graph = av.filter.Graph()
        source = graph.add_buffer(
            width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 1)
        )
        chain = [
            source,
            graph.add(
                "scale",
                f"{self.width}:{self.height}:force_original_aspect_ratio=decrease"
                ":force_divisible_by=2",
            ),
            graph.add("pad", f"{self.width}:{self.height}:(ow-iw)/2:(oh-ih)/2:black"),
            graph.add("setsar", "1"),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ]
        for a, b in itertools.pairwise(chain):
            a.link_to(b)
        graph.configure()
        return graph


def _reencode(clips: Sequence[ClipInfo], dest: Path, keep_audio: bool, on_clip: ClipDone) -> None:
    import av

    first = clips[0]
    fps = first.fps if first.fps and first.fps > 0 else Fraction(30)
    fps = fps.limit_denominator(1001 * 1000)
    # Even sizes: what 4:2:0 H.264 needs.
    width, height = first.width // 2 * 2, first.height // 2 * 2
    fit = _Fit(width, height)
    with av.open(str(dest), "w", format="mp4") as output:
        video = output.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # Visually lossless for a second generation, at a speed that keeps joins short.
        video.options = {"preset": "veryfast", "crf": "18"}
        tick = Fraction(1) / fps
        video.time_base = tick
        audio_out = None
        rate = 0
        if keep_audio:
            assert first.audio is not None
            rate = first.audio.rate
            audio_out = output.add_stream("aac", rate=rate)
            audio_out.layout = first.audio.layout
        frame_index = 0
        audio_next = 0  # the next output audio sample
        offset = 0.0
        for clip in clips:
            with clip.opened() as container:
                start: float | None = None
                last: Any = None
                clip_end = math.floor((offset + clip.duration) * fps + Fraction(1, 2))
                for seconds, frame in _video_frames(container):
                    if start is None:
                        start = seconds
                    # The output frame this one lands on, never past the clip's end.
                    target = math.floor((offset + seconds - start) * fps + Fraction(1, 2))
                    target = min(target, clip_end - 1)
                    scaled = fit(frame)
                    scaled.time_base = tick  # pts below count output frames
                    # Repeat to fill a lower input rate, skip to follow a higher one.
                    while frame_index <= target:
                        scaled.pts = frame_index
                        output.mux(video.encode(scaled))
                        frame_index += 1
                    last = scaled
                while last is not None and frame_index < clip_end:
                    last.pts = frame_index
                    output.mux(video.encode(last))
                    frame_index += 1
            offset = max(offset + clip.duration, float(frame_index / fps))
            if audio_out is not None:
                # Each clip's audio ends where its video ends: no drift across seams.
                audio_end = round(offset * rate)
                _encode_audio(clip, output, audio_out, rate, audio_next, audio_end)
                audio_next = audio_end
            on_clip(clip)
        output.mux(video.encode(None))
        if audio_out is not None:
            output.mux(audio_out.encode(None))


def _encode_audio(
    clip: ClipInfo, output: Any, stream: Any, rate: int, start: int, end: int
) -> None:
    """Encode ``clip``'s audio as output samples ``start``..``end``: resampled to the
    output's format, cut where it runs longer, padded with silence where shorter."""
    from av.audio.fifo import AudioFifo
    from av.audio.frame import AudioFrame
    from av.audio.resampler import AudioResampler

    fmt, layout = stream.codec_context.format, stream.layout
    resampler = AudioResampler(format=fmt, layout=layout, rate=rate)
    fifo = AudioFifo()
    with clip.opened() as container:
        for frame in container.decode(container.streams.audio[0]):
            for resampled in resampler.resample(frame):
                resampled.pts = None  # the fifo checks continuity of given pts
                fifo.write(resampled)
        for resampled in resampler.resample(None):
            resampled.pts = None
            fifo.write(resampled)
    pts = start
    while pts < end:
        count = min(_AUDIO_FRAME, end - pts)
        chunk = fifo.read(min(count, fifo.samples)) if fifo.samples else None
        if chunk is None:
            chunk = AudioFrame(format=fmt.name, layout=layout.name, samples=count)
            for plane in chunk.planes:
                plane.update(bytes(plane.buffer_size))  # silence
            chunk.sample_rate = rate
        chunk.pts = pts
        chunk.time_base = Fraction(1, rate)
        pts += chunk.samples
        output.mux(stream.encode(chunk))


# --- the whole join ----------------------------------------------------------------------

ClipDone = Callable[[ClipInfo], None]


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


def _write_joined(paths: Sequence[VideoSource], dest: Path, on_clip: ClipDone) -> JoinPlan:
    """Blocking: inspect the clips, choose a plan, write the joined mp4 to ``dest``."""
    import av

    clips = [inspect_clip(p) for p in paths]
    plan = plan_join(clips)
    try:
        if plan.method == "stream_copy":
            _remux(clips, dest, plan.keep_audio, on_clip)
        else:
            _reencode(clips, dest, plan.keep_audio, on_clip)
    except av.FFmpegError as exc:
        raise JoinError(f"Joining the clips failed ({plan.method}): {exc}") from exc
    return plan


async def _publish(tmp: Path, out: OutputDir, *, filename: str | None, stem: str) -> StoredFile:
    """Copy ``tmp`` into a :class:`~gravitex_mcp.store.storage.VideoFile` and commit it."""
    async with (
        await anyio.open_file(tmp, "rb") as source,
        out.video(filename, default_stem=stem) as target,
    ):
        while chunk := await source.read(_COPY_CHUNK):
            await target.write(chunk)
        return await target.commit()


async def join_files(
    paths: Sequence[VideoSource],
    out: OutputDir,
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
    directory = await anyio.to_thread.run_sync(out.ensure)
    # Decoding and encoding the clips is video work: bounded by the cores.
    work = video or shared_video_work()
    # Named and locked as every writer's temp file is, so a start-up sweep removes it
    # after a crash and leaves it alone while this join runs.
    held, tmp = create_temp(directory, "join")
    try:
        try:
            report = _clip_reporter(progress, len(paths))
            plan = await work.run(lambda: _write_joined(list(paths), tmp, report))
        except OSError as exc:
            raise StorageError(
                f"Could not write the joined video in {directory}: {exc.strerror or exc}. "
                "Nothing was saved."
            ) from exc
        # Read back before it is published: a join that cannot be read is never saved.
        try:
            probe = await work.run(lambda: probe_video(tmp))
        except ProbeError as exc:
            raise JoinError(f"The joined video cannot be read back: {exc}") from exc
        stored = await _publish(tmp, out, filename=filename, stem=default_stem)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(held)
    # The contact sheet, as for every saved video (nothing was asked of a join); a
    # sheet that cannot be made is a note, the video is saved.
    seen = await work.run(lambda: _look_at_stored(out, stored))
    logger.info("joined %d clips into %s (%s)", len(paths), stored.path, plan.method)
    return JoinedVideo(
        stored=stored, plan=plan, probe=probe, preview=seen.preview, notes=seen.notes
    )


def _look_at_stored(out: OutputDir, stored: StoredFile) -> Seen:
    """:func:`~gravitex_mcp.video.seeing.look_at` the published join, read through a checked
    descriptor (its identity as published), not whatever its name leads to now."""
    try:
        found = open_saved(
            out, stored.path, size=stored.size_bytes, sha256=stored.sha256, recorded=stored.identity
        )
    except StorageError as exc:
        return Seen(None, None, [f"No contact sheet: {exc}"])
    if not isinstance(found, HeldFile):
        why = found.sentence() if found else f"{stored.path} is gone."
        return Seen(None, None, [f"No contact sheet: {why}"])
    with found:
        return look_at(found, {})


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
    output: OutputDir | None = None,
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
        path=str(stored.path),
        uri=stored.path.as_uri(),
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        task_ids=list(task_ids),
        method=joined.plan.method,
        probe=joined.probe,
        preview=joined.preview,
        notes=[*joined.plan.notes, *joined.notes],
    )
