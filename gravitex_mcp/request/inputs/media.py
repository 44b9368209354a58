"""What every kind of caller media shares: the kinds, the limits, the checked result,
and the refusal (one :class:`~gravitex_mcp.errors.Problem` for the field, saying what
is wrong and what is valid, never echoing a data URL's payload or a URL's secrets)."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from ...errors import InvalidArgumentsError
from ...images import describe_bytes, image_dimensions
from ...redact import clip, redact_url
from .audio import AUDIO_TYPES_TEXT, sniff_audio_type

MediaKind = Literal["image", "audio"]
MediaSource = Literal["url", "data_url", "path"]

MAX_MEDIA_BYTES: Final = 10 * 1024 * 1024
"""The most bytes an image (decoded data URL or local file) may have."""

MAX_REQUEST_MEDIA_BYTES: Final = 2 * MAX_MEDIA_BYTES
"""The most inline bytes (decoded data URLs and local files) one request may carry in all:
a first and a last frame at the limit. Media given as https URLs do not count."""

MEDIA_LIMIT: Final = f"{MAX_MEDIA_BYTES // (1024 * 1024)} MB"
""":data:`MAX_MEDIA_BYTES` as the messages say it."""
LIMIT_TEXT: Final = f"the limit is {MEDIA_LIMIT} ({MAX_MEDIA_BYTES} bytes)"

ECHO_LIMIT: Final = 80
SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
IMAGE_TYPES_TEXT: Final = "PNG, JPEG or WEBP"
VALID_IMAGE: Final = (
    "valid: an https:// URL, a data:image/png|jpeg|webp;base64,... URL, or the path of a "
    f"{IMAGE_TYPES_TEXT} file of at most {MEDIA_LIMIT} inside GRAVITEX_INPUT_DIRS"
)
VALID_AUDIO: Final = (
    "valid: an https:// URL of the audio file that the provider can fetch (e.g. "
    f"https://example.com/audio.mp3), or the path of an audio file of at most {MEDIA_LIMIT} "
    "inside GRAVITEX_INPUT_DIRS"
)
VALID_DATA_URL: Final = (
    "valid: data:image/png;base64,<standard base64>, or image/jpeg or image/webp, "
    f"at most {MEDIA_LIMIT} decoded"
)


@dataclass(frozen=True, slots=True)
class ResolvedMedia:
    """One checked media argument, ready to travel upstream.

    ``url`` is the https URL exactly as given, or a data URL (given, or built
    from a local file). ``mime_type``, ``size_bytes``, ``width``, ``height``
    and ``sha256`` describe the bytes we hold (data URL or file) and are
    ``None`` for an https URL, whose bytes we never see.
    """

    url: str
    source: MediaSource
    mime_type: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    sha256: str | None

    def journal_value(self) -> str:
        """What the task journal keeps: the URL without its query string, or a digest.

        Never contains a data URL's payload.
        """
        if self.source == "url":
            return redact_url(self.url)  # a signed URL's signature stays out of the journal
        return f"sha256:{self.sha256} ({self.mime_type}, {self.size_bytes} bytes)"


def held_media(
    data: bytes, *, mime: str, url: str, source: MediaSource, field: str, what: str
) -> ResolvedMedia:
    size = image_dimensions(data)
    if size is None:
        refuse(
            field,
            f"{what} starts like {mime} but its header is truncated or damaged "
            "(no readable width and height); valid: a complete PNG, JPEG or WEBP image",
        )
    width, height = size
    return ResolvedMedia(
        url=url,
        source=source,
        mime_type=mime,
        size_bytes=len(data),
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def held_audio(data: bytes, *, field: str, shown: str) -> ResolvedMedia:
    # The docs describe audio_url as an https URL; a local file travels as a data
    # URL like local images do (the contract allows a path here).
    mime = sniff_audio_type(data)
    if mime is None:
        refuse(
            field,
            f"{shown} is not an audio file: its content is {describe_bytes(data)}; valid: an "
            f"{AUDIO_TYPES_TEXT} file of at most {MEDIA_LIMIT}, or an https:// URL",
        )
    return ResolvedMedia(
        url=data_url(mime, data),
        source="path",
        mime_type=mime,
        size_bytes=len(data),
        width=None,
        height=None,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def refuse(field: str, message: str) -> NoReturn:
    raise InvalidArgumentsError.about(field, message)


def echo(value: str) -> str:
    """A short, safe rendering of a caller's value for an error message.

    Data URLs show only their header; URLs lose credentials and query string.
    """
    if value[:5].lower() == "data:":
        header = value.split(",", 1)[0]
        return f"{clip(header, 60)!r} (data URL of {len(value)} characters)"
    scheme, sep, rest = value.partition("://")
    if sep and SCHEME_RE.fullmatch(scheme + ":"):
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, tail = rest[:cut], rest[cut:]
        if "@" in authority:
            authority = "…@" + authority.rsplit("@", 1)[1]
        path, query_mark, _query = tail.partition("?")
        path = path.split("#", 1)[0]
        shown = f"{scheme}://{authority}{path}{'?…' if query_mark else ''}"
        return repr(clip(shown, ECHO_LIMIT))
    return repr(clip(value, ECHO_LIMIT))


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.2f} MB"


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def data_url(mime: str, data: bytes) -> str:
    """``data`` as a ``data:<mime>;base64,...`` URL (how a local file travels upstream)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
