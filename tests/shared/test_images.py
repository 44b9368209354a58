"""Image header sniffing on tiny images built by hand (no Pillow).

The ``make_*`` builders are also used by ``tests/request/test_inputs.py``.
"""

from __future__ import annotations

import struct
import zlib

import pytest

from gravitex_mcp.images import (
    ACCEPTED_IMAGE_TYPES,
    describe_bytes,
    image_dimensions,
    sniff_image_type,
)

# --- builders ----------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def make_png(width: int, height: int) -> bytes:
    """A complete, valid 8-bit RGB PNG (black) of the given size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def make_jpeg(width: int, height: int, *, sof: int = 0xC0, fill_bytes: int = 0) -> bytes:
    """A baseline (or other SOFn) JPEG header good enough for dimension sniffing.

    SOI, APP0 (JFIF), APP1 (Exif) whose body contains a decoy SOF0 marker for
    a 1x1 image (a parser that scans for FF C0 instead of skipping segments
    reads the wrong size), COM, DQT, the frame header, DHT, SOS, a little
    entropy-coded data and EOI. ``fill_bytes`` adds 0xFF padding before the
    frame header's marker, which the format allows.
    """
    app0 = _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    decoy = b"\xff\xc0\x00\x11\x08\x00\x01\x00\x01\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    app1 = _jpeg_segment(0xE1, b"Exif\x00\x00" + decoy + b"\x00" * 20)
    com = _jpeg_segment(0xFE, b"made by hand")
    dqt = _jpeg_segment(0xDB, b"\x00" + bytes(range(1, 65)))
    components = b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    frame = _jpeg_segment(sof, b"\x08" + struct.pack(">HH", height, width) + b"\x03" + components)
    dht = _jpeg_segment(0xC4, b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00")
    sos = _jpeg_segment(0xDA, b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00")
    return (
        b"\xff\xd8"
        + app0
        + app1
        + com
        + dqt
        + b"\xff" * fill_bytes
        + frame
        + dht
        + sos
        + b"\x12\x34\xff\x00\x56"
        + b"\xff\xd9"
    )


def _riff_webp(chunk: bytes, body: bytes, extra: bytes = b"") -> bytes:
    if len(body) % 2:
        body += b"\x00"
    payload = b"WEBP" + chunk + struct.pack("<I", len(body)) + body + extra
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def make_webp_vp8(width: int, height: int) -> bytes:
    """A lossy (VP8) WEBP key-frame header with the given size (scale bits set)."""
    frame_tag = b"\x50\x01\x00"  # key frame (bit 0 clear), version 0, shown
    size = struct.pack("<HH", width | (1 << 14), height | (2 << 14))  # scale bits ignored
    return _riff_webp(b"VP8 ", frame_tag + b"\x9d\x01\x2a" + size + b"\x00" * 10)


def make_webp_vp8l(width: int, height: int) -> bytes:
    """A lossless (VP8L) WEBP header with the given size (alpha flag set)."""
    bits = (width - 1) | ((height - 1) << 14) | (1 << 28)
    return _riff_webp(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 5)


def make_webp_vp8x(width: int, height: int) -> bytes:
    """An extended (VP8X) WEBP: canvas size in the VP8X chunk, then a VP8L chunk."""
    body = b"\x10\x00\x00\x00" + (width - 1).to_bytes(3, "little")
    body += (height - 1).to_bytes(3, "little")
    inner = make_webp_vp8l(3, 5)[12:]  # a VP8L chunk of a different size: the canvas wins
    return _riff_webp(b"VP8X", body, extra=inner)


# --- sniffing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (make_png(3, 2), "image/png"),
        (make_jpeg(3, 2), "image/jpeg"),
        (make_webp_vp8(3, 2), "image/webp"),
        (make_webp_vp8l(3, 2), "image/webp"),
        (make_webp_vp8x(3, 2), "image/webp"),
    ],
)
def test_sniff_accepted_types(data: bytes, mime: str) -> None:
    assert sniff_image_type(data) == mime
    assert mime in ACCEPTED_IMAGE_TYPES


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, I am a text file pretending to be a PNG\n",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00",
        b"BM" + b"\x00" * 40,
        b"\x89PNG\r\n",  # signature cut short
        b"\xff\xd8",  # SOI without a following marker
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
        b"RIFF\x10\x00\x00\x00WEBPJUNK",  # WEBP without a VP8* chunk
    ],
)
def test_sniff_refuses_everything_else(data: bytes) -> None:
    assert sniff_image_type(data) is None
    assert image_dimensions(data) is None


# --- dimensions ----------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 2), (1280, 720), (720, 1280)])
def test_png_dimensions(width: int, height: int) -> None:
    assert image_dimensions(make_png(width, height)) == (width, height)


@pytest.mark.parametrize("sof", [0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCF])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (640, 480), (1280, 720), (65535, 2)])
def test_jpeg_dimensions_skip_app_segments(width: int, height: int, sof: int) -> None:
    # The APP1 decoy says 1x1: only a segment-walking parser gets this right.
    data = make_jpeg(width, height, sof=sof)
    assert image_dimensions(data) == (width, height)


def test_jpeg_fill_bytes_before_marker() -> None:
    assert image_dimensions(make_jpeg(33, 44, fill_bytes=3)) == (33, 44)


def test_jpeg_dht_is_not_a_frame_header() -> None:
    # C4 (DHT) sits in the SOF range; it must be skipped, not read as a size.
    data = make_jpeg(50, 60)
    assert b"\xff\xc4" in data
    assert data.index(b"\xff\xc4") > data.index(b"\xff\xc0", 30)
    dht_first = data.replace(b"\xff\xd8", b"\xff\xd8" + _jpeg_segment(0xC4, b"\x00" * 17), 1)
    assert image_dimensions(dht_first) == (50, 60)


def test_jpeg_scan_before_frame_header_is_unreadable() -> None:
    sos = _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    assert image_dimensions(b"\xff\xd8" + sos + b"\x00\x00\xff\xd9") is None


def test_jpeg_truncated_or_damaged() -> None:
    full = make_jpeg(10, 20)
    frame_at = full.index(b"\xff\xc0", 30)
    assert image_dimensions(full[: frame_at + 6]) is None  # cut inside the frame header
    assert image_dimensions(full[:40]) is None  # cut inside APP1
    assert image_dimensions(b"\xff\xd8\xff\xe0\x00") is None
    assert image_dimensions(b"\xff\xd8\xffJUNK") is None
    assert image_dimensions(make_jpeg(0, 20)) is None  # zero width
    assert image_dimensions(make_jpeg(10, 0)) is None  # height left to a DNL marker


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 2), (1280, 720), (16383, 16383)])
def test_webp_vp8_dimensions(width: int, height: int) -> None:
    assert image_dimensions(make_webp_vp8(width, height)) == (width, height)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 2), (1280, 720), (16384, 16384)])
def test_webp_vp8l_dimensions(width: int, height: int) -> None:
    assert image_dimensions(make_webp_vp8l(width, height)) == (width, height)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 2), (1280, 720), (16777216, 20000)])
def test_webp_vp8x_dimensions(width: int, height: int) -> None:
    assert image_dimensions(make_webp_vp8x(width, height)) == (width, height)


def test_webp_damaged_headers() -> None:
    vp8 = bytearray(make_webp_vp8(10, 10))
    vp8[23] = 0x00  # broken start code
    assert image_dimensions(bytes(vp8)) is None
    inter = bytearray(make_webp_vp8(10, 10))
    inter[20] |= 0x01  # an inter frame has no size
    assert image_dimensions(bytes(inter)) is None
    vp8l = bytearray(make_webp_vp8l(10, 10))
    vp8l[20] = 0x00  # wrong VP8L signature
    assert image_dimensions(bytes(vp8l)) is None
    versioned = bytearray(make_webp_vp8l(10, 10))
    versioned[24] |= 0x20  # version bits must be 0
    assert image_dimensions(bytes(versioned)) is None
    assert image_dimensions(make_webp_vp8x(10, 10)[:28]) is None
    assert image_dimensions(make_webp_vp8(0, 10)) is None


def test_png_damaged_headers() -> None:
    png = make_png(4, 4)
    assert image_dimensions(png[:20]) is None  # cut inside IHDR
    assert image_dimensions(png[:12] + b"IDAT" + png[16:]) is None  # first chunk not IHDR
    zero = png[:16] + struct.pack(">I", 0) + png[20:]
    assert image_dimensions(zero) is None
    huge = png[:16] + struct.pack(">I", 2**31) + png[20:]
    assert image_dimensions(huge) is None


# --- descriptions for error messages ---------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (make_png(1, 1), "PNG image"),
        (make_jpeg(1, 1), "JPEG image"),
        (make_webp_vp8l(1, 1), "WEBP image"),
        (b"GIF89a\x01\x00\x01\x00", "GIF"),
        (b"%PDF-1.7\n", "PDF"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "MP3"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "WAV"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "MP4"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC"),
        ("just some text, caf\u00e9\n".encode(), "text"),
        (bytes(range(256)), "unrecognised"),
    ],
)
def test_describe_bytes(data: bytes, fragment: str) -> None:
    assert fragment in describe_bytes(data)
