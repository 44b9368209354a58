from __future__ import annotations

import httpx2
import pytest

from gravitex_mcp.redact import redact_url, scrub

SIGNED = "https://cdn.example.test/2025/11/18/abc/video.mp4?Expires=1&Signature=SIGSECRET"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (SIGNED, "https://cdn.example.test/2025/11/18/abc/video.mp4"),
        ("https://h.example/a/b.mp4?X-Tos-Signature=abc#frag", "https://h.example/a/b.mp4"),
        ("https://user:pw@host.test:8443/a/b?x=1#frag", "https://host.test:8443/a/b"),
        ("HTTP://Host.Test/x", "http://host.test/x"),
        ("http://[::1]:8080/v?sig=1", "http://[::1]:8080/v"),
        ("https://h.example", "https://h.example"),
        ("data:video/mp4;base64,AAAAIGZ0eXA=", "data:<redacted>"),
        ("/relative/v.mp4?sig=1", "/relative/v.mp4"),
        ("no-scheme-at-all?token=1", "no-scheme-at-all"),
        ("http://host:notaport/x", "<unparseable URL>"),
        (str(httpx2.URL("https://h.test/p?q=1")), "https://h.test/p"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_scrub_removes_the_given_secret_and_key_like_tokens() -> None:
    text = (
        f"key tok-123 and sk-abcdef123456, Bearer xyz, see {SIGNED} or data:image/png;base64,AAAA"
    )
    cleaned = scrub(text, secret="tok-123")
    for secret in ("tok-123", "sk-abcdef123456", "xyz", "SIGSECRET", "AAAA"):
        assert secret not in cleaned
    assert "https://cdn.example.test/2025/11/18/abc/video.mp4" in cleaned
