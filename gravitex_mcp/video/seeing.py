"""What the server learns by looking at a saved video: probe, contact sheet, notes.

:func:`look_at` is the one entry point the service calls for every saved video
(new or reused); :func:`extract` serves ``extract_frames``. Both are blocking
(PyAV decoding, file writes): the service runs them in a worker thread.
"""

from __future__ import annotations

import glob
import logging
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog.models import parse_size
from ..domain import SIMULATOR_MARK
from ..errors import GravitexError, StorageError
from ..images import JPEG, image_dimensions, sniff_image_type
from ..results import Frame, Preview, Probe
from ..store.ondisk import HeldFile, VideoSource, path_of, read_regular
from ..store.stills import save_new, save_or_reuse
from .frames import FramePosition, encode_png, frames_at, seconds_of
from .preview import contact_sheet, sample_times, tile_count
from .probe import ProbeError, opened_video, probe_video

logger = logging.getLogger(__name__)

SHEET_SUFFIX = ".contact.jpg"
#: Longest side of a frame shown in the conversation (a 1080p PNG runs to megabytes).
SHOWN_FRAME_SIDE = 1024
#: Differences smaller than these are rounding, not a different video.
DURATION_TOLERANCE_SECONDS = 0.5
RATIO_TOLERANCE = 0.03
_RESOLUTION = re.compile(r"^(\d+)p$")
#: Largest file read back as an earlier contact sheet (they are kept near 150 KiB).
MAX_READ_SHEET_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Seen:
    """What :func:`look_at` found: each part ``None`` when it could not be had."""

    probe: Probe | None
    preview: Preview | None
    notes: list[str] = field(default_factory=list)


def look_at(
    video: VideoSource, asked: Mapping[str, Any], *, picked_size: tuple[int, int] | None = None
) -> Seen:
    """Probe ``video``, make (or reuse) its contact sheet, and compare with ``asked``.

    Never raises for a video it cannot read or a sheet it cannot save: the video
    is saved either way, so the reason becomes a note.
    """
    try:
        probe = probe_video(video)
    except ProbeError as exc:
        return Seen(None, None, [f"Could not look at the saved video: {exc}"])
    notes = mismatch_notes(
        asked, probe, picked_size=picked_size, simulated=_made_by_simulator(video)
    )
    try:
        preview = _sheet_for(video, probe)
    except (ProbeError, StorageError) as exc:
        notes.append(f"No contact sheet: {exc}")
        preview = None
    return Seen(probe, preview, notes)


def sheet_path(video: Path) -> Path:
    """Where the contact sheet of ``video`` is saved first (``<stem>.contact.jpg``)."""
    return video.with_name(video.stem + SHEET_SUFFIX)


def _sheet_for(source: VideoSource, probe: Probe) -> Preview:
    video = path_of(source)
    existing = _existing_sheet(source, probe)
    if existing is not None:
        return existing
    sheet = contact_sheet(source, probe.duration_seconds)
    path = save_new(video.parent, sheet_path(video).name, sheet.jpeg)
    logger.info("contact sheet of %s saved to %s", video.name, path.name)
    return Preview(
        path=str(path),
        uri=path.as_uri(),
        width=sheet.width,
        height=sheet.height,
        at_seconds=sheet.at_seconds,
    )


def _existing_sheet(source: VideoSource, probe: Probe) -> Preview | None:
    """The sheet an earlier look saved for this very file, when it is still there.

    A sheet older than the video belongs to an earlier file of the same name (one
    deleted, then a new video saved under its name): it is never reused. Such a
    sheet is not replaced either (nothing is clobbered), so the new one is saved as
    ``<stem>.contact-N.jpg``; the newest sheet made after the video is the one kept.
    """
    video = path_of(source)
    try:
        # A held file's mtime as checked, not whatever its name leads to now.
        made = (
            source.identity.mtime_ns if isinstance(source, HeldFile) else video.stat().st_mtime_ns
        )
        pattern = glob.escape(video.stem) + SHEET_SUFFIX.replace(".jpg", "-*.jpg")
        candidates = [sheet_path(video), *video.parent.glob(pattern)]
        usable = []
        for path in candidates:
            try:
                info = path.lstat()  # not followed: a symlink under a sheet's name is not ours
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_mtime_ns >= made:
                usable.append((info.st_mtime_ns, path))
        for _, path in sorted(usable, reverse=True):
            try:
                data = read_regular(path, limit=MAX_READ_SHEET_BYTES)
            except OSError:
                continue  # swapped since the listing: not this one
            size = image_dimensions(data) if sniff_image_type(data) == JPEG else None
            if size is not None:
                break
        else:
            return None
    except OSError:
        return None
    # Its tiles' times follow from the video's duration, as when it was made.
    times = sample_times(probe.duration_seconds, tile_count(probe.duration_seconds))
    return Preview(
        path=str(path),
        uri=path.as_uri(),
        width=size[0],
        height=size[1],
        at_seconds=[round(t, 3) for t in times],
    )


# --- asked versus found ---------------------------------------------------------------


def _made_by_simulator(video: VideoSource) -> bool:
    """Whether ``video`` is one of the built-in simulator's clips (its mp4 comment tag)."""
    try:
        with opened_video(video) as (container, _):
            return container.metadata.get("comment") == SIMULATOR_MARK
    except ProbeError:
        return False


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
class ExtractedFrame:
    """A saved frame, and the PNG to show the agent (at most SHOWN_FRAME_SIDE pixels:
    the file keeps the video's own size, so it can be the next video's first frame)."""

    frame: Frame
    shown_png: bytes


def extract(source: VideoSource, at: Sequence[float | FramePosition]) -> list[ExtractedFrame]:
    """The frames of ``source`` at each of ``at``, saved as PNG beside it (no clobbering;
    a frame asked for again, even by calls at once, is the file saved the first time)."""
    video = path_of(source)
    probe = probe_video(source)
    duration = probe.duration_seconds
    # Checked before any frame is decoded or saved: a time past the end is a mistake to
    # tell, not the last frame to hand back as if it were the one asked for.
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
    frames: list[ExtractedFrame] = []
    for decoded in frames_at(source, times):
        png, width, height = encode_png(decoded.frame)
        shown = png
        if max(width, height) > SHOWN_FRAME_SIDE:
            shown = encode_png(decoded.frame, max_side=SHOWN_FRAME_SIDE)[0]
        name = f"{video.stem}.frame-{decoded.at_seconds:.3f}s.png"
        path = save_or_reuse(video.parent, name, png)
        saved = Frame(
            at_seconds=decoded.at_seconds,
            path=str(path),
            uri=path.as_uri(),
            width=width,
            height=height,
        )
        frames.append(ExtractedFrame(frame=saved, shown_png=shown))
    return frames
