"""Several clips, in order, into one mp4 (PyAV, imported lazily): the joining itself.

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

:func:`write_joined` writes to a path it is given (the mp4 muxer seeks back to
finish its index); ``service/joins.py`` gathers the clips, gives it a temp file and
publishes the result.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from ..errors import GravitexError
from .source import VideoSource, opened, path_of

if TYPE_CHECKING:
    import av.container

MIN_CLIPS: Final = 2
MAX_CLIPS: Final = 20
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
    source: VideoSource
    """What to read (a saved clip through its checked descriptor)."""
    extradata: bytes | None = None
    """The codec's setup (H.264 SPS/PPS, ...): a copied stream carries the first clip's."""

    def opened(self) -> contextlib.AbstractContextManager[av.container.InputContainer]:
        return _open(self.source)


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """How the clips will be joined."""

    method: Method
    keep_audio: bool
    notes: tuple[str, ...] = field(default=())


@contextlib.contextmanager
def _open(source: VideoSource) -> Iterator[av.container.InputContainer]:
    """``source`` opened for reading; failing to open it is a :class:`JoinError`."""
    import av

    with contextlib.ExitStack() as stack:
        try:
            container = stack.enter_context(opened(source))
        except (OSError, av.FFmpegError) as exc:
            raise JoinError(f"Cannot read {path_of(source).name} as a video: {exc}") from exc
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

#: Called in the worker thread after each clip is written.
ClipDone = Callable[[ClipInfo], None]


def write_joined(paths: Sequence[VideoSource], dest: Path, on_clip: ClipDone) -> JoinPlan:
    """Blocking: inspect the clips, choose a plan, write the joined mp4 to ``dest``.

    Raises :class:`JoinError` for clips that cannot be joined, ``OSError`` when the
    disk refuses."""
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
