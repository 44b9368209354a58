"""The ftyp check and the streaming box walk (mp4.py)."""

from __future__ import annotations

import random
import struct

import pytest

from gravitex_mcp.errors import TruncatedDownloadError, VideoIntegrityError
from gravitex_mcp.upstream.mp4 import Mp4StreamCheck, describe_head, looks_like_mp4

FTYP = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def large_box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


def video(mdat_payload: int = 1000) -> bytes:
    return FTYP + box(b"moov", b"m" * 40) + box(b"mdat", b"\x01" * mdat_payload)


def feed_all(data: bytes, chunk: int) -> Mp4StreamCheck:
    check = Mp4StreamCheck()
    for i in range(0, len(data), chunk):
        check.feed(data[i : i + chunk])
    return check


# --- looks_like_mp4 -----------------------------------------------------------------


def test_ftyp_head_is_mp4() -> None:
    assert looks_like_mp4(FTYP)
    assert looks_like_mp4(video()[:16])


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x00\x00\x00\x18ftz",
        b"<!DOCTYPE html><html><body>403 Forbidden</body></html>",
        b'{"error": {"message": "expired"}}',
        b"\x00\x00\x00\x18moovisom\x00\x00\x02\x00",  # first box is not ftyp
        struct.pack(">I4s4s", 8, b"ftyp", b"isom"),  # too small for an ftyp box
        struct.pack(">I4s4s", 1 << 30, b"ftyp", b"isom"),  # absurdly large ftyp
        struct.pack(">I4s4s", 24, b"ftyp", b"\x00\x01\x02\x03"),  # unprintable brand
        struct.pack(">I4s", 1, b"ftyp"),  # 64-bit form, size not visible yet
    ],
)
def test_not_mp4_heads(head: bytes) -> None:
    assert not looks_like_mp4(head)


def test_ftyp_with_64bit_size() -> None:
    head = struct.pack(">I4sQ4s", 1, b"ftyp", 24, b"isom")
    assert looks_like_mp4(head)


def test_describe_head_names_html() -> None:
    assert "HTML" in describe_head(b"  <!doctype html><p>no</p>")
    assert "JSON" in describe_head(b'{"a": 1}')
    assert "empty" in describe_head(b"")
    assert "\x00" not in describe_head(b"\x00\x01binary")


# --- the streaming check ------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 8, 13, 16, 64, 4096])
def test_whole_file_at_any_chunking(chunk: int) -> None:
    data = video(777)
    check = feed_all(data, chunk)
    check.finish()
    assert check.size == len(data)
    assert check.boxes == ("ftyp", "moov", "mdat")


def test_random_splits() -> None:
    rng = random.Random(7)
    data = video(3000) + large_box(b"free", b"\x00" * 100) + box(b"udta", b"x")
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randrange(0, 12)))
        check = Mp4StreamCheck()
        last = 0
        for cut in [*cuts, len(data)]:
            check.feed(data[last:cut])
            last = cut
        check.finish()
        assert check.boxes == ("ftyp", "moov", "mdat", "free", "udta")


def test_truncated_at_every_offset() -> None:
    data = video(50) + large_box(b"free", b"\x00" * 10)
    for end in range(16, len(data)):
        check = feed_all(data[:end], 3)
        if end in (24, 72, 24 + 48 + 58):  # box boundaries: a shorter but well-formed file
            check.finish()
            continue
        with pytest.raises(TruncatedDownloadError):
            check.finish()


def test_truncated_message_names_the_box() -> None:
    data = video(1000)
    check = feed_all(data[:500], 64)
    with pytest.raises(TruncatedDownloadError, match=r"inside box 'mdat' \(428 of 1008 bytes\)"):
        check.finish()


def test_short_ftyp_only_body_is_truncated() -> None:
    check = feed_all(FTYP[:10], 4)
    with pytest.raises(TruncatedDownloadError):
        check.finish()


def test_html_is_refused_on_the_first_bytes() -> None:
    check = Mp4StreamCheck()
    with pytest.raises(VideoIntegrityError, match="HTML") as info:
        check.feed(b"<!DOCTYPE html><html><head><title>Error</title></head>")
    assert not isinstance(info.value, TruncatedDownloadError)


def test_tiny_non_mp4_is_refused_at_finish() -> None:
    check = Mp4StreamCheck()
    check.feed(b"nope")
    with pytest.raises(VideoIntegrityError, match="not an mp4"):
        check.finish()


def test_empty_body_is_refused() -> None:
    with pytest.raises(VideoIntegrityError, match="empty"):
        Mp4StreamCheck().finish()


def test_open_ended_last_box() -> None:
    data = FTYP + struct.pack(">I4s", 0, b"mdat") + b"\x00" * 999
    check = feed_all(data, 10)
    check.finish()
    assert check.boxes == ("ftyp", "mdat")


def test_box_smaller_than_header_is_corrupt() -> None:
    data = FTYP + struct.pack(">I4s", 4, b"mdat") + b"\x00" * 16
    with pytest.raises(VideoIntegrityError, match="less than its own header"):
        feed_all(data, 5)


def test_unreadable_box_type_is_corrupt() -> None:
    data = FTYP + struct.pack(">I4s", 16, b"\x00\x01\x02\x03") + b"\x00" * 8
    with pytest.raises(VideoIntegrityError, match="unreadable type"):
        feed_all(data, 64)


def test_trailing_bytes_after_last_box_are_refused() -> None:
    check = feed_all(video(10) + b"\x00\x00\x00", 7)
    with pytest.raises(TruncatedDownloadError):
        check.finish()
