"""Keeping secrets out of logs, errors and the journal's public view.

Signed URLs carry their signature in the query string and the API key must
never be shown, so everything that may print a URL or upstream text passes
through here, as do long texts, which :func:`clip` cuts. Media sent as ``data:``
URLs is recorded and shown only as a digest (:func:`redact_data_urls`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from enum import Enum
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from pydantic import BaseModel

_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\"]+")
_URL_IN_TEXT = re.compile(r"(?i)\b(?:https?|data):[^\s\"'<>]+")
#: A query string left in text once the URLs with a scheme are cleaned: a relative
#: redirect's ``Location`` (``/v.mp4?X-Amz-Signature=…``) or a scheme-relative URL.
_QUERY_IN_TEXT = re.compile(r"\?[^\s\"'<>?#=]*=[^\s\"'<>]*")


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no user info, query or fragment.

    A URL with a scheme but no host (``data:``, ``mailto:``) shows only its
    scheme, so a data URL's payload never leaks; a relative one keeps what
    precedes its query or fragment.
    """
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    scheme = parts.scheme.lower()
    if not parts.netloc:
        if scheme:
            return f"{scheme}:<redacted>"
        return re.split(r"[?#]", text, maxsplit=1)[0]
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port_part = f":{port}" if port is not None else ""
    prefix = f"{scheme}://" if scheme else "//"
    return f"{prefix}{host}{port_part}{parts.path}"


def scrub(text: str, secret: str | None = None) -> str:
    """``text`` without ``secret``, API-key-like tokens, bearer tokens, URL query
    strings (of relative URLs too) or data-URL payloads."""
    if secret:
        text = text.replace(secret, "[redacted]")
    text = _KEY_LIKE.sub("sk-***", text)
    text = _BEARER.sub(r"\1***", text)
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _QUERY_IN_TEXT.sub("", text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_MIME_PART = r"[A-Za-z0-9!#$&^_.+-]+"
_DATA_URL = re.compile(
    rf"\s*data:(?P<mime>{_MIME_PART}/{_MIME_PART})?(?P<params>(?:;[^,;]*)*),(?P<payload>.*)",
    re.IGNORECASE | re.DOTALL,
)
_EMBEDDED_BASE64_DATA_URL = re.compile(
    rf"data:(?:{_MIME_PART}/{_MIME_PART})?(?:;[A-Za-z0-9._=+-]+)*;base64,[A-Za-z0-9+/_=-]+",
    re.IGNORECASE,
)


def _digest(data: bytes, mime: str, note: str = "") -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()} ({mime}, {len(data)} bytes{note})"


def data_url_digest(value: str) -> str | None:
    """``sha256:<hex> (<mime>, N bytes)`` of a data URL's decoded bytes.

    ``None`` when ``value`` is not a data URL. A payload that claims base64
    but is not valid base64 is hashed as it stands and marked so.
    """
    match = _DATA_URL.fullmatch(value)
    if match is None:
        return None
    mime = (match["mime"] or "text/plain").lower()
    params = [p.strip().lower() for p in match["params"].split(";") if p.strip()]
    payload = match["payload"]
    if "base64" in params:
        compact = re.sub(r"\s+", "", payload)
        if "-" in compact or "_" in compact:  # the URL-safe alphabet
            compact = compact.translate(str.maketrans("-_", "+/"))
        try:
            return _digest(base64.b64decode(compact.encode("ascii"), validate=True), mime)
        except (binascii.Error, ValueError):
            pass
        return _digest(payload.encode("utf-8", "surrogatepass"), mime, ", not valid base64")
    return _digest(unquote_to_bytes(payload), mime)


def digest_data_urls(text: str) -> str:
    """``text`` with each data URL in it (or the whole of it) replaced by its digest."""
    whole = data_url_digest(text)
    if whole is not None:
        return whole

    def _one(match: re.Match[str]) -> str:
        return data_url_digest(match[0]) or match[0]

    return _EMBEDDED_BASE64_DATA_URL.sub(_one, text)


def redact_data_urls(value: Any) -> Any:
    """A JSON-able copy of ``value`` with every ``data:`` URL replaced by its digest.

    Walks mappings, lists, tuples and sets at any depth. Raw bytes become a
    digest too; other objects their ``str()``.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Enum):
        return redact_data_urls(value.value)
    if isinstance(value, str):
        return digest_data_urls(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _digest(bytes(value), "application/octet-stream")
    if isinstance(value, BaseModel):
        return redact_data_urls(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): redact_data_urls(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_data_urls(v) for v in value]
    return digest_data_urls(str(value))
