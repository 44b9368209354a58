"""Is this an mp4? A check of the first box, and a streaming check of the whole file's boxes.

An ISO base media file (mp4) is a sequence of top-level *boxes*: a 4-byte big-endian
size (the whole box, header included), a 4-byte type, then the payload. Size 1 means a
64-bit size follows the type; size 0 means "to the end of the file". A real mp4 starts
with an ``ftyp`` box (``size``, ``b"ftyp"``, a 4-character major brand, a minor version,
compatible brands).

Two checks:

* :func:`looks_like_mp4` looks at the first bytes only: enough to refuse an HTML error
  page, a JSON error body or random bytes served with status 200.
* :class:`Mp4StreamCheck` is fed the file as it streams by (no buffering) and walks the
  top-level box headers. At the end, the boxes must tile the file exactly: a file that
  stops inside a box (a truncated download) is refused. It does not look inside boxes.
"""

from __future__ import annotations

from typing import Final

from ..errors import TruncatedDownloadError, VideoIntegrityError

#: Bytes :func:`looks_like_mp4` wants: box size, ``ftyp``, major brand (64-bit size form).
HEAD_BYTES: Final = 16
#: The smallest real ``ftyp`` box: header, major brand, minor version.
MIN_FTYP_SIZE: Final = 16
#: An ``ftyp`` box lists a few brands; anything this large is not one.
MAX_FTYP_SIZE: Final = 4096
#: How many top-level box types :class:`Mp4StreamCheck` remembers (for messages).
_MAX_BOX_NAMES: Final = 32


def _printable(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def looks_like_mp4(head: bytes) -> bool:
    """True when ``head`` (the file's first bytes, ideally 16+) starts with an ``ftyp`` box.

    Checks: bytes 4..8 are ``b"ftyp"``, the box size is plausible for an ``ftyp`` box
    (16..4096 bytes, or the 64-bit form), and the major brand is printable ASCII.
    """
    if len(head) < 8 or head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[0:4], "big")
    brand_at = 8
    if size == 1:  # 64-bit largesize after the type
        if len(head) < 16:
            return False
        size = int.from_bytes(head[8:16], "big")
        brand_at = 16
    if not MIN_FTYP_SIZE <= size <= MAX_FTYP_SIZE:
        return False
    brand = head[brand_at : brand_at + 4]
    return _printable(brand)


def describe_head(head: bytes) -> str:
    """A short, safe description of what a non-mp4 body starts with, for error messages."""
    if not head:
        return "an empty body"
    text = bytes(head[:40])
    stripped = text.lstrip()
    lower = stripped.lower()
    if lower.startswith((b"<!doctype html", b"<html", b"<?xml", b"<")):
        kind = "an HTML/XML page"
    elif stripped.startswith((b"{", b"[")):
        kind = "a JSON document"
    else:
        kind = "bytes that are not an mp4"
    shown = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in text)
    return f"{kind} (starts with {shown!r})"


class Mp4StreamCheck:
    """Feed a file's bytes in order; :meth:`finish` says whether it was a whole mp4.

    Memory is O(1): only the current box header (at most 16 bytes) and the first
    :data:`HEAD_BYTES` bytes are kept. :meth:`feed` raises
    :class:`~gravitex_mcp.errors.VideoIntegrityError` as soon as the head is wrong, so a
    caller can stop reading an HTML page after its first bytes.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self._head_ok = False
        self._seen = 0  # bytes fed so far
        self._next_box = 0  # offset of the next top-level box header
        self._header = bytearray()  # partial header of the box at _next_box
        self._open_ended = False  # a size-0 box runs to the end of the file
        self._boxes: list[str] = []
        self._current: tuple[str, int, int] | None = None  # (type, start, size) of last box

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._seen

    @property
    def boxes(self) -> tuple[str, ...]:
        """The first top-level box types seen (``("ftyp", "moov", "mdat")``)."""
        return tuple(self._boxes)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Consume the next bytes of the file."""
        n = len(data)
        start = self._seen
        if self._head_ok and (
            self._open_ended or self._next_box + len(self._header) - start >= n
        ):  # the common case: the piece lies inside a box's payload
            self._seen = start + n
            return
        if not n:
            return
        view = memoryview(data)
        if not self._head_ok:
            need = HEAD_BYTES - len(self._head)
            self._head += view[:need]
            if len(self._head) >= HEAD_BYTES:
                self._check_head()
        while not self._open_ended:
            # The next header byte we need, as an offset into this piece.
            offset = self._next_box + len(self._header) - start
            if offset >= n:
                break
            need = self._header_size() - len(self._header)
            self._header += view[offset : offset + need]
            if len(self._header) == self._header_size():
                self._close_header()
        self._seen = start + n

    def _header_size(self) -> int:
        if len(self._header) >= 8 and int.from_bytes(self._header[0:4], "big") == 1:
            return 16  # 64-bit largesize follows the type
        return 8

    def _close_header(self) -> None:
        size = int.from_bytes(self._header[0:4], "big")
        raw_type = bytes(self._header[4:8])
        box_type = raw_type.decode("latin-1")
        header_len = 8
        if size == 1:
            size = int.from_bytes(self._header[8:16], "big")
            header_len = 16
        if not _printable(raw_type):
            raise VideoIntegrityError(
                f"The video is not a well-formed mp4: the box at byte {self._next_box} "
                f"has an unreadable type {raw_type!r}."
            )
        if len(self._boxes) < _MAX_BOX_NAMES:
            self._boxes.append(box_type)
        self._current = (box_type, self._next_box, size)
        self._header.clear()
        if size == 0:
            self._open_ended = True
            return
        if size < header_len:
            raise VideoIntegrityError(
                f"The video is not a well-formed mp4: box {box_type!r} at byte "
                f"{self._next_box} claims {size} bytes, less than its own header."
            )
        self._next_box += size

    def _check_head(self) -> None:
        head = bytes(self._head)
        if not looks_like_mp4(head):
            raise VideoIntegrityError(
                f"The download is not an mp4 video: it is {describe_head(head)} "
                "(an mp4 starts with an 'ftyp' box)."
            )
        self._head_ok = True

    def finish(self) -> None:
        """Raise unless the bytes fed were one whole mp4 file.

        :class:`~gravitex_mcp.errors.TruncatedDownloadError` when the file stops inside
        a box (or inside a box header); :class:`VideoIntegrityError` when it is not an
        mp4 at all.
        """
        if not self._head_ok:
            head = bytes(self._head)
            if len(head) >= 8 and head[4:8] == b"ftyp":
                raise TruncatedDownloadError(
                    f"The video stopped after {self._seen} bytes, inside its first box."
                )
            raise VideoIntegrityError(
                f"The download is not an mp4 video: it is {describe_head(head)}."
            )
        if self._open_ended:
            return
        if self._header or self._next_box > self._seen:
            where = ""
            if self._current is not None and self._next_box > self._seen:
                box_type, box_start, box_size = self._current
                where = f", inside box {box_type!r} ({self._seen - box_start} of {box_size} bytes)"
            raise TruncatedDownloadError(
                f"The video stopped after {self._seen} bytes{where}: the file is incomplete."
            )
