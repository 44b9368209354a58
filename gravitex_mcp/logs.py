"""Logging to stderr, with secrets scrubbed.

stdout of a stdio server carries only MCP messages, so every handler here
writes to stderr. A filter scrubs anything that looks like an API key or a
signed URL's query string, as a last line of defence behind the code's own care.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_URL_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")
_DATA_URL = re.compile(r"(data:[\w/+.-]+;base64,)[A-Za-z0-9+/=]{16,}")


def scrub(text: str) -> str:
    """``text`` without API keys, bearer tokens, URL query strings or data-URL payloads."""
    text = _KEY.sub("sk-***", text)
    text = _BEARER.sub(r"\1***", text)
    text = _URL_QUERY.sub(r"\1?…", text)
    return _DATA_URL.sub(r"\1…", text)


class ScrubFilter(logging.Filter):
    """Rewrites each record's final message through :func:`scrub`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str, stream: TextIO | None = None) -> None:
    """Send every log record to stderr (or ``stream``) at ``level``, scrubbed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx-style clients log full URLs (signed query strings) at INFO.
    for noisy in ("httpx2", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
