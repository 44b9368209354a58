"""Logging to stderr, with secrets scrubbed.

stdout of a stdio server carries only MCP messages, so every handler here
writes to stderr. A filter scrubs anything that looks like an API key or a
signed URL's query string, as a last line of defence behind the code's own care.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from .redact import scrub


class ScrubFilter(logging.Filter):
    """Rewrites each record's final message through :func:`~gravitex_mcp.redact.scrub`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


#: Loggers kept at WARNING or above: they log full request URLs at INFO.
NOISY = ("httpx2", "httpx", "httpcore", "uvicorn.access")


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
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
