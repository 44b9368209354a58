"""Caller-supplied media -> what travels upstream (:func:`locate_media`, then
:meth:`LocatedMedia.resolve`; :func:`resolve_media` does both).

``image``, ``last_frame`` and every item of ``reference_images`` may be an https URL
(``urls``: passed through, never fetched), a data URL (``data_urls``: a PNG, JPEG or
WEBP, re-sent as ``data:<mime>;base64,<payload>``) or a local path (``paths``: only
inside ``GRAVITEX_INPUT_DIRS`` or the output folder; it travels as a data URL). A value
that starts with ``data:`` is a data URL, one that starts with a URL scheme
(``letters:``) a URL, anything else a path (``./x:y.png`` for a file named ``x:y.png``).

``audio_url`` (Wan 2.5 only) is an https URL or a local path holding MP3, WAV,
M4A/AAC, OGG or FLAC; audio data URLs are refused (the upstream docs: "Custom audio
file URL (HTTPS format)"). Every refusal is one problem for the field (``media``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .data_urls import decode_data_url, locate_data_url
from .media import (
    SCHEME_RE,
    VALID_AUDIO,
    VALID_IMAGE,
    MediaKind,
    MediaSource,
    ResolvedMedia,
    echo,
    refuse,
)
from .objects import SavedObjects, is_object_uri, locate_object, read_object
from .paths import locate_path, read_path
from .urls import check_https_url


@dataclass(frozen=True, slots=True)
class LocatedMedia:
    """A media argument that passed every check that reads no file.

    ``inline_bytes`` is what it adds to the request (decoded data URL or file
    size; 0 for an https URL), known before anything is read or decoded, so a
    request can be refused for its total before any work is spent on it.
    """

    value: str
    field: str
    kind: MediaKind
    source: MediaSource
    inline_bytes: int
    path: Path | None = None
    roots: tuple[Path, ...] = ()
    objects: SavedObjects | None = None
    """The video store a saved object (an ``s3://`` value) is read from."""

    def resolve(self) -> ResolvedMedia:
        """Read (or decode) the bytes and check they are what they claim to be."""
        if self.source == "url":
            return ResolvedMedia(self.value, "url", None, None, None, None, None)
        if self.source == "data_url":
            return decode_data_url(self.value, field=self.field)
        if self.objects is not None:
            return read_object(self.value, field=self.field, kind=self.kind, objects=self.objects)
        assert self.path is not None
        return read_path(
            self.path, value=self.value, field=self.field, kind=self.kind, roots=self.roots
        )


def resolve_media(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    input_dirs: Sequence[Path],
    saved_dir: Path | None = None,
    saved_objects: SavedObjects | None = None,
) -> ResolvedMedia:
    """Check one media argument and turn it into what travels upstream.

    ``field`` names the argument in errors (``"image"``,
    ``"reference_images[1]"``); ``kind`` picks the rules (see the module
    docstring). Raises :class:`InvalidArgumentsError` with one problem for
    ``field`` when the value is refused. ``saved_dir`` (the output folder) is read
    from too: files this server wrote there (extract_frames) may start a video.
    """
    return locate_media(
        value,
        field=field,
        kind=kind,
        input_dirs=input_dirs,
        saved_dir=saved_dir,
        saved_objects=saved_objects,
    ).resolve()


def locate_media(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    input_dirs: Sequence[Path],
    saved_dir: Path | None = None,
    saved_objects: SavedObjects | None = None,
) -> LocatedMedia:
    """The checks of :func:`resolve_media` that read no file and decode nothing."""
    valid = VALID_IMAGE if kind == "image" else VALID_AUDIO
    if not value.strip():
        refuse(field, f"is empty; {valid}")
    if value != value.strip():
        refuse(field, f"{echo(value)} has leading or trailing whitespace; remove it. {valid}")
    if value[:5].lower() == "data:":
        size = locate_data_url(value, field=field, kind=kind)
        return LocatedMedia(value, field, kind, "data_url", size)
    if is_object_uri(value):  # a saved frame in object storage, or refused
        size = locate_object(value, field=field, objects=saved_objects)
        return LocatedMedia(value, field, kind, "path", size, objects=saved_objects)
    scheme = SCHEME_RE.match(value)
    # On Windows "C:\..." is a drive letter, not a one-letter URL scheme.
    if scheme is not None and not (os.name == "nt" and scheme.end() == 2):
        check_https_url(value, field=field, valid=valid)
        return LocatedMedia(value, field, kind, "url", 0)
    path, size, roots = locate_path(
        value, field=field, kind=kind, input_dirs=input_dirs, saved_dir=saved_dir
    )
    return LocatedMedia(value, field, kind, "path", size, path, roots)
