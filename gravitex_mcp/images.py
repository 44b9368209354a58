"""Image header sniffing: the real type of some bytes, and their pixel size.

Only the three types the Gravitex API accepts are recognised as images:
PNG, JPEG and WEBP (lossy ``VP8``, lossless ``VP8L`` and extended ``VP8X``).
Nothing is decoded: the type comes from the magic bytes and the size from the
header (PNG ``IHDR``, JPEG start-of-frame segment, WEBP bitstream/canvas
header), so a few hundred bytes are usually enough. Pure functions, no I/O.
"""

from __future__ import annotations

import struct
from typing import Final

PNG: Final = "image/png"
JPEG: Final = "image/jpeg"
WEBP: Final = "image/webp"
ACCEPTED_IMAGE_TYPES: Final[tuple[str, ...]] = (PNG, JPEG, WEBP)

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI: Final = b"\xff\xd8\xff"
_WEBP_CHUNKS: Final = (b"VP8 ", b"VP8L", b"VP8X")

# JPEG start-of-frame markers: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone (no length field): TEM, RST0-7, SOI.
_JPEG_STANDALONE: Final = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_JPEG_EOI: Final = 0xD9
_JPEG_SOS: Final = 0xDA

_PNG_MAX_DIMENSION: Final = 2**31 - 1


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of ``data`` by its magic bytes, if it is PNG, JPEG or WEBP.

    Returns ``"image/png"``, ``"image/jpeg"``, ``"image/webp"`` or ``None``
    (for anything else, including other image types such as GIF).
    """
    if data.startswith(_PNG_SIGNATURE):
        return PNG
    if data.startswith(_JPEG_SOI):
        return JPEG
    if data[0:4] == b"RIFF" and data[8:12] == b"WEBP" and data[12:16] in _WEBP_CHUNKS:
        return WEBP
    return None


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` in pixels read from the header of a PNG, JPEG or WEBP.

    ``None`` when the type is not one of those, or the header is truncated or
    damaged (including a zero width or height).
    """
    kind = sniff_image_type(data)
    if kind == PNG:
        return _png_dimensions(data)
    if kind == JPEG:
        return _jpeg_dimensions(data)
    if kind == WEBP:
        return _webp_dimensions(data)
    return None


def describe_bytes(data: bytes) -> str:
    """A short human description of what ``data`` looks like, for error messages.

    Names the accepted image types and a few common look-alikes (GIF, BMP,
    TIFF, HEIC/AVIF, PDF, MP3, WAV, MP4, text) so a refusal can say what the
    bytes really are. Never includes the bytes themselves.
    """
    if not data:
        return "empty (0 bytes)"
    kind = sniff_image_type(data)
    if kind is not None:
        return f"a {kind.removeprefix('image/').upper()} image ({kind})"
    head = data[:32]
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "a GIF image (image/gif)"
    if head.startswith(b"BM"):
        return "a BMP image (image/bmp)"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "a TIFF image (image/tiff)"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "a HEIC/HEIF image (image/heic)"
        if brand in (b"avif", b"avis"):
            return "an AVIF image (image/avif)"
        return "an MP4/QuickTime file (video/mp4)"
    if head.startswith(b"%PDF"):
        return "a PDF document (application/pdf)"
    if head[0:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "a WAV audio file (audio/wav)"
    if head[0:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WEBP file with an unknown or damaged first chunk"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "an MP3 audio file (audio/mpeg)"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if _looks_like_text(data[:512]):
        return "text, not image data"
    return "unrecognised binary data"


# --- per-format header readers ------------------------------------------------


def _png_dimensions(data: bytes) -> tuple[int, int] | None:
    # Signature (8), then the first chunk must be IHDR: length (4) "IHDR" width height.
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    if not (0 < width <= _PNG_MAX_DIMENSION and 0 < height <= _PNG_MAX_DIMENSION):
        return None
    return width, height


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    # Walk the marker segments after SOI, skipping APPn, DQT, DHT, COM, ...
    # by their length until a start-of-frame segment gives the size.
    size = len(data)
    pos = 2
    while pos < size:
        if data[pos] != 0xFF:
            return None  # garbage where a marker should be
        while pos < size and data[pos] == 0xFF:  # 0xFF fill bytes before a marker
            pos += 1
        if pos >= size:
            return None
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (_JPEG_EOI, _JPEG_SOS, 0x00):
            return None  # image data (or the end) before any frame header
        if pos + 2 > size:
            return None
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            return None
        if marker in _JPEG_SOF_MARKERS:
            # length (2), sample precision (1), lines (2), samples per line (2)
            if length < 7 or pos + 7 > size:
                return None
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if width == 0 or height == 0:
                return None  # a zero height would be defined later by DNL: not supported
            return width, height
        pos += length
    return None


def _webp_dimensions(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # Payload at 20: frame tag (3 bytes, bit 0 clear for a key frame),
        # start code 9d 01 2a, then 14-bit width and height (2 scale bits each).
        if len(data) < 30 or data[23:26] != b"\x9d\x01\x2a" or data[20] & 0x01:
            return None
        width, height = struct.unpack_from("<HH", data, 26)
        width &= 0x3FFF
        height &= 0x3FFF
    elif chunk == b"VP8L":
        # Payload at 20: signature 0x2f, then 14 bits width-1, 14 bits height-1,
        # 1 bit alpha, 3 bits version (must be 0).
        if len(data) < 25 or data[20] != 0x2F:
            return None
        (bits,) = struct.unpack_from("<I", data, 21)
        if bits >> 29:
            return None
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8X":
        # Payload at 20: flags (1), reserved (3), canvas width-1 (24 bits), height-1 (24 bits).
        if len(data) < 30:
            return None
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
    else:
        return None
    if width == 0 or height == 0:
        return None
    return width, height


def _looks_like_text(sample: bytes) -> bool:
    if b"\x00" in sample:
        return False
    text = sample.decode("utf-8", errors="replace")
    readable = sum(1 for ch in text if ch != "\ufffd" and (ch.isprintable() or ch in "\t\r\n"))
    return readable >= 0.95 * len(text)
