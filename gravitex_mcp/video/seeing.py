"""What the server learns by looking at a video: probe, contact sheet, frames, notes.

Pure reading and encoding: :func:`look` probes a video and compares it with what was
asked, :func:`sheet_of` draws its contact sheet and :func:`frames_of` its frames,
each returning bytes; the service saves them beside the video. Blocking (PyAV
decoding): the service runs them in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..catalog.models import parse_size
from ..domain import SIMULATOR_MARK
from ..errors import GravitexError
from ..results import Probe
from .frames import FramePosition, encode_png, frames_at, seconds_of
from .preview import ContactSheet, contact_sheet, sample_times, tile_count
from .probe import opened_video, probe_of, probe_video
from .source import VideoSource, path_of

#: Longest side of a frame shown in the conversation (a 1080p PNG runs to megabytes).
SHOWN_FRAME_SIDE = 1024
#: Differences smaller than these are rounding, not a different video.
DURATION_TOLERANCE_SECONDS = 0.5
RATIO_TOLERANCE = 0.03
_RESOLUTION = re.compile(r"^(\d+)p$")


def look(
    video: VideoSource, asked: Mapping[str, Any], *, picked_size: tuple[int, int] | None = None
) -> tuple[Probe, list[str]]:
    """``video``'s probe and what differs from ``asked`` (raises :class:`ProbeError`)."""
    with opened_video(video) as (container, stream):
        probe = probe_of(container, stream)
        # The simulator's clips say so in their mp4 comment tag.
        simulated = container.metadata.get("comment") == SIMULATOR_MARK
    return probe, mismatch_notes(asked, probe, picked_size=picked_size, simulated=simulated)


def sheet_of(video: VideoSource, probe: Probe) -> ContactSheet:
    """The contact sheet of ``video`` (raises :class:`ProbeError`)."""
    return contact_sheet(video, probe.duration_seconds)


def sheet_times(probe: Probe) -> list[float]:
    """The tiles' times of a sheet made of a video so long: those of an earlier sheet."""
    times = sample_times(probe.duration_seconds, tile_count(probe.duration_seconds))
    return [round(t, 3) for t in times]


# --- asked versus found ---------------------------------------------------------------


def mismatch_notes(
    asked: Mapping[str, Any],
    probe: Probe,
    *,
    picked_size: tuple[int, int] | None = None,
    simulated: bool = False,
) -> list[str]:
    """One note for each of duration, aspect ratio, resolution/size and audio that differs.

    ``picked_size`` is the frame size the model's own table gives for what was asked
    (Wan's 720p 1:1 is 960x960): when known, the resolution is judged by it, not by
    the short side. ``simulated``: the clip is the simulator's, whose size and missing
    audio are its own, not the model's (the notes say so).
    """
    notes: list[str] = []
    shape_notes: list[str] = []  # what the simulator never matches: size and audio
    duration = asked.get("duration")
    if (
        isinstance(duration, int | float)
        and not isinstance(duration, bool)
        and abs(probe.duration_seconds - duration) > DURATION_TOLERANCE_SECONDS
    ):
        notes.append(f"asked {duration:g} s, got {probe.duration_seconds:.1f} s")
    got = f"{probe.width}x{probe.height}"
    ratio = asked.get("aspect_ratio")
    if isinstance(ratio, str) and ":" in ratio:
        a, _, b = ratio.partition(":")
        try:
            wanted = float(a) / float(b)
        except (ValueError, ZeroDivisionError):
            wanted = None
        if wanted is not None and abs(probe.width / probe.height / wanted - 1) > RATIO_TOLERANCE:
            notes.append(f"asked aspect ratio {ratio}, got {_ratio_text(probe)} ({got})")
    resolution = asked.get("resolution")
    match = _RESOLUTION.match(resolution) if isinstance(resolution, str) else None
    size = asked.get("size")
    wanted_size = parse_size(size) if isinstance(size, str) else None
    if wanted_size is not None:  # an exact size says more than a resolution
        if wanted_size != (probe.width, probe.height):
            shape_notes.append(f"asked size {size}, got {got}")
    elif match is not None and picked_size is not None:
        if picked_size != (probe.width, probe.height):
            picked = f"{picked_size[0]}x{picked_size[1]}"
            shape_notes.append(f"asked {resolution} ({picked}), got {got}")
    elif match is not None and min(probe.width, probe.height) != int(match.group(1)):
        shape_notes.append(f"asked {resolution}, got {min(probe.width, probe.height)}p ({got})")
    if asked.get("generate_audio") is True and not probe.has_audio:
        shape_notes.append("asked generate_audio true, got a video with no audio track")
    if simulated:
        why = (
            "the simulator's doing: its clips are 160 px on the short side and silent; "
            "a real model returns what was asked"
        )
        shape_notes = [f"{note} ({why})" for note in shape_notes]
    return notes + shape_notes


def _ratio_text(probe: Probe) -> str:
    for name, value in (("16:9", 16 / 9), ("9:16", 9 / 16), ("1:1", 1.0), ("4:3", 4 / 3)):
        if abs(probe.width / probe.height / value - 1) <= RATIO_TOLERANCE:
            return name
    return f"{probe.width / probe.height:.2f}:1"


# --- extract_frames -----------------------------------------------------------------


class FrameTimeError(GravitexError):
    """A time asked of extract_frames lies past the end of the video."""


@dataclass(frozen=True, slots=True)
class PngFrame:
    """A frame as PNG at the video's own size (it can be the next video's first frame),
    and the PNG to show the agent (at most SHOWN_FRAME_SIDE pixels)."""

    at_seconds: float
    png: bytes
    width: int
    height: int
    shown_png: bytes


def frames_of(source: VideoSource, at: Sequence[float | FramePosition]) -> list[PngFrame]:
    """The frames of ``source`` at each of ``at``, as PNG; raises :class:`FrameTimeError`
    for a time past the end, before any frame is decoded."""
    video = path_of(source)
    duration = probe_video(source).duration_seconds
    # A time past the end is a mistake to tell, not the last frame to hand back as if
    # it were the one asked for.
    past = [
        f"at[{i}]: {a:g} s is past the end"
        for i, a in enumerate(at)
        if not isinstance(a, str) and a > duration
    ]
    if past:
        raise FrameTimeError(
            f"{'; '.join(past)} of {video.name}, which is {duration:g} s long. Valid times: "
            f'0 to {duration:g} s, or "first", "middle", "last". No frame was saved.'
        )
    times = [min(max(0.0, seconds_of(a, duration)), duration) for a in at]
    frames: list[PngFrame] = []
    for decoded in frames_at(source, times):
        png, width, height = encode_png(decoded.frame)
        shown = png
        if max(width, height) > SHOWN_FRAME_SIDE:
            shown = encode_png(decoded.frame, max_side=SHOWN_FRAME_SIDE)[0]
        frames.append(PngFrame(decoded.at_seconds, png, width, height, shown))
    return frames
