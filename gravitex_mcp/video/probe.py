"""Read what a saved video holds (duration, size, fps, codec, audio) with PyAV.

PyAV is imported inside the functions so that starting the server does not pay
for loading FFmpeg's libraries. Blocking: call from a worker thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import GravitexError
from ..results import Probe
from .source import VideoSource, opened, path_of

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.stream import VideoStream

#: PyAV durations are in microseconds (``AV_TIME_BASE``).
_AV_TIME_BASE = 1_000_000


class ProbeError(GravitexError):
    """The file is not a video FFmpeg can read."""


@contextlib.contextmanager
def opened_video(source: VideoSource) -> Iterator[tuple[InputContainer, VideoStream]]:
    """``source`` opened with PyAV (a held file through its checked descriptor), and
    its first video stream. An FFmpeg or OS error, also while the caller reads inside
    the block, becomes a :class:`ProbeError`."""
    import av  # lazy: FFmpeg's libraries load on first use

    path = path_of(source)
    try:
        with opened(source) as container:
            if not container.streams.video:
                raise ProbeError(f"{path.name} has no video stream.")
            yield container, container.streams.video[0]
    except av.FFmpegError as exc:
        raise ProbeError(f"{path.name} is not a video FFmpeg can read: {exc}") from exc
    except OSError as exc:
        raise ProbeError(f"Could not read {path.name}: {exc.strerror or exc}") from exc


def probe_video(path: VideoSource) -> Probe:
    """Duration, frame size, fps, video codec and whether there is audio, from the file."""
    with opened_video(path) as (container, stream):
        return probe_of(container, stream)


def probe_of(container: InputContainer, stream: VideoStream) -> Probe:
    """:func:`probe_video` of a video already open (see :func:`opened_video`)."""
    rate = stream.average_rate or stream.guessed_rate
    return Probe(
        duration_seconds=round(_duration_seconds(container, stream), 3),
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=round(float(rate), 3) if rate else None,
        video_codec=stream.codec_context.name,
        has_audio=bool(container.streams.audio),
    )


def _duration_seconds(container: object, stream: object) -> float:
    # The stream's own duration is the video track's length; the container's may
    # include a longer audio track.
    duration = getattr(stream, "duration", None)
    time_base = getattr(stream, "time_base", None)
    if duration is not None and time_base is not None:
        return float(duration * time_base)
    total = getattr(container, "duration", None)
    return 0.0 if total is None else total / _AV_TIME_BASE
