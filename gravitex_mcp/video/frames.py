"""Pick frames out of a video at given times, and encode a frame as PNG, with PyAV.

Blocking: call from a worker thread. PyAV is imported lazily (see probe.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .probe import ProbeError, opened_video
from .source import VideoSource, path_of

if TYPE_CHECKING:
    from av.video.frame import VideoFrame

FramePosition = Literal["first", "middle", "last"]

#: Longest side of an extracted frame: a 4K frame as PNG would flood the conversation.
MAX_FRAME_SIDE = 1920


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """A frame and where it sits in the video."""

    at_seconds: float
    frame: VideoFrame


def seconds_of(at: float | FramePosition, duration: float) -> float:
    """Where ``at`` is in a video of ``duration`` seconds (``last``: its end)."""
    if at == "first":
        return 0.0
    if at == "middle":
        return duration / 2
    if at == "last":
        return duration
    return float(at)


def frames_at(path: VideoSource, times: Sequence[float]) -> list[DecodedFrame]:
    """For each time, the frame on screen then (the last one for times past the end).

    One decoding pass from the start: short clips from a generator have few
    keyframes, so seeking would not save decoding, and one pass serves every time.
    """
    if not times:
        return []
    order = sorted(range(len(times)), key=lambda i: times[i])
    picked: dict[int, DecodedFrame] = {}
    with opened_video(path) as (container, stream):
        # One thread per decode: video_work.py runs one decode per core, so FFmpeg's own
        # frame threads would only oversubscribe the cores (and each holds frame buffers).
        stream.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        last: DecodedFrame | None = None
        pending = 0  # index into ``order`` of the next time to fill
        for frame in container.decode(stream):
            at = float(frame.time) if frame.time is not None else 0.0
            # The frame on screen at time t is the last one starting at or before t.
            while pending < len(order) and times[order[pending]] < at and last is not None:
                picked[order[pending]] = last
                pending += 1
            last = DecodedFrame(at_seconds=round(at, 3), frame=frame)
            if pending == len(order):
                break
        if last is None:
            raise ProbeError(f"{path_of(path).name} has no frame FFmpeg can decode.")
        for index in order[pending:]:
            picked[index] = last
    return [picked[i] for i in range(len(times))]


def fit_within(width: int, height: int, longest: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled down (never up) so the longest side is at most
    ``longest``; both even, as yuv420p and most encoders want."""
    scale = min(1.0, longest / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def encode_png(frame: VideoFrame, *, max_side: int = MAX_FRAME_SIDE) -> tuple[bytes, int, int]:
    """The frame as PNG bytes (scaled down to ``max_side``), with its width and height."""
    import av

    width, height = frame.width, frame.height
    if max(width, height) > max_side:
        width, height = fit_within(width, height, max_side)
    try:
        rgb = frame.reformat(width=width, height=height, format="rgb24", threads=1)
        codec = av.CodecContext.create("png", "w")
        codec.thread_count = 1  # one thread per piece of video work (see video_work.py)
        codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
        data = b"".join(bytes(p) for p in codec.encode(rgb))
        data += b"".join(bytes(p) for p in codec.encode(None))
    except av.FFmpegError as exc:
        raise ProbeError(f"FFmpeg could not encode a frame as PNG: {exc}") from exc
    return data, width, height
