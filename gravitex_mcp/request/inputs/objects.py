"""Media given as an ``s3://`` URI: accepted only for an object this server saved.

With object storage (``GRAVITEX_STORAGE_URL``) a saved frame's location is an
``s3://bucket/prefix/name`` URI, so that URI is accepted wherever a saved frame's path
is; it travels upstream as a data URL, as a local file does. Any other ``s3://`` URI
(another bucket, outside the prefix) is refused: the server's credentials must not read
what its caller could not. The reading is the video store's (:class:`SavedObjects`).
"""

from __future__ import annotations

from typing import Protocol

from .media import MAX_MEDIA_BYTES, MEDIA_LIMIT, MediaKind, ResolvedMedia, echo, refuse
from .paths import checked_bytes

SCHEME = "s3://"


class SavedObjects(Protocol):
    """The video store, as media inputs see it (blocking calls)."""

    def owns(self, location: str) -> bool:
        """Whether ``location`` is an ``s3://`` URI of an object this store may save."""
        ...

    def size_of(self, location: str) -> int | None:
        """The object's size; ``None`` when there is none."""
        ...

    def read_saved(self, location: str, *, limit: int) -> bytes | None:
        """The object's bytes (``None`` when gone or larger than ``limit``)."""
        ...


def is_object_uri(value: str) -> bool:
    return value[: len(SCHEME)].lower() == SCHEME


def locate_object(value: str, *, field: str, objects: SavedObjects | None) -> int:
    """The size of the saved object ``value`` names (a HEAD, no body read)."""
    shown = echo(value)
    if objects is None or not objects.owns(value):
        refuse(
            field,
            f"{shown} is not an object this server saved (only s3:// URIs of its own "
            "saved frames are read); valid: an https:// URL, a data URL, or a saved frame",
        )
    size = objects.size_of(value)
    if size is None:
        refuse(field, f"{shown} does not exist (any more); extract the frame again")
    if size > MAX_MEDIA_BYTES:
        refuse(field, f"{shown} is {size} bytes; the limit is {MEDIA_LIMIT} per file")
    return size


def read_object(value: str, *, field: str, kind: MediaKind, objects: SavedObjects) -> ResolvedMedia:
    """Read the saved object and check its bytes are what ``kind`` takes."""
    data = objects.read_saved(value, limit=MAX_MEDIA_BYTES)
    if data is None:
        refuse(field, f"{echo(value)} is gone or grew past {MEDIA_LIMIT}; extract it again")
    return checked_bytes(data, field=field, kind=kind, shown=echo(value))
