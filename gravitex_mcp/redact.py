"""Keeping secrets out of logs, errors and the journal's public view.

Signed URLs carry their signature in the query string and the API key must
never be shown, so everything that may print a URL or upstream text passes
through here, as do long texts, which :func:`clip` cuts.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx2

_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\"]+")
_URL_IN_TEXT = re.compile(r"(?i)\b(?:https?|data):[^\s\"'<>]+")
#: A query string left in text once the URLs with a scheme are cleaned: a relative
#: redirect's ``Location`` (``/v.mp4?X-Amz-Signature=…``) or a scheme-relative URL.
_QUERY_IN_TEXT = re.compile(r"\?[^\s\"'<>?#=]*=[^\s\"'<>]*")


def redact_url(url: str | httpx2.URL) -> str:
    """``scheme://host[:port]/path`` of ``url``: no user info, query or fragment.

    A URL with a scheme but no host (``data:``, ``mailto:``) shows only its
    scheme, so a data URL's payload never leaks; a relative one keeps what
    precedes its query or fragment.
    """
    text = str(url).strip()
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
