"""The contact sheet: frames spread over a video, tiled into one small JPEG.

FFmpeg does the scaling (``reformat``) and the JPEG encoding (its ``mjpeg``
encoder), through PyAV; the tiles are copied into the sheet here. Blocking: call from a
worker thread. PyAV is imported lazily (see probe.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

from .frames import DecodedFrame, fit_within, frames_at
from .probe import ProbeError
from .source import VideoSource, path_of

if TYPE_CHECKING:
    from av.video.frame import VideoFrame

#: Longest side of the sheet, and the most bytes it may take (the agent reads it).
MAX_SHEET_SIDE = 1024
MAX_SHEET_BYTES = 150 * 1024
COLUMNS = 3
#: JPEG quantiser scale, best first (2 is near lossless, 31 the worst): the first one
#: that fits in MAX_SHEET_BYTES is kept.
_QUALITIES = (3, 5, 8, 12, 18, 25, 31)


@dataclass(frozen=True, slots=True)
class ContactSheet:
    """The JPEG bytes, their size, and the time of each tile."""

    jpeg: bytes
    width: int
    height: int
    at_seconds: list[float]


def tile_count(duration: float) -> int:
    """Six tiles for a short clip, nine from six seconds on (about a tile a second or less)."""
    return 6 if duration < 6 else 9


def sample_times(duration: float, count: int) -> list[float]:
    """``count`` times spread evenly over the clip: the middle of each equal slice."""
    return [duration * (i + 0.5) / count for i in range(count)]


def contact_sheet(path: VideoSource, duration: float) -> ContactSheet:
    """Decode frames spread over the video at ``path`` and tile them into one JPEG."""
    import av

    times = sample_times(duration, tile_count(duration))
    decoded = frames_at(path, times)
    try:
        return compose(decoded, times)
    except av.FFmpegError as exc:
        name = path_of(path).name
        raise ProbeError(f"FFmpeg could not tile the frames of {name}: {exc}") from exc


def compose(decoded: Sequence[DecodedFrame], times: Sequence[float]) -> ContactSheet:
    """Tile ``decoded`` (all the same size) into a JPEG of at most MAX_SHEET_SIDE pixels.

    ``times`` are the times the tiles stand for (kept as the sheet's ``at_seconds``, so
    a sheet found on disk later is described the same way).

    Each frame is scaled by FFmpeg (``reformat``, area interpolation, to the JPEG's
    yuvj420p) and copied into its cell, row by row. No filter graph: PyAV's graph and its
    filter contexts refer to each other, so each sheet's FFmpeg buffers (~0.7 MB at
    160p) stayed until a full garbage collection: ~95 MiB more peak memory under the
    load bench when nothing else made the collector run (bench/RESULTS.md).
    """
    import av

    count = len(decoded)
    columns = min(COLUMNS, count)
    rows = math.ceil(count / columns)
    first = decoded[0].frame
    tile_w, tile_h = _tile_size(first.width, first.height, columns, rows)
    sheet = av.VideoFrame(tile_w * columns, tile_h * rows, "yuvj420p")
    for index, plane in enumerate(sheet.planes):  # black where no frame goes
        memoryview(plane)[:] = (b"\x80" if index else b"\x00") * plane.buffer_size
    for index, item in enumerate(decoded):
        tile = item.frame.reformat(
            width=tile_w, height=tile_h, format="yuvj420p", interpolation="AREA", threads=1
        )
        _paste(tile, sheet, (index % columns) * tile_w, (index // columns) * tile_h)
    jpeg = _encode_jpeg(sheet)
    return ContactSheet(
        jpeg=jpeg,
        width=sheet.width,
        height=sheet.height,
        at_seconds=[round(t, 3) for t in times],
    )


def _paste(tile: VideoFrame, sheet: VideoFrame, x: int, y: int) -> None:
    """Copy ``tile`` into ``sheet`` at ``x``, ``y`` (both yuv 4:2:0, even offsets)."""
    for index, (source, target) in enumerate(zip(tile.planes, sheet.planes, strict=True)):
        shift = 1 if index else 0  # the chroma planes are half as wide and high
        src, dst = memoryview(source), memoryview(target)
        width, src_line, dst_line = source.width, source.line_size, target.line_size
        at = (y >> shift) * dst_line + (x >> shift)
        for row in range(source.height):
            dst[at : at + width] = src[row * src_line : row * src_line + width]
            at += dst_line


def _tile_size(width: int, height: int, columns: int, rows: int) -> tuple[int, int]:
    # The whole grid fits in MAX_SHEET_SIDE; each tile keeps the frame's shape.
    scale = min(1.0, MAX_SHEET_SIDE / (width * columns), MAX_SHEET_SIDE / (height * rows))
    return fit_within(width, height, max(2, math.floor(max(width, height) * scale)))


def _encode_jpeg(sheet: VideoFrame) -> bytes:
    import av

    data = b""
    for quality in _QUALITIES:
        codec = av.CodecContext.create("mjpeg", "w")
        codec.thread_count = 1  # one thread per piece of video work (see video_work.py)
        codec.width, codec.height, codec.pix_fmt = sheet.width, sheet.height, "yuvj420p"
        codec.time_base = Fraction(1, 1)
        codec.qscale = True
        codec.qmin = codec.qmax = quality
        data = b"".join(bytes(p) for p in codec.encode(sheet))
        data += b"".join(bytes(p) for p in codec.encode(None))
        if len(data) <= MAX_SHEET_BYTES:
            break
    return data
