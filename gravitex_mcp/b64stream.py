"""Incremental, strict decoding of the ``base64`` field of Sora's download body.

Sora's download endpoint answers one JSON object holding the whole mp4 twice: as
``base64`` and again as ``data_url`` (``data:video/mp4;base64,...``), next to a few
small fields (``success``, ``task_id``, ``format``, ``size``). For a typical 15 MB
video the body is about 40 MB, and parsing it with ``json.loads`` needs several times
that in memory. :class:`SoraDownloadDecoder` instead reads the body chunk by chunk
(chunks may split anywhere: inside a key, an escape, the base64 text) and passes the
decoded bytes of the ``base64`` value straight to a sink, in memory proportional to one
chunk. The ``data_url`` copy and any other large value are skipped without buffering.

The tokenizer is specialised to this body: **one JSON object** whose values are
skipped or captured.

* ``base64`` must be a JSON string. Its JSON escapes are honoured (``\\/`` is ``/``,
  ``\\u0041`` is ``A``), then the string is decoded as **strict** base64: only the
  standard alphabet ``A-Z a-z 0-9 + /``, ``=`` padding only at the very end, total length
  a multiple of 4, zero padding bits. No whitespace, no newlines (an escaped ``\\n`` is a
  newline and is refused), no URL-safe alphabet. A second ``base64`` key is refused.
* Small top-level values whose key is in ``capture`` (by default ``success``,
  ``size``, ``format``, ``task_id``, ``generation_id`` and the error-ish ``message``,
  ``error``, ``code``) are kept, up to :data:`MAX_CAPTURE_BYTES` each, and parsed with
  :func:`json.loads` (so they are fully validated). Larger ones are skipped.
* Every other value is skipped: strings by searching for the closing quote (escaped
  quotes are recognised by counting the backslashes before them), nested objects and
  arrays by counting brackets (kinds must match; depth at most :data:`MAX_DEPTH`),
  bare scalars by their characters.

Limits (on purpose): skipped values are scanned for their extent, not fully validated
(commas and colons inside a skipped nested value, escapes inside a skipped string and
raw control characters are not checked); a UTF-8 byte order mark is refused; the body
must be one object (not an array).

Errors: a body that is not this JSON raises
:class:`~gravitex_mcp.errors.VideoIntegrityError`; a body that stops early is a
:class:`~gravitex_mcp.errors.TruncatedDownloadError` (raised by :meth:`close`).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .errors import DownloadError, TruncatedDownloadError, VideoIntegrityError

#: The field whose value is the video.
BASE64_FIELD: Final = "base64"
#: Top-level fields kept by default (small values only).
DEFAULT_CAPTURE: Final = frozenset(
    {"success", "size", "format", "task_id", "generation_id", "message", "error", "code"}
)
#: Largest raw JSON text kept for one captured value.
MAX_CAPTURE_BYTES: Final = 16 * 1024
#: Longest key (raw JSON bytes) that can match a field name; longer keys are skipped.
MAX_KEY_BYTES: Final = 256
#: Deepest nesting of objects/arrays inside a skipped or captured value.
MAX_DEPTH: Final = 64
#: Base64 characters handed to one ``a2b_base64`` call (a multiple of 4).
DECODE_BATCH: Final = 4 * 1024 * 1024

_WHITESPACE: Final = frozenset(b" \t\r\n")
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_INDEX: Final = {c: i for i, c in enumerate(_B64_ALPHABET)}
_B64_CHARS: Final = frozenset(_B64_ALPHABET + b"=")
_ESCAPE: Final = re.compile(rb'\\(?:u([0-9A-Fa-f]{4})|(["\\/bfnrt]))')
_ESCAPE_PREFIX: Final = re.compile(rb"\\(?:u[0-9A-Fa-f]{0,3})?")
_SIMPLE_ESCAPES: Final = {
    ord('"'): ord('"'),
    ord("\\"): ord("\\"),
    ord("/"): ord("/"),
    ord("b"): 0x08,
    ord("f"): 0x0C,
    ord("n"): 0x0A,
    ord("r"): 0x0D,
    ord("t"): 0x09,
}
_NESTED_SPECIAL: Final = re.compile(rb'["{}\[\]]')
_SCALAR_END: Final = re.compile(rb"[,}\] \t\r\n]")
_SCALAR_CHARS: Final = re.compile(rb"[0-9A-Za-z+\-.]*")
_MAX_SCALAR_BYTES: Final = 512
_BACKSLASH: Final = 0x5C
_QUOTE: Final = 0x22
_PAD: Final = 0x3D
_CLOSERS: Final = {ord("}"): ord("{"), ord("]"): ord("[")}

# Parser states.
_START, _KEY_OR_END, _KEY, _COLON, _VALUE, _AFTER_VALUE, _END = range(7)
_STRING, _B64, _NESTED, _SCALAR = range(7, 11)
# What the string being scanned is.
_S_KEY, _S_VALUE, _S_NESTED = range(3)

_STATE_NAMES: Final = {
    _START: "before the JSON object",
    _KEY_OR_END: "after '{'",
    _KEY: "where a key was expected",
    _COLON: "after a key",
    _VALUE: "where a value was expected",
    _AFTER_VALUE: "after a value",
    _END: "after the object",
    _STRING: "inside a string",
    _B64: "inside the base64 value",
    _NESTED: "inside a nested value",
    _SCALAR: "inside a number or literal",
}

Sink = Callable[[bytes], object]


def _preview(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True, slots=True)
class SoraDownload:
    """What a whole download body held, besides the video bytes sent to the sink."""

    #: Bytes decoded from the ``base64`` field (and given to the sink).
    decoded_size: int
    #: Body bytes consumed.
    body_size: int
    #: The captured top-level fields, JSON-decoded (``{"size": 15728640, ...}``).
    fields: Mapping[str, Any] = field(default_factory=dict)
    #: Every top-level key seen, in order (the long ones shortened).
    keys: tuple[str, ...] = ()

    def verify(self, *, task_id: str | None = None) -> None:
        """Check the decoded video against the body's own claims.

        ``success`` must not be false; ``size`` (when present) must be an integer equal
        to :attr:`decoded_size`; ``format`` (when present) must be ``mp4``; ``task_id`` /
        ``generation_id`` (when present and ``task_id`` is given) must name that task.
        """
        success = self.fields.get("success", True)
        if success is not True:
            raise DownloadError(
                f"The download endpoint answered success={json.dumps(success)}"
                f"{_upstream_message(self.fields)}; no video was saved."
            )
        if "size" in self.fields:
            size = self.fields["size"]
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise VideoIntegrityError(
                    f"The download body's size field is {json.dumps(size)}, not a byte count."
                )
            if size != self.decoded_size:
                raise VideoIntegrityError(
                    f"The decoded video has {self.decoded_size} bytes but the download body "
                    f"says size={size}; the video is incomplete or corrupt and was not saved."
                )
        fmt = self.fields.get("format")
        if fmt is not None and (not isinstance(fmt, str) or fmt.lower() != "mp4"):
            raise VideoIntegrityError(f"The download body says format={json.dumps(fmt)}, not mp4.")
        if task_id is not None:
            for key in ("task_id", "generation_id"):
                got = self.fields.get(key)
                if got is not None and got != task_id:
                    raise VideoIntegrityError(
                        f"The download body is for {key}={json.dumps(got)}, not task "
                        f"{task_id!r}; refusing to save another task's video."
                    )


def _upstream_message(fields: Mapping[str, Any]) -> str:
    for key in ("message", "error"):
        value = fields.get(key)
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return f" ({value.strip()[:300]})"
    return ""


class SoraDownloadDecoder:
    """Push parser for the download body: ``feed(chunk)`` repeatedly, then ``close()``.

    ``sink`` receives the decoded video bytes in order (several calls per chunk at most;
    each piece at most ``3/4 * DECODE_BATCH`` bytes). Exceptions raised by the sink
    propagate unchanged. After any error the decoder refuses further input.
    """

    def __init__(self, sink: Sink, *, capture: Iterable[str] = DEFAULT_CAPTURE) -> None:
        self._sink = sink
        self._capture_keys = frozenset(capture) - {BASE64_FIELD}
        self._state = _START
        self._failed = False
        self._received = 0
        self._head = bytearray()  # first bytes of the body, for error messages
        # current key / value
        self._key: str | None = None
        self._keys: list[str] = []
        self._fields: dict[str, Any] = {}
        # raw capture of the key or value being read (None: not capturing)
        self._cap: bytearray | None = None
        self._cap_limit = 0
        self._cap_over = False
        # strings
        self._str_kind = _S_VALUE
        self._bs_odd = False  # string content so far ends in an unpaired backslash
        # nested values
        self._stack: list[int] = []
        # base64
        self._b64_seen = False
        self._carry = b""  # 0-3 base64 characters waiting for their quantum
        self._esc = b""  # an escape split across chunks (at most 5 bytes)
        self._padded = False
        self._decoded = 0

    # --- public -------------------------------------------------------------------

    @property
    def decoded_size(self) -> int:
        """Video bytes given to the sink so far."""
        return self._decoded

    @property
    def body_size(self) -> int:
        """Body bytes fed so far."""
        return self._received

    def feed(self, chunk: bytes) -> None:
        """Consume the next piece of the body (any length, split anywhere)."""
        if self._failed:
            raise VideoIntegrityError("The download body was already refused.")
        n = len(chunk)
        if len(self._head) < 64:
            self._head += chunk[: 64 - len(self._head)]
        self._received += n
        pos = 0
        try:
            while pos < n:
                state = self._state
                if state == _B64:
                    pos = self._scan_b64(chunk, pos, n)
                elif state == _STRING:
                    pos = self._scan_string(chunk, pos, n)
                elif state == _NESTED:
                    pos = self._scan_nested(chunk, pos, n)
                elif state == _SCALAR:
                    pos = self._scan_scalar(chunk, pos, n)
                else:
                    byte = chunk[pos]
                    if byte in _WHITESPACE:
                        pos += 1
                    else:
                        pos = self._structural(byte, pos)
        except BaseException:
            self._failed = True
            raise

    def close(self) -> SoraDownload:
        """The body ended: check it was whole and held a ``base64`` string."""
        if self._failed:
            raise VideoIntegrityError("The download body was already refused.")
        self._failed = True  # no more input either way
        if self._state != _END:
            if self._received == 0:
                raise TruncatedDownloadError("The download body was empty.")
            raise TruncatedDownloadError(
                f"The download body stopped after {self._received} bytes, "
                f"{_STATE_NAMES[self._state]}: the stream was cut short."
            )
        result = SoraDownload(
            decoded_size=self._decoded,
            body_size=self._received,
            fields=dict(self._fields),
            keys=tuple(self._keys),
        )
        if not self._b64_seen:
            if self._fields.get("success", True) is not True:
                result.verify()  # raises the upstream's own failure
            shown = ", ".join(self._keys) or "none"
            raise VideoIntegrityError(
                f"The download body has no {BASE64_FIELD!r} field (fields: {shown}); "
                "there is no video to save."
            )
        return result

    # --- structure ------------------------------------------------------------------

    def _fail(self, what: str) -> VideoIntegrityError:
        return VideoIntegrityError(
            f"The download body is not the documented JSON: {what} (at body byte {self._received})."
        )

    def _structural(self, byte: int, pos: int) -> int:
        """One non-whitespace byte in a structural state; returns the next position."""
        state = self._state
        if state == _START:
            if byte != ord("{"):
                head = bytes(self._head)
                kind = "an HTML page" if head.lstrip().startswith(b"<") else "not a JSON object"
                raise VideoIntegrityError(
                    f"The download endpoint did not answer the documented JSON: the body is "
                    f"{kind} (starts with {_preview(head[:40])!r})."
                )
            self._state = _KEY_OR_END
        elif state in (_KEY_OR_END, _KEY):
            if byte == _QUOTE:
                self._start_string(_S_KEY)
            elif byte == ord("}") and state == _KEY_OR_END:
                self._state = _END
            else:
                raise self._fail(f"expected a key, found {chr(byte)!r}")
        elif state == _COLON:
            if byte != ord(":"):
                raise self._fail(f"expected ':' after key {self._key!r}, found {chr(byte)!r}")
            self._state = _VALUE
        elif state == _VALUE:
            return self._start_value(byte, pos)
        elif state == _AFTER_VALUE:
            if byte == ord(","):
                self._state = _KEY
            elif byte == ord("}"):
                self._state = _END
            else:
                raise self._fail(f"expected ',' or '}}' after a value, found {chr(byte)!r}")
        else:  # _END
            raise self._fail("data after the end of the JSON object")
        return pos + 1

    def _start_value(self, byte: int, pos: int) -> int:
        key = self._key
        if key == BASE64_FIELD:
            if self._b64_seen:
                raise self._fail(f"the {BASE64_FIELD!r} field appears twice")
            if byte != _QUOTE:
                raise VideoIntegrityError(
                    f"The download body's {BASE64_FIELD!r} field is not a JSON string "
                    f"(starts with {chr(byte)!r}); there is no video in it."
                )
            self._state = _B64
            return pos + 1
        capturing = key is not None and key in self._capture_keys
        self._cap = bytearray() if capturing else None
        self._cap_limit = MAX_CAPTURE_BYTES
        self._cap_over = False
        if byte == _QUOTE:
            self._append(b'"')
            self._start_string(_S_VALUE)
            return pos + 1
        if byte in (ord("{"), ord("[")):
            self._append(bytes((byte,)))
            self._stack = [byte]
            self._state = _NESTED
            return pos + 1
        if byte == ord("-") or ord("0") <= byte <= ord("9") or byte in b"tfn":
            self._cap = bytearray()  # scalars are always read whole (they are small)
            self._cap_limit = _MAX_SCALAR_BYTES
            self._state = _SCALAR
            return pos
        raise self._fail(f"unexpected {chr(byte)!r} where a value was expected")

    def _append_range(self, chunk: bytes, start: int, end: int) -> None:
        if self._cap is not None and end > start:
            self._append(chunk[start:end])

    def _append(self, data: bytes) -> None:
        cap = self._cap
        if cap is None:
            return
        if len(cap) + len(data) > self._cap_limit:
            self._cap = None
            self._cap_over = True
            return
        cap += data

    def _end_value(self) -> None:
        """A top-level non-base64 value is complete."""
        cap, self._cap = self._cap, None
        key = self._key
        if cap is not None and key is not None and key in self._capture_keys:
            try:
                self._fields[key] = json.loads(bytes(cap), parse_constant=_reject_constant)
            except ValueError as exc:
                raise self._fail(f"the value of {key!r} is not valid JSON ({exc})") from exc
        self._state = _AFTER_VALUE

    # --- strings (keys, skipped or captured values) ---------------------------------

    def _start_string(self, kind: int) -> None:
        self._str_kind = kind
        self._bs_odd = False
        if kind == _S_KEY:
            self._cap = bytearray()
            self._cap_limit = MAX_KEY_BYTES
            self._cap_over = False
        self._state = _STRING

    def _scan_string(self, chunk: bytes, pos: int, n: int) -> int:
        start = pos
        run_start = pos  # where the backslash run before a quote may start
        carry_odd = self._bs_odd
        while True:
            q = chunk.find(b'"', pos, n)
            if q < 0:
                self._bs_odd = _ends_unpaired(chunk, run_start, n, carry_odd)
                self._append_range(chunk, start, n)
                return n
            if _ends_unpaired(chunk, run_start, q, carry_odd):
                pos = run_start = q + 1  # an escaped quote: keep looking
                carry_odd = False
                continue
            self._append_range(chunk, start, q)
            self._end_string()
            return q + 1

    def _end_string(self) -> None:
        kind = self._str_kind
        if kind == _S_KEY:
            raw, self._cap = self._cap, None
            key: str | None = None
            if raw is not None:
                try:
                    decoded = json.loads(b'"' + bytes(raw) + b'"')
                except ValueError as exc:
                    raise self._fail(f"a key is not a valid JSON string ({exc})") from exc
                key = decoded if isinstance(decoded, str) else None
            self._key = key
            self._keys.append(key if key is not None else "<long key>")
            self._state = _COLON
        elif kind == _S_VALUE:
            self._append(b'"')
            self._end_value()
        else:
            self._append(b'"')
            self._state = _NESTED

    # --- nested objects and arrays --------------------------------------------------

    def _scan_nested(self, chunk: bytes, pos: int, n: int) -> int:
        stack = self._stack
        while pos < n:
            m = _NESTED_SPECIAL.search(chunk, pos, n)
            if m is None:
                self._append_range(chunk, pos, n)
                return n
            j = m.start()
            byte = chunk[j]
            self._append_range(chunk, pos, j + 1)
            pos = j + 1
            if byte == _QUOTE:
                self._start_string(_S_NESTED)
                return pos
            if byte in (ord("{"), ord("[")):
                if len(stack) >= MAX_DEPTH:
                    raise self._fail(f"values nested deeper than {MAX_DEPTH} levels")
                stack.append(byte)
                continue
            if stack[-1] != _CLOSERS[byte]:
                raise self._fail(f"mismatched {chr(byte)!r} in the value of {self._key!r}")
            stack.pop()
            if not stack:
                self._end_value()
                return pos
        return n

    # --- numbers and literals -------------------------------------------------------

    def _scan_scalar(self, chunk: bytes, pos: int, n: int) -> int:
        m = _SCALAR_END.search(chunk, pos, n)
        end = n if m is None else m.start()
        piece = chunk[pos:end]
        if _SCALAR_CHARS.fullmatch(piece) is None:
            raise self._fail(f"bad character in the value of {self._key!r}")
        self._append(piece)
        if self._cap is None:
            raise self._fail(f"the value of {self._key!r} is too long for a number")
        if m is None:
            return n
        key = self._key
        try:
            value = json.loads(bytes(self._cap), parse_constant=_reject_constant)
        except ValueError as exc:
            raise self._fail(f"the value of {key!r} is not valid JSON ({exc})") from exc
        if key is not None and key in self._capture_keys:
            self._fields[key] = value
        self._cap = None
        self._state = _AFTER_VALUE
        return end  # the delimiter is handled by the structural states

    # --- the base64 value -----------------------------------------------------------

    def _scan_b64(self, chunk: bytes, pos: int, n: int) -> int:
        if self._esc:
            pos = self._finish_escape(chunk, pos, n)
            if pos >= n:
                return n
        q = chunk.find(b'"', pos, n)
        end = n if q < 0 else q
        if end > pos:
            seg = chunk[pos:end]
            if b"\\" in seg:
                plain = seg.replace(b"\\/", b"/")
                if b"\\" in plain:  # escapes other than \/, or one split at the end
                    plain = self._unescape(seg, closed=q >= 0)
                seg = plain
            self._feed_b64(seg)
        if q < 0:
            return n
        self._end_b64()
        return q + 1

    def _unescape(self, seg: bytes, *, closed: bool) -> bytes:
        out = bytearray()
        i = 0
        while True:
            j = seg.find(b"\\", i)
            if j < 0:
                out += seg[i:]
                return bytes(out)
            out += seg[i:j]
            m = _ESCAPE.match(seg, j)
            if m is not None:
                out.append(self._escaped_char(m))
                i = m.end()
                continue
            tail = seg[j:]
            if not closed and _ESCAPE_PREFIX.fullmatch(tail):
                self._esc = tail  # completed by the next chunk
                return bytes(out)
            if tail == b"\\":  # the quote ending this segment is escaped: \"
                raise self._bad_b64_char('"')
            raise self._fail(f"invalid JSON escape {_preview(tail[:6])!r} in the base64 value")

    def _finish_escape(self, chunk: bytes, pos: int, n: int) -> int:
        """Complete an escape split across chunks; returns the position after it."""
        held = len(self._esc)
        combined = self._esc + chunk[pos : pos + 6 - held]
        m = _ESCAPE.match(combined)
        if m is not None:
            self._esc = b""
            self._feed_b64(bytes((self._escaped_char(m),)))
            return pos + m.end() - held
        if _ESCAPE_PREFIX.fullmatch(combined):  # at most 5 bytes: the chunk ran out
            self._esc = combined
            return n
        raise self._fail(f"invalid JSON escape {_preview(combined)!r} in the base64 value")

    def _escaped_char(self, m: re.Match[bytes]) -> int:
        hex_digits, simple = m.group(1), m.group(2)
        code = int(hex_digits, 16) if hex_digits is not None else _SIMPLE_ESCAPES[simple[0]]
        if code not in _B64_CHARS:
            raise self._bad_b64_char(chr(code))
        return code

    def _bad_b64_char(self, char: str) -> VideoIntegrityError:
        return VideoIntegrityError(
            f"The base64 video data holds {char!r}, which is not in the base64 alphabet "
            f"(after {self._decoded} decoded bytes); the video is corrupt and was not saved."
        )

    def _feed_b64(self, data: bytes) -> None:
        if not data:
            return
        if self._padded:
            raise self._b64_error("data after the '=' padding")
        carry = self._carry
        start = 0
        if carry:  # complete the pending quantum first
            start = 4 - len(carry)
            if len(data) < start:
                self._carry = carry + data
                return
            self._carry = b""
            self._decode(carry + data[:start], more=len(data) > start)
        total = len(data) - start
        whole = start + (total - total % 4)
        view = memoryview(data)
        for off in range(start, whole, DECODE_BATCH):
            stop = min(off + DECODE_BATCH, whole)
            self._decode(view[off:stop], more=stop < len(data))
        self._carry = data[whole:]

    def _decode(self, block: bytes | memoryview, *, more: bool) -> None:
        try:
            out = binascii.a2b_base64(block, strict_mode=True)
        except binascii.Error as exc:
            raise self._b64_error(str(exc)) from exc
        if block[-1] == _PAD:
            self._check_final_quantum(bytes(block[-4:]))
            self._padded = True
            if more:
                raise self._b64_error("data after the '=' padding")
        self._decoded += len(out)
        self._sink(out)

    def _check_final_quantum(self, quantum: bytes) -> None:
        # Canonical encoders leave the unused low bits of the last character zero.
        if quantum[2] == _PAD:
            bits = _B64_INDEX.get(quantum[1], 0) & 0x0F
        else:
            bits = _B64_INDEX.get(quantum[2], 0) & 0x03
        if bits:
            raise self._b64_error("non-zero padding bits in the last quantum")

    def _end_b64(self) -> None:
        if self._carry:
            raise self._b64_error(
                f"its length is not a multiple of 4 ({len(self._carry)} characters left over)"
            )
        self._b64_seen = True
        self._state = _AFTER_VALUE

    def _b64_error(self, what: str) -> VideoIntegrityError:
        return VideoIntegrityError(
            f"The base64 video data is not valid strict base64: {what} (after "
            f"{self._decoded} decoded bytes); the video is corrupt and was not saved."
        )


def _ends_unpaired(chunk: bytes, run_start: int, end: int, carry_odd: bool) -> bool:
    """Whether ``chunk[run_start:end]`` (continuing a string) ends in an unpaired backslash."""
    count = 0
    k = end - 1
    while k >= run_start and chunk[k] == _BACKSLASH:
        count += 1
        k -= 1
    if k < run_start and carry_odd:
        count += 1
    return count % 2 == 1


def decode_sora_body(
    chunks: Iterable[bytes], sink: Sink, *, task_id: str | None = None
) -> SoraDownload:
    """Decode a whole body given as chunks and verify it (see :meth:`SoraDownload.verify`)."""
    decoder = SoraDownloadDecoder(sink)
    for chunk in chunks:
        decoder.feed(chunk)
    result = decoder.close()
    result.verify(task_id=task_id)
    return result
