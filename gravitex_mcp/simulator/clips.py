"""Real clips of what was asked: the requested duration and aspect ratio, with motion.

Each family says duration and shape in its own body fields (Sora ``seconds`` and
``size``, Veo ``durationSeconds`` and ``aspectRatio``, Wan ``duration`` and ``size``,
Seedance ``--dur`` and ``--ratio`` in the text); :func:`shape_for` reads them, with
each family's documented default. :func:`render_clip` draws FFmpeg's ``testsrc2``
pattern (colour bars, a moving gradient band, a running timecode and frame
counter, so frames visibly differ) at 160 px on the short side and 8 fps, encodes
it as H.264 (yuv420p, ``moov`` first) in mp4: small, fast to make, and playable
by a browser's ``<video>``. Clips are cached per shape. The asked resolution is not
drawn (a 1080p clip of 8 s took ~2 s and 1 MB to encode, every test paying for it):
each clip carries :data:`SIMULATOR_MARK`, and the notes say the size is the simulator's.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..domain import SIMULATOR_MARK, Family
from .gateway_rules import parse_flags

#: Short side of every clip, in pixels, and its frame rate.
SHORT_SIDE = 160
FPS = 8
#: x264 constant quality: high enough numbers keep a 16 s clip near 150 KB.
CRF = 38
_RATIO_OR_SIZE = re.compile(r"^(\d+)[:x*](\d+)$")  # 16:9, 1280x720, 1280*720


@dataclass(frozen=True, slots=True)
class ClipShape:
    """How long and how wide/tall a simulated clip is."""

    seconds: float
    width: int
    height: int
    fps: int = FPS


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def dimensions(ratio_w: int, ratio_h: int) -> tuple[int, int]:
    """A small frame of aspect ratio ``ratio_w:ratio_h``, SHORT_SIDE on its short side."""
    if ratio_w >= ratio_h:
        return _even(SHORT_SIDE * ratio_w / ratio_h), SHORT_SIDE
    return SHORT_SIDE, _even(SHORT_SIDE * ratio_h / ratio_w)


def _ratio(text: object, default: tuple[int, int]) -> tuple[int, int]:
    """``16:9`` or ``1280x720`` / ``1280*720`` as a ratio; ``default`` when absent or odd."""
    if isinstance(text, str):
        match = _RATIO_OR_SIZE.match(text)
        if match is not None and int(match.group(1)) > 0 and int(match.group(2)) > 0:
            return int(match.group(1)), int(match.group(2))
    return default


def _number(value: object, default: float) -> float:
    if isinstance(value, bool):
        return default
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return default
    return default


def _sora(body: Mapping[str, Any]) -> tuple[float, tuple[int, int]]:
    size = body.get("size")
    if size is None and body.get("width") and body.get("height"):
        size = f"{body['width']}x{body['height']}"
    return _number(body.get("seconds"), 4), _ratio(size, (720, 1280))


def _veo(body: Mapping[str, Any]) -> tuple[float, tuple[int, int]]:
    return _number(body.get("durationSeconds"), 8), _ratio(body.get("aspectRatio"), (16, 9))


def _wan(body: Mapping[str, Any]) -> tuple[float, tuple[int, int]]:
    return _number(body.get("duration"), 5), _ratio(body.get("size"), (16, 9))


def _seedance(body: Mapping[str, Any]) -> tuple[float, tuple[int, int]]:
    metadata = body.get("metadata")
    content = metadata.get("content") if isinstance(metadata, dict) else None
    first = content[0] if isinstance(content, list) and content else None
    text = first.get("text") if isinstance(first, dict) else None
    _, flags = parse_flags(text if isinstance(text, str) else "")
    duration = flags.get("duration", ("", None))[1]
    ratio = flags.get("ratio", ("", None))[1]
    return _number(duration, 5), _ratio(ratio, (16, 9))


_READERS: dict[Family, Callable[[Mapping[str, Any]], tuple[float, tuple[int, int]]]] = {
    Family.SORA: _sora,
    Family.VEO: _veo,
    Family.WAN: _wan,
    Family.SEEDANCE: _seedance,
}


def shape_for(family: Family, body: Mapping[str, Any], *, short: bool = False) -> ClipShape:
    """The clip a task of ``family`` with submit ``body`` gets (``short``: half as long,
    as an upstream that returns less than was asked)."""
    seconds, (ratio_w, ratio_h) = _READERS[family](body)
    seconds = max(1.0, seconds)
    if short:
        seconds = max(1.0, seconds / 2)
    width, height = dimensions(ratio_w, ratio_h)
    return ClipShape(seconds=seconds, width=width, height=height)


_render_lock = threading.Lock()


#: Rendered clips by shape (at most :data:`MAX_CACHED_CLIPS`, the oldest dropped first).
_clips: dict[ClipShape, bytes] = {}
MAX_CACHED_CLIPS = 64


def render_clip(shape: ClipShape) -> bytes:
    """The mp4 bytes of a ``shape`` clip (cached; blocking, ~20-50 ms when not cached)."""
    # Looked up and rendered under one lock: concurrent first submits of one shape
    # encode it once.
    with _render_lock:
        clip = _clips.get(shape)
        if clip is None:
            clip = _encode(shape)
            if len(_clips) >= MAX_CACHED_CLIPS:
                del _clips[next(iter(_clips))]
            _clips[shape] = clip
        return clip


def _encode(shape: ClipShape) -> bytes:
    import av  # lazy: only a simulator that makes clips loads FFmpeg's libraries

    with tempfile.TemporaryDirectory(prefix="gravitex-sim-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        graph = av.filter.Graph()
        source = graph.add(
            "testsrc2",
            f"size={shape.width}x{shape.height}:rate={shape.fps}:duration={shape.seconds:g}",
        )
        pixels = graph.add("format", "yuv420p")
        sink = graph.add("buffersink")
        source.link_to(pixels)
        pixels.link_to(sink)
        graph.configure()
        # movflags=faststart (moov before mdat, so a browser can start playing at once)
        # rewrites the file at the end: that needs a real file, not a BytesIO.
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            out.metadata["comment"] = SIMULATOR_MARK
            stream = out.add_stream(
                "libx264", rate=shape.fps, options={"preset": "veryfast", "crf": str(CRF)}
            )
            stream.width, stream.height, stream.pix_fmt = shape.width, shape.height, "yuv420p"
            index = 0
            while True:
                try:
                    frame = graph.vpull()
                except (av.error.EOFError, av.error.BlockingIOError):
                    break
                frame.pts = index
                frame.time_base = Fraction(1, shape.fps)
                index += 1
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        return path.read_bytes()
