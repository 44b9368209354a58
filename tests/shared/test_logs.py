from __future__ import annotations

import io
import logging

import pytest

from gravitex_mcp.logs import configure_logging
from gravitex_mcp.redact import scrub


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        ("key is sk-abcdef123456", "sk-abcdef123456"),
        ("Authorization: Bearer tok_live_xyz", "tok_live_xyz"),
        ("GET https://cdn.example.com/v.mp4?Expires=1&Signature=abc", "Signature=abc"),
        ("image data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB", "iVBORw0KGgoAAAANSUhEUg"),
    ],
)
def test_scrub_removes_secrets(raw: str, secret: str) -> None:
    cleaned = scrub(raw)
    assert secret not in cleaned
    assert cleaned != raw


def test_scrub_keeps_ordinary_text() -> None:
    text = "submitted task video_123 (sora-2) to https://api.gravitex.ai/v1/video/generations"
    assert scrub(text) == text


@pytest.mark.usefixtures("restore_logging")
def test_logging_goes_to_the_given_stream_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    logging.getLogger("gravitex_mcp.test").info("using key %s", "sk-supersecretvalue")
    out = stream.getvalue()
    assert "using key sk-***" in out
    assert "supersecretvalue" not in out
