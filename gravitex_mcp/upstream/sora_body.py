"""Sora's download body, streamed: the video out of its one ``base64`` field.

The download endpoint answers a small JSON object that carries the whole video twice
(``base64``, and ``data_url``: the same bytes as a data URL)::

    {"success": true, "task_id": "video_…", "format": "mp4", "size": 15728640,
     "base64": "AAAAIGZ0eXBpc29t…", "data_url": "data:video/mp4;base64,AAAA…"}

:class:`SoraBody` is fed the body in pieces. The value of the top-level ``base64`` key is
decoded as it arrives (strict alphabet, in 4-character batches) and handed to a sink;
the ``data_url`` value is skipped without being held. Everything else (a few hundred
bytes) is kept, with those two values emptied, and parsed by :func:`json.loads` at the
end. Memory stays bounded by a piece of the body. It is not a JSON tokenizer: it
tracks only strings, nesting and the key before each top-level value.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import Any, Final

from ..errors import DownloadError, TruncatedDownloadError, VideoIntegrityError

#: The field holding the video, and the one holding it again (skipped).
VIDEO_FIELD: Final = "base64"
SKIPPED_FIELD: Final = "data_url"
#: The most body kept outside those two values: the documented rest is ~300 bytes.
MAX_SMALL_PART: Final = 64 << 10

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN, _CLOSE = frozenset(b"{["), frozenset(b"}]")
_SPACE: Final = frozenset(b" \t\r\n")


class SoraBody:
    """Push parser: :meth:`feed` every piece of the body, then :meth:`close`.

    ``sink`` gets the decoded video bytes in order; what it raises propagates.
    """

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self._sink = sink
        self._small = bytearray()  # the body without the two large values
        self._received = 0
        self.decoded = 0  # video bytes given to the sink
        # the small-part scanner
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._string_start = 0  # index in _small of the open string's quote
        self._string_is_key = False
        self._key: str | None = None  # the last top-level key read
        self._last = 0  # the last byte outside strings (not whitespace)
        self._ended = False
        # inside a large value: which one, a held backslash, base64 awaiting its quantum
        self._large: str | None = None
        self._held = b""
        self._carry = b""
        self._padded = False
        self._seen_video = False

    def feed(self, piece: bytes) -> None:
        """Consume the next piece of the body (any length, split anywhere)."""
        self._received += len(piece)
        pos, end = 0, len(piece)
        while pos < end:
            pos = self._large_part(piece, pos) if self._large else self._small_part(piece, pos)

    def close(self, *, task_id: str) -> dict[str, Any]:
        """The body ended: its small fields, once it proved whole, held a video of the
        announced ``size`` and named no other task than ``task_id``."""
        if not self._ended:
            if self._received == 0:
                raise TruncatedDownloadError("The download body was empty.")
            raise TruncatedDownloadError(
                f"The download body stopped after {self._received} bytes: the stream was cut short."
            )
        try:
            fields = json.loads(self._small)
        except ValueError as exc:
            raise self._not_json(f"{exc.__class__.__name__}: {exc}") from exc
        if not isinstance(fields, dict):
            raise self._not_json("not an object")
        if fields.get("success", True) is not True:
            said = fields.get("message") or fields.get("error")
            if isinstance(said, dict):
                said = said.get("message")
            detail = f" ({said.strip()[:300]})" if isinstance(said, str) and said.strip() else ""
            raise DownloadError(
                f"The download endpoint answered success={json.dumps(fields.get('success'))}"
                f"{detail}; no video was saved."
            )
        if not self._seen_video:
            shown = ", ".join(str(k) for k in fields) or "none"
            raise VideoIntegrityError(
                f"The download body has no {VIDEO_FIELD!r} field (fields: {shown}); there is "
                "no video to save."
            )
        size = fields.get("size")
        if size is not None and (type(size) is not int or size != self.decoded):
            raise VideoIntegrityError(
                f"The decoded video has {self.decoded} bytes but the download body says "
                f"size={json.dumps(size)}; the video is incomplete or corrupt and was not saved."
            )
        fmt = fields.get("format")
        if fmt is not None and (not isinstance(fmt, str) or fmt.lower() != "mp4"):
            raise VideoIntegrityError(f"The download body says format={json.dumps(fmt)}, not mp4.")
        for key in ("task_id", "generation_id"):
            got = fields.get(key)
            if isinstance(got, str) and got.strip() and got.strip() != task_id:
                raise VideoIntegrityError(
                    f"The download body is for {key}={json.dumps(got)}, not task "
                    f"{task_id!r}; refusing to save another task's video."
                )
        return fields

    # --- the small part ------------------------------------------------------------------

    def _not_json(self, what: str) -> VideoIntegrityError:
        return VideoIntegrityError(
            f"The download body is not the documented JSON: {what} (at body byte {self._received})."
        )

    def _small_part(self, piece: bytes, pos: int) -> int:
        """Scan and keep bytes up to the start of a large value (or the piece's end)."""
        small = self._small
        for i in range(pos, len(piece)):
            byte = piece[i]
            small.append(byte)
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif byte == _BACKSLASH:
                    self._escaped = True
                elif byte == _QUOTE:
                    self._in_string = False
                    self._last = _QUOTE
                    if self._string_is_key:  # a short string: parse it as JSON does
                        try:
                            self._key = json.loads(small[self._string_start :])
                        except ValueError:
                            self._key = None
                continue
            if byte in _SPACE:
                continue
            if self._ended:
                raise self._not_json("data after the end of the JSON object")
            if self._last == 0 and byte != ord("{"):  # the first byte that is not a space
                head = bytes(small[:40]).decode("ascii", "replace")
                kind = "an HTML page" if head.lstrip().startswith("<") else "not a JSON object"
                raise VideoIntegrityError(
                    "The download endpoint did not answer the documented JSON: the body is "
                    f"{kind} (starts with {head!r})."
                )
            if byte == _QUOTE:
                large = self._key if self._depth == 1 and self._last == ord(":") else None
                if large in (VIDEO_FIELD, SKIPPED_FIELD):
                    if large == VIDEO_FIELD and self._seen_video:
                        raise self._not_json(f"a second {VIDEO_FIELD!r} field")
                    self._seen_video |= large == VIDEO_FIELD
                    self._large, self._held, self._last = large, b"", _QUOTE
                    return i + 1
                self._in_string = True
                self._string_start = len(small) - 1
                self._string_is_key = self._depth == 1 and self._last in b"{,"
            elif byte in _OPEN:
                self._depth += 1
            elif byte in _CLOSE:
                self._depth -= 1
                self._ended = self._depth <= 0
            self._last = byte
            if len(small) > MAX_SMALL_PART:
                raise self._not_json(f"more than {MAX_SMALL_PART} bytes outside the video")
        return len(piece)

    # --- the two large values -------------------------------------------------------------

    def _large_part(self, piece: bytes, pos: int) -> int:
        """Consume a large value's characters up to its closing quote (or the piece's end)."""
        quote = piece.find(b'"', pos)
        stop = len(piece) if quote < 0 else quote
        text = self._held + piece[pos:stop]
        self._held = b""
        if quote < 0 and text.endswith(b"\\"):
            text, self._held = text[:-1], b"\\"  # an escape split across pieces
        if b"\\" in text:
            # JSON may escape '/' as '\/'; no other escape belongs in base64.
            text = text.replace(b"\\/", b"/")
            if b"\\" in text:
                raise self._bad_base64("a JSON escape other than \\/")
        if self._large == VIDEO_FIELD:
            self._decode(text)
        if quote < 0:
            return len(piece)
        if self._large == VIDEO_FIELD and self._carry:
            raise self._bad_base64(f"{len(self._carry)} characters left over at the end")
        self._large = None
        self._small.append(_QUOTE)  # the value, emptied, for the final json.loads
        return quote + 1

    def _decode(self, text: bytes) -> None:
        data = self._carry + text if self._carry else text
        usable = len(data) - len(data) % 4
        self._carry = data[usable:]
        if not usable:
            return
        if self._padded:
            raise self._bad_base64("data after the padding")
        try:
            video = binascii.a2b_base64(data[:usable] if self._carry else data, strict_mode=True)
        except binascii.Error as exc:
            raise self._bad_base64(str(exc)) from exc
        self._padded = data[usable - 1] == ord("=")
        self.decoded += len(video)
        self._sink(video)

    def _bad_base64(self, what: str) -> VideoIntegrityError:
        return VideoIntegrityError(
            f"The base64 video data is not valid strict base64: {what} (after "
            f"{self.decoded} decoded bytes); nothing was saved."
        )
