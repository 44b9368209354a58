"""Data URLs ``data:<mime>;base64,<payload>``: a PNG, JPEG (``image/jpg`` is read as
``image/jpeg``) or WEBP in strict standard base64, at most ``MAX_MEDIA_BYTES`` decoded
(judged from the length before decoding), whose bytes really are the declared type with
a readable header. Sent rebuilt as ``data:<mime>;base64,<payload>`` (extra parameters
dropped)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Final

from ...images import ACCEPTED_IMAGE_TYPES, describe_bytes, sniff_image_type
from ...redact import clip
from .media import (
    ECHO_LIMIT,
    IMAGE_TYPES_TEXT,
    LIMIT_TEXT,
    MAX_MEDIA_BYTES,
    VALID_AUDIO,
    VALID_DATA_URL,
    MediaKind,
    ResolvedMedia,
    echo,
    held_media,
    megabytes,
    refuse,
)

_MAX_BASE64_LENGTH: Final = 4 * ((MAX_MEDIA_BYTES + 2) // 3)
_MIME_ALIASES: Final = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_BASE64_BODY_RE: Final = re.compile(r"[A-Za-z0-9+/]*")
_NOT_BASE64_RE: Final = re.compile(r"[^A-Za-z0-9+/=]")


def locate_data_url(value: str, *, field: str, kind: MediaKind) -> int:
    """Check a data URL without decoding it; the number of bytes it holds."""
    if kind == "audio":
        refuse(
            field,
            f"{echo(value)} is a data URL; the Gravitex API takes audio only as an https URL "
            f"(its docs: 'Custom audio file URL (HTTPS format)'). {VALID_AUDIO}",
        )
    comma = value.find(",")
    if comma < 0:
        refuse(
            field,
            f"{echo(value)} is not a valid data URL (no ',' before the data); {VALID_DATA_URL}",
        )
    # The payload is never sliced out here: it may be megabytes, and is judged in place.
    header, start = value[5:comma], comma + 1
    length = len(value) - start
    params = [part.strip() for part in header.split(";")]
    declared = params[0].lower()
    if len(params) < 2 or params[-1].lower() != "base64":
        refuse(
            field,
            f"{echo(value)} is not base64-encoded; only ';base64' data URLs are accepted. "
            f"{VALID_DATA_URL}",
        )
    if not declared:
        refuse(field, f"the data URL has no MIME type; {VALID_DATA_URL}")
    mime = _MIME_ALIASES.get(declared, declared)
    if mime not in ACCEPTED_IMAGE_TYPES:
        refuse(
            field,
            f"the data URL's MIME type {clip(declared, ECHO_LIMIT)!r} is not accepted; "
            "valid MIME types: "
            f"{', '.join(ACCEPTED_IMAGE_TYPES)} (image/jpg is read as image/jpeg)",
        )
    if not length:
        refuse(field, f"the data URL has no data after the ','; {VALID_DATA_URL}")
    if length > _MAX_BASE64_LENGTH:
        approx = length * 3 // 4
        refuse(
            field,
            f"the data URL holds about {approx} bytes ({megabytes(approx)}); {LIMIT_TEXT}. "
            "Use a smaller image or an https:// URL.",
        )
    problem = _base64_problem(value, start)
    if problem is not None:
        refuse(field, f"the data URL's payload is not valid base64: {problem}. {VALID_DATA_URL}")
    return length * 3 // 4 - _padding(value, start)


def decode_data_url(value: str, *, field: str) -> ResolvedMedia:
    """Decode a data URL that :func:`_locate_data_url` accepted and check its bytes."""
    header, payload = value[5:].split(",", 1)
    declared = header.split(";")[0].strip().lower()
    mime = _MIME_ALIASES.get(declared, declared)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        refuse(field, f"the data URL's payload is not valid base64 ({exc}); {VALID_DATA_URL}")
    if len(data) > MAX_MEDIA_BYTES:
        refuse(
            field,
            f"the data URL holds {len(data)} bytes ({megabytes(len(data))}); {LIMIT_TEXT}. "
            "Use a smaller image or an https:// URL.",
        )
    real = sniff_image_type(data)
    if real is None:
        refuse(
            field,
            f"the data URL says {mime} but its bytes are {describe_bytes(data)}; valid: the bytes "
            f"of a {IMAGE_TYPES_TEXT} image",
        )
    if real != mime:
        refuse(
            field,
            f"the data URL says {mime} but its bytes are {describe_bytes(data)}; "
            f"declare the real type (data:{real};base64,...)",
        )
    return held_media(
        data,
        mime=mime,
        url=f"data:{mime};base64,{payload}",
        source="data_url",
        field=field,
        what="the data URL's image",
    )


def _padding(text: str, start: int) -> int:
    """How many ``=`` end ``text[start:]`` (up to 3: more is as wrong as 3)."""
    tail = text[max(start, len(text) - 3) :]
    return len(tail) - len(tail.rstrip("="))


def _base64_problem(text: str, start: int = 0) -> str | None:
    """Why ``text[start:]`` is not strict standard base64, or ``None`` (read in place)."""
    bad = _NOT_BASE64_RE.search(text, start)
    if bad is not None:
        char = bad.group()
        hint = ""
        if char.isspace():
            hint = " (whitespace and line breaks are not allowed)"
        elif char in "-_":
            hint = " (that is URL-safe base64; use the standard alphabet with + and /)"
        elif char == "%":
            hint = " (percent-encoding is not allowed)"
        position = bad.start() - start
        return f"character {char!r} at position {position} is not in the alphabet{hint}"
    padding = _padding(text, start)
    body_end = len(text) - padding
    if (
        padding > 2
        or (len(text) - start) % 4
        or not _BASE64_BODY_RE.fullmatch(text, start, body_end)
    ):
        return (
            "wrong length or padding (the length must be a multiple of 4, "
            "with at most two '=' and only at the end)"
        )
    return None
