"""Real, playable mp4 bytes for the simulator, of any size, without holding them.

The package ships one small real video (``assets/sample.mp4``: 2 s, 320x180,
H.264 + AAC, ``ftyp`` first, ``moov`` before ``mdat``); a task's own clip (see
clips.py) can take its place as the ``base`` of every function here. A video of
a requested size is the base followed by one top-level ``free`` box whose payload is
zeros: players skip ``free`` boxes, so the file still plays and still starts
with the ``ftyp`` box. :func:`iter_mp4` produces such a file chunk by chunk, so
a 256 MB video is never built in memory; :func:`iter_base64` does the same for
its base64 text (the Sora download body).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from functools import cache
from importlib import resources

SAMPLE_RESOURCE = "assets/sample.mp4"
DEFAULT_CHUNK_SIZE = 64 * 1024

_FREE_HEADER = 8  # 32-bit size + "free"
_MAX_32 = 0xFFFFFFFF


@cache
def sample_mp4() -> bytes:
    """The bytes of the shipped sample video (read once, on first use)."""
    return resources.files(__package__).joinpath(SAMPLE_RESOURCE).read_bytes()


def sample_size() -> int:
    """Length in bytes of :func:`sample_mp4`."""
    return len(sample_mp4())


def is_valid_size(size: int, base: bytes | None = None) -> bool:
    """Whether :func:`iter_mp4` can make a file of exactly ``size`` bytes.

    That is the sample's own size, or anything that leaves room for at least
    a ``free`` box header after it.
    """
    length = sample_size() if base is None else len(base)
    return size == length or size >= length + _FREE_HEADER


def normalize_size(size: int | None, base: bytes | None = None) -> int:
    """The smallest valid size that is at least ``size`` (``None``: the base's own)."""
    length = sample_size() if base is None else len(base)
    if size is None or size <= length:
        return length
    return max(size, length + _FREE_HEADER)


def _free_box_header(box_size: int) -> bytes:
    """Header of a ``free`` box that is ``box_size`` bytes long in total.

    Boxes over 4 GiB use the 16-byte ``largesize`` form (size field 1).
    """
    if box_size <= _MAX_32:
        return struct.pack(">I4s", box_size, b"free")
    return struct.pack(">I4sQ", 1, b"free", box_size)


def _segments(size: int, base: bytes | None = None) -> tuple[bytes, bytes, int]:
    """(base, free-box header, number of zero bytes) that make a ``size``-byte file."""
    sample = sample_mp4() if base is None else base
    if not is_valid_size(size, sample):
        raise ValueError(
            f"cannot make an mp4 of {size} bytes: the size must be the sample's "
            f"({len(sample)}) or at least {len(sample) + _FREE_HEADER}"
        )
    pad = size - len(sample)
    header = _free_box_header(pad) if pad else b""
    return sample, header, pad - len(header)


def iter_mp4(
    size: int | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE, base: bytes | None = None
) -> Iterator[bytes]:
    """Yield a valid mp4 of exactly ``size`` bytes in ``chunk_size``-byte chunks.

    Every chunk is exactly ``chunk_size`` bytes long except the last, so a
    ``chunk_size`` that is a multiple of 3 makes base64 chunks that concatenate.
    ``size=None`` yields the base (default: the sample) as it is.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    total = (sample_size() if base is None else len(base)) if size is None else size
    sample, header, zeros = _segments(total, base)
    head = sample + header  # small: the sample plus at most 16 bytes
    offset = 0
    while offset < total:
        end = min(offset + chunk_size, total)
        if end <= len(head):
            yield head[offset:end]
        elif offset >= len(head):
            yield bytes(end - offset)
        else:
            yield head[offset:] + bytes(end - len(head))
        offset = end
    assert offset == len(head) + zeros


def build_mp4(size: int | None = None, base: bytes | None = None) -> bytes:
    """The whole file in memory: for small sizes and tests only."""
    return b"".join(iter_mp4(size, base=base))


def base64_length(size: int) -> int:
    """Length of the padded standard base64 text of ``size`` bytes."""
    return 4 * ((size + 2) // 3)


def iter_base64(
    size: int | None = None, chunk_size: int = 3 * DEFAULT_CHUNK_SIZE, base: bytes | None = None
) -> Iterator[bytes]:
    """Yield the standard base64 text of :func:`iter_mp4`'s file, chunk by chunk.

    ``chunk_size`` (raw bytes per chunk) must be a multiple of 3 so that each
    encoded chunk is complete on its own and the chunks simply concatenate.
    """
    if chunk_size <= 0 or chunk_size % 3:
        raise ValueError("chunk_size must be a positive multiple of 3")
    for chunk in iter_mp4(size, chunk_size, base):
        yield base64.b64encode(chunk)
