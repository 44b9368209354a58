"""Looking at a saved video: its probe, notes and contact sheet, and its frames, saved
beside it as stills (never clobbering; an earlier look's sheet reused).

:func:`look_at` is the one entry for every saved video (new or reused, or joined);
:func:`extract` serves ``extract_frames``. Both are blocking (PyAV decoding, file
writes): the service runs them in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StorageError
from ..images import JPEG, image_dimensions, sniff_image_type
from ..results import Frame, Preview, Probe
from ..store.ondisk import HeldFile
from ..store.seam import Stills
from ..store.stills import find_still, save_new, save_or_reuse
from ..video.frames import FramePosition
from ..video.probe import ProbeError
from ..video.seeing import frames_of, look, sheet_of, sheet_times
from ..video.source import VideoSource, path_of

logger = logging.getLogger(__name__)

SHEET_SUFFIX = ".contact.jpg"
#: Largest file read back as an earlier contact sheet (they are kept near 150 KiB).
MAX_READ_SHEET_BYTES = 8 * 1024 * 1024


class _Beside:
    """Stills in the folder of a local video (a path, or a held file without a store)."""

    def save_still(self, video: Path | str, name: str, data: bytes, *, reuse: bool = False) -> Path:
        directory = Path(video).parent
        return save_or_reuse(directory, name, data) if reuse else save_new(directory, name, data)

    def find_still(
        self,
        video: Path | str,
        name: str,
        *,
        made_ns: int,
        limit: int,
        usable: Callable[[bytes], bool],
    ) -> tuple[Path | str, bytes] | None:
        directory = Path(video).parent
        return find_still(directory, name, made_ns=made_ns, limit=limit, usable=usable)


_BESIDE = _Beside()


def _where(source: VideoSource) -> Path | str:
    """Where ``source`` is saved: its stills go beside it."""
    return source.location if isinstance(source, HeldFile) else path_of(source)


def _uri(location: Path | str) -> str:
    return location.as_uri() if isinstance(location, Path) else location


@dataclass(frozen=True, slots=True)
class Seen:
    """What :func:`look_at` found: each part ``None`` when it could not be had."""

    probe: Probe | None
    preview: Preview | None
    notes: list[str] = field(default_factory=list)


def look_at(
    video: VideoSource,
    asked: Mapping[str, Any],
    *,
    picked_size: tuple[int, int] | None = None,
    stills: Stills | None = None,
) -> Seen:
    """Probe ``video``, make (or reuse) its contact sheet, and compare with ``asked``.

    Never raises for a video it cannot read or a sheet it cannot save: the video
    is saved either way, so the reason becomes a note. The sheet goes to ``stills``
    (the video store; default: the video's own folder).
    """
    keep = stills or _BESIDE
    try:
        probe, notes = look(video, asked, picked_size=picked_size)
    except ProbeError as exc:
        return Seen(None, None, [f"Could not look at the saved video: {exc}"])
    try:
        preview = _existing_sheet(video, probe, keep) or _new_sheet(video, probe, keep)
    except (ProbeError, StorageError) as exc:
        notes.append(f"No contact sheet: {exc}")
        preview = None
    return Seen(probe, preview, notes)


def sheet_path(video: Path) -> Path:
    """Where the contact sheet of ``video`` is saved first (``<stem>.contact.jpg``)."""
    return video.with_name(video.stem + SHEET_SUFFIX)


def _new_sheet(source: VideoSource, probe: Probe, stills: Stills) -> Preview:
    video = path_of(source)
    sheet = sheet_of(source, probe)
    where = stills.save_still(_where(source), sheet_path(video).name, sheet.jpeg)
    logger.info("contact sheet of %s saved to %s", video.name, where)
    return Preview(
        path=str(where),
        uri=_uri(where),
        width=sheet.width,
        height=sheet.height,
        at_seconds=sheet.at_seconds,
    )


def _existing_sheet(source: VideoSource, probe: Probe, stills: Stills) -> Preview | None:
    """The sheet an earlier look saved for this very file, when it is still there.

    A sheet older than the video is never reused, nor replaced (nothing is clobbered),
    so the new one is saved as ``<stem>.contact-N.jpg``; the newest sheet made after
    the video is the one kept.
    """
    video = path_of(source)
    try:
        # A held file's mtime as checked, not whatever its name leads to now.
        made = (
            source.identity.mtime_ns if isinstance(source, HeldFile) else video.stat().st_mtime_ns
        )
        found = stills.find_still(
            _where(source),
            sheet_path(video).name,
            made_ns=made,
            limit=MAX_READ_SHEET_BYTES,
            usable=lambda data: sniff_image_type(data) == JPEG and bool(image_dimensions(data)),
        )
    except OSError:
        return None
    if found is None:
        return None
    path, data = found
    width, height = image_dimensions(data) or (0, 0)
    # Its tiles' times follow from the video's duration, as when it was made.
    return Preview(
        path=str(path), uri=_uri(path), width=width, height=height, at_seconds=sheet_times(probe)
    )


@dataclass(frozen=True, slots=True)
class ExtractedFrame:
    """A saved frame, and the PNG to show the agent (see ``video.seeing.PngFrame``)."""

    frame: Frame
    shown_png: bytes


def extract(
    source: VideoSource, at: Sequence[float | FramePosition], *, stills: Stills | None = None
) -> list[ExtractedFrame]:
    """The frames of ``source`` at each of ``at``, saved as PNG beside it in ``stills``
    (no clobbering; a frame asked for again, even by calls at once, is the file saved
    the first time)."""
    video = path_of(source)
    keep = stills or _BESIDE
    frames = []
    for png in frames_of(source, at):
        name = f"{video.stem}.frame-{png.at_seconds:.3f}s.png"
        where = keep.save_still(_where(source), name, png.png, reuse=True)
        saved = Frame(
            at_seconds=png.at_seconds,
            path=str(where),
            uri=_uri(where),
            width=png.width,
            height=png.height,
        )
        frames.append(ExtractedFrame(frame=saved, shown_png=png.shown_png))
    return frames
