"""Caller-supplied media -> what travels upstream (:func:`resolve_media`).

``image``, ``last_frame`` and every item of ``reference_images`` may be:

* **an https URL** - sent upstream byte for byte, never fetched by us. Refused:
  any other scheme, no host, credentials (``user:pass@``), ``localhost``, and an
  IP literal outside the public internet, in every spelling a browser accepts
  (bracketed IPv6, IPv4 inside IPv6 - mapped, 6to4, Teredo, NAT64 - and numeric
  IPv4 such as ``https://2130706433/`` or ``https://0x7f.1/``). Whitespace,
  control characters and backslashes are refused rather than cleaned up, so the
  URL we checked is the URL we send. Host *names* are not resolved.
* **a data URL** ``data:<mime>;base64,<payload>`` - a PNG, JPEG (``image/jpg``
  is read as ``image/jpeg``) or WEBP in strict standard base64, at most
  :data:`MAX_MEDIA_BYTES` decoded (judged from the length before decoding), whose
  bytes really are the declared type with a readable header. It is sent rebuilt
  as ``data:<mime>;base64,<payload>`` (extra parameters dropped).
* **a local path** - only from inside ``input_dirs`` (``GRAVITEX_INPUT_DIRS``;
  none configured: every path is refused). A relative path is looked up in each
  input dir in order. With every symlink followed it must land inside one of
  them, be a regular file of at most :data:`MAX_MEDIA_BYTES` (at most the limit
  + 1 bytes are ever read) and hold a PNG, JPEG or WEBP, judged by its bytes, not
  its name. It travels as a data URL.

A value that starts with ``data:`` is a data URL, one that starts with a URL
scheme (``letters:``) a URL, anything else a path (``./x:y.png`` for a file
named ``x:y.png``).

``audio_url`` (Wan 2.5 only) is an https URL, checked as above, or a local path
under the same rules, holding MP3, WAV, M4A/AAC, OGG or FLAC; audio data URLs
are refused (the upstream docs: "Custom audio file URL (HTTPS format)").

Every refusal is an :class:`~gravitex_mcp.errors.InvalidArgumentsError` with one
:class:`~gravitex_mcp.errors.Problem` for the field, saying what is wrong and
what is valid. A data URL's payload, a URL's credentials and its query string
are never echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, NoReturn
from urllib.parse import urlsplit

from ...errors import InvalidArgumentsError
from ...images import ACCEPTED_IMAGE_TYPES, describe_bytes, image_dimensions, sniff_image_type
from ...redact import clip, redact_url
from .audio import AUDIO_TYPES_TEXT, sniff_audio_type

MediaKind = Literal["image", "audio"]
MediaSource = Literal["url", "data_url", "path"]

MAX_MEDIA_BYTES: Final = 10 * 1024 * 1024
"""The most bytes an image (decoded data URL or local file) may have."""

MAX_REQUEST_MEDIA_BYTES: Final = 2 * MAX_MEDIA_BYTES
"""The most inline bytes (decoded data URLs and local files) one request may carry in all:
a first and a last frame at the 10 MB limit. Media given as https URLs do not count."""

MAX_URL_LENGTH: Final = 8192
"""The longest https URL passed through (signed URLs are typically 1-2 KB)."""

_MAX_BASE64_LENGTH: Final = 4 * ((MAX_MEDIA_BYTES + 2) // 3)
_ECHO_LIMIT: Final = 80
_MIME_ALIASES: Final = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_BASE64_BODY_RE: Final = re.compile(r"[A-Za-z0-9+/]*")
_NOT_BASE64_RE: Final = re.compile(r"[^A-Za-z0-9+/=]")
_HOST_NAME_RE: Final = re.compile(r"[a-z0-9_\-.]+")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")

_IMAGE_TYPES_TEXT: Final = "PNG, JPEG or WEBP"
_VALID_IMAGE: Final = (
    "valid: an https:// URL, a data:image/png|jpeg|webp;base64,... URL, or the path of a "
    f"{_IMAGE_TYPES_TEXT} file of at most 10 MB inside GRAVITEX_INPUT_DIRS"
)
_VALID_AUDIO: Final = (
    "valid: an https:// URL of the audio file that the provider can fetch (e.g. "
    "https://example.com/audio.mp3), or the path of an audio file of at most 10 MB "
    "inside GRAVITEX_INPUT_DIRS"
)
_VALID_DATA_URL: Final = (
    "valid: data:image/png;base64,<standard base64>, or image/jpeg or image/webp, "
    "at most 10 MB decoded"
)


@dataclass(frozen=True, slots=True)
class ResolvedMedia:
    """One checked media argument, ready to travel upstream.

    ``url`` is the https URL exactly as given, or a data URL (given, or built
    from a local file). ``mime_type``, ``size_bytes``, ``width``, ``height``
    and ``sha256`` describe the bytes we hold (data URL or file) and are
    ``None`` for an https URL, whose bytes we never see.
    """

    url: str
    source: MediaSource
    mime_type: str | None
    size_bytes: int | None
    width: int | None
    height: int | None
    sha256: str | None

    def journal_value(self) -> str:
        """What the task journal keeps: the URL without its query string, or a digest.

        Never contains a data URL's payload.
        """
        if self.source == "url":
            return redact_url(self.url)  # a signed URL's signature stays out of the journal
        return f"sha256:{self.sha256} ({self.mime_type}, {self.size_bytes} bytes)"


@dataclass(frozen=True, slots=True)
class LocatedMedia:
    """A media argument that passed every check that reads no file.

    ``inline_bytes`` is what it adds to the request (decoded data URL or file
    size; 0 for an https URL), known before anything is read or decoded, so a
    request can be refused for its total before any work is spent on it.
    """

    value: str
    field: str
    kind: MediaKind
    source: MediaSource
    inline_bytes: int
    path: Path | None = None
    roots: tuple[Path, ...] = ()

    def resolve(self) -> ResolvedMedia:
        """Read (or decode) the bytes and check they are what they claim to be."""
        if self.source == "url":
            return ResolvedMedia(self.value, "url", None, None, None, None, None)
        if self.source == "data_url":
            return _decode_data_url(self.value, field=self.field)
        assert self.path is not None
        return _read_path(self, self.path)


def resolve_media(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    input_dirs: Sequence[Path],
    saved_dir: Path | None = None,
) -> ResolvedMedia:
    """Check one media argument and turn it into what travels upstream.

    ``field`` names the argument in errors (``"image"``,
    ``"reference_images[1]"``); ``kind`` picks the rules (see the module
    docstring). Raises :class:`InvalidArgumentsError` with one problem for
    ``field`` when the value is refused. ``saved_dir`` (the output folder) is read
    from too: files this server wrote there (extract_frames) may start a video.
    """
    return locate_media(
        value, field=field, kind=kind, input_dirs=input_dirs, saved_dir=saved_dir
    ).resolve()


def locate_media(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    input_dirs: Sequence[Path],
    saved_dir: Path | None = None,
) -> LocatedMedia:
    """The checks of :func:`resolve_media` that read no file and decode nothing."""
    valid = _VALID_IMAGE if kind == "image" else _VALID_AUDIO
    if not value.strip():
        _refuse(field, f"is empty; {valid}")
    if value != value.strip():
        _refuse(field, f"{_echo(value)} has leading or trailing whitespace; remove it. {valid}")
    if value[:5].lower() == "data:":
        size = _locate_data_url(value, field=field, kind=kind)
        return LocatedMedia(value, field, kind, "data_url", size)
    scheme = _SCHEME_RE.match(value)
    # On Windows "C:\..." is a drive letter, not a one-letter URL scheme.
    if scheme is not None and not (os.name == "nt" and scheme.end() == 2):
        check_https_url(value, field=field, valid=valid)
        return LocatedMedia(value, field, kind, "url", 0)
    return _locate_path(value, field=field, kind=kind, input_dirs=input_dirs, saved_dir=saved_dir)


# --- https URLs -----------------------------------------------------------------


def check_https_url(value: str, *, field: str, valid: str) -> None:
    """Refuse anything but an https URL on a public host, without credentials.

    ``valid`` ends each message, saying what the field accepts. Raises
    :class:`InvalidArgumentsError` with one problem for ``field``.
    """
    shown = _echo(value)
    if len(value) > MAX_URL_LENGTH:
        _refuse(field, f"the URL is {len(value)} characters long; the limit is {MAX_URL_LENGTH}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        _refuse(
            field,
            f"{shown} contains whitespace or control characters; percent-encode them. {valid}",
        )
    if "\\" in value:
        _refuse(field, f"{shown} contains a backslash; use '/' or percent-encode it. {valid}")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        _refuse(field, f"{shown} is not a well-formed URL ({exc}); {valid}")
    scheme = parts.scheme.lower()
    if scheme == "http":
        _refuse(
            field,
            f"{shown} is a plain http:// URL; only https:// URLs are accepted "
            f"(change the scheme if the server supports https). {valid}",
        )
    if scheme == "file":
        where = "give the file's path (inside GRAVITEX_INPUT_DIRS) instead"
        _refuse(field, f"{shown} is a file:// URL, which is not accepted; {where}. {valid}")
    if scheme != "https":
        _refuse(
            field,
            f"{shown} uses the URL scheme {clip(scheme, _ECHO_LIMIT)!r}, which is not "
            f"accepted; {valid}",
        )
    netloc = parts.netloc
    if not netloc:
        _refuse(field, f"{shown} has no host; {valid}")
    if "@" in netloc:
        _refuse(
            field,
            "the URL contains credentials (user:password@host), which are not accepted: "
            "they would be sent to the video provider and kept in logs. Use a URL that "
            f"needs no login, such as a signed URL. {valid}",
        )
    try:
        _ = parts.port
    except ValueError:
        _refuse(field, f"{shown} has an invalid port; {valid}")
    host = parts.hostname
    if not host:
        _refuse(field, f"{shown} has no host; {valid}")
    reason = _host_refusal(host, bracketed=netloc.startswith("["))
    if reason is not None:
        _refuse(
            field,
            f"{shown} points at {reason}, which the video provider cannot (and must not) "
            f"fetch; valid: an https:// URL on a public host name or public IP address",
        )


def _host_refusal(host: str, *, bracketed: bool) -> str | None:
    """Why ``host`` (lower-cased, brackets removed) is refused, or ``None``."""
    if bracketed:
        try:
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            return "a malformed IPv6 address"
        return _ip_refusal(ip6)
    if "%" in host:
        return "a percent-encoded host name"
    if not host.isascii():
        # Browsers map full-width digits, ideographic dots, ... through IDNA:
        # check the host the way it will be understood.
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            return "an invalid host name"
    name = host.removesuffix(".")
    if not name or not _HOST_NAME_RE.fullmatch(name):
        return "an invalid host name"
    if name == "localhost" or name.endswith(".localhost"):
        return "localhost"
    labels = name.split(".")
    if _is_number(labels[-1]):
        # Ends in a number: browsers read the whole host as an IPv4 address.
        ip4 = _parse_ipv4(labels)
        if ip4 is None:
            return "a malformed IPv4 address"
        return _ip_refusal(ip4)
    return None


def _is_number(label: str) -> bool:
    if label[:2].lower() == "0x":
        return all(ch in "0123456789abcdef" for ch in label[2:].lower())
    return label != "" and all(ch in "0123456789" for ch in label)


def _parse_ipv4(labels: list[str]) -> ipaddress.IPv4Address | None:
    """The IPv4 address of a host in any form ``inet_aton`` and browsers accept.

    One to four parts, each decimal, octal (leading ``0``) or hex (``0x``); the
    last part fills the remaining bytes (``127.1``, ``2130706433``).
    """
    if len(labels) > 4:
        return None
    numbers: list[int] = []
    for label in labels:
        if label[:2].lower() == "0x":
            digits, base, alphabet = label[2:].lower(), 16, "0123456789abcdef"
        elif len(label) > 1 and label.startswith("0"):
            digits, base, alphabet = label[1:], 8, "01234567"
        else:
            digits, base, alphabet = label, 10, "0123456789"
        if (not digits and base == 10) or not all(ch in alphabet for ch in digits):
            return None
        numbers.append(int(digits, base) if digits else 0)
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    address = last
    for index, number in enumerate(head):
        address += number << (8 * (3 - index))
    return ipaddress.IPv4Address(address)


def _ip_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Which non-public range ``ip`` is in, or ``None`` for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is the IPv4 address itself (::/8 would call it "reserved").
            inner = _ip_refusal(ip.ipv4_mapped)
            return None if inner is None else f"{inner} (IPv4 mapped into IPv6)"
        embedded: ipaddress.IPv4Address | None = ip.sixtofour
        if ip.teredo is not None:
            embedded = ip.teredo[1]
        if ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = _ip_refusal(embedded)
            if inner is not None:
                return f"{inner} (IPv4 {embedded} inside IPv6)"
    if ip.is_unspecified:
        return f"an unspecified IP address ({ip})"
    if ip.is_loopback:
        return f"a loopback IP address ({ip})"
    if ip.is_link_local:
        return f"a link-local IP address ({ip})"
    if ip.is_multicast:
        return f"a multicast IP address ({ip})"
    if ip.is_reserved:
        return f"a reserved IP address ({ip})"
    if ip.is_private:
        return f"a private IP address ({ip})"
    if not ip.is_global:
        return f"an IP address that is not publicly routable ({ip})"
    return None


# --- data URLs --------------------------------------------------------------------


def _locate_data_url(value: str, *, field: str, kind: MediaKind) -> int:
    """Check a data URL without decoding it; the number of bytes it holds."""
    if kind == "audio":
        _refuse(
            field,
            f"{_echo(value)} is a data URL; the Gravitex API takes audio only as an https URL "
            f"(its docs: 'Custom audio file URL (HTTPS format)'). {_VALID_AUDIO}",
        )
    comma = value.find(",")
    if comma < 0:
        _refuse(
            field,
            f"{_echo(value)} is not a valid data URL (no ',' before the data); {_VALID_DATA_URL}",
        )
    # The payload is never sliced out here: it may be megabytes, and is judged in place.
    header, start = value[5:comma], comma + 1
    length = len(value) - start
    params = [part.strip() for part in header.split(";")]
    declared = params[0].lower()
    if len(params) < 2 or params[-1].lower() != "base64":
        _refuse(
            field,
            f"{_echo(value)} is not base64-encoded; only ';base64' data URLs are accepted. "
            f"{_VALID_DATA_URL}",
        )
    if not declared:
        _refuse(field, f"the data URL has no MIME type; {_VALID_DATA_URL}")
    mime = _MIME_ALIASES.get(declared, declared)
    if mime not in ACCEPTED_IMAGE_TYPES:
        _refuse(
            field,
            f"the data URL's MIME type {clip(declared, _ECHO_LIMIT)!r} is not accepted; "
            "valid MIME types: "
            f"{', '.join(ACCEPTED_IMAGE_TYPES)} (image/jpg is read as image/jpeg)",
        )
    if not length:
        _refuse(field, f"the data URL has no data after the ','; {_VALID_DATA_URL}")
    if length > _MAX_BASE64_LENGTH:
        approx = length * 3 // 4
        _refuse(
            field,
            f"the data URL holds about {approx} bytes ({_megabytes(approx)}); the limit is 10 MB "
            f"({MAX_MEDIA_BYTES} bytes). Use a smaller image or an https:// URL.",
        )
    problem = _base64_problem(value, start)
    if problem is not None:
        _refuse(field, f"the data URL's payload is not valid base64: {problem}. {_VALID_DATA_URL}")
    return length * 3 // 4 - _padding(value, start)


def _decode_data_url(value: str, *, field: str) -> ResolvedMedia:
    """Decode a data URL that :func:`_locate_data_url` accepted and check its bytes."""
    header, payload = value[5:].split(",", 1)
    declared = header.split(";")[0].strip().lower()
    mime = _MIME_ALIASES.get(declared, declared)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        _refuse(field, f"the data URL's payload is not valid base64 ({exc}); {_VALID_DATA_URL}")
    if len(data) > MAX_MEDIA_BYTES:
        _refuse(
            field,
            f"the data URL holds {len(data)} bytes ({_megabytes(len(data))}); the limit is "
            f"10 MB ({MAX_MEDIA_BYTES} bytes). Use a smaller image or an https:// URL.",
        )
    real = sniff_image_type(data)
    if real is None:
        _refuse(
            field,
            f"the data URL says {mime} but its bytes are {describe_bytes(data)}; valid: the bytes "
            f"of a {_IMAGE_TYPES_TEXT} image",
        )
    if real != mime:
        _refuse(
            field,
            f"the data URL says {mime} but its bytes are {describe_bytes(data)}; "
            f"declare the real type (data:{real};base64,...)",
        )
    return _held_media(
        data,
        mime=mime,
        url=f"data:{mime};base64,{payload}",
        source="data_url",
        field=field,
        what="the data URL's image",
    )


def _padding(text: str, start: int) -> int:
    """How many ``=`` end ``text[start:]`` (up to 3: more is as wrong as 3)."""
    tail = text[max(start, len(text) - 3) :]
    return len(tail) - len(tail.rstrip("="))


def _base64_problem(text: str, start: int = 0) -> str | None:
    """Why ``text[start:]`` is not strict standard base64, or ``None`` (read in place)."""
    bad = _NOT_BASE64_RE.search(text, start)
    if bad is not None:
        char = bad.group()
        hint = ""
        if char.isspace():
            hint = " (whitespace and line breaks are not allowed)"
        elif char in "-_":
            hint = " (that is URL-safe base64; use the standard alphabet with + and /)"
        elif char == "%":
            hint = " (percent-encoding is not allowed)"
        position = bad.start() - start
        return f"character {char!r} at position {position} is not in the alphabet{hint}"
    padding = _padding(text, start)
    body_end = len(text) - padding
    if (
        padding > 2
        or (len(text) - start) % 4
        or not _BASE64_BODY_RE.fullmatch(text, start, body_end)
    ):
        return (
            "wrong length or padding (the length must be a multiple of 4, "
            "with at most two '=' and only at the end)"
        )
    return None


# --- local paths -------------------------------------------------------------------


def _locate_path(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    input_dirs: Sequence[Path],
    saved_dir: Path | None,
) -> LocatedMedia:
    shown = _echo(value)
    types_text = _IMAGE_TYPES_TEXT if kind == "image" else AUDIO_TYPES_TEXT
    if not input_dirs and saved_dir is None:
        _refuse(
            field,
            f"{shown} looks like a local path, but local files are disabled: "
            f"GRAVITEX_INPUT_DIRS is not set. Set GRAVITEX_INPUT_DIRS to the folder(s) holding "
            f"your {kind} files, or pass an https:// URL instead",
        )
    if "\x00" in value:
        _refuse(field, f"{shown} contains a NUL character; {_VALID_IMAGE}")
    roots = _resolved_roots([*input_dirs, *([saved_dir] if saved_dir is not None else [])])
    if not roots:
        _refuse(field, f"{shown}: none of the GRAVITEX_INPUT_DIRS can be used; {_VALID_IMAGE}")
    roots_text = clip(", ".join(str(root) for root in roots), 200)
    if input_dirs:
        saved = f" or the output folder ({saved_dir})" if saved_dir is not None else ""
        outside = (
            f"{shown} is outside the input folders (GRAVITEX_INPUT_DIRS: "
            f"{clip(', '.join(str(d) for d in input_dirs), 200)}){saved}; valid: a file "
            "inside one of them ('..' and symlinks leading out are refused)"
        )
    else:
        outside = (
            f"{shown} is outside the output folder ({saved_dir}), the only folder local "
            "files are read from while GRAVITEX_INPUT_DIRS is not set. Set "
            f"GRAVITEX_INPUT_DIRS to the folder(s) holding your {kind} files, or pass an "
            "https:// URL instead"
        )
    try:
        raw = Path(value).expanduser()
    except RuntimeError:
        _refuse(field, f"{shown}: '~' could not be expanded; give an absolute path. {_VALID_IMAGE}")
    if raw.is_absolute():
        target = raw
    else:
        found = [root / raw for root in roots if os.path.lexists(root / raw)]
        target = found[0] if found else roots[0] / raw
    # Decide "inside or not" before saying whether anything exists, so paths
    # outside the input dirs cannot be probed.
    try:
        lexical = target.resolve()
    except (OSError, RuntimeError) as exc:
        _refuse(field, f"{shown} cannot be resolved ({_os_reason(exc)}); {_VALID_IMAGE}")
    if not _inside(lexical, roots):
        _refuse(field, outside)
    try:
        resolved = target.resolve(strict=True)
    except FileNotFoundError:
        _refuse(
            field,
            f"{shown} does not exist (looked in {clip(str(lexical), 160)}); valid: an existing "
            f"{types_text} file inside GRAVITEX_INPUT_DIRS ({roots_text})",
        )
    except (OSError, RuntimeError) as exc:
        _refuse(field, f"{shown} cannot be resolved ({_os_reason(exc)}); {_VALID_IMAGE}")
    if not _inside(resolved, roots):
        _refuse(field, outside)
    try:
        info = os.stat(resolved)
    except OSError as exc:
        _refuse(field, f"{shown} cannot be read ({_os_reason(exc)}); {_VALID_IMAGE}")
    _check_file_type(info, field=field, shown=shown)
    return LocatedMedia(value, field, kind, "path", info.st_size, resolved, tuple(roots))


def _check_file_type(info: os.stat_result, *, field: str, shown: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        _refuse(field, f"{shown} is a directory; valid: a {_IMAGE_TYPES_TEXT} file")
    if not stat.S_ISREG(info.st_mode):
        _refuse(field, f"{shown} is not a regular file; valid: a {_IMAGE_TYPES_TEXT} file")
    if info.st_size > MAX_MEDIA_BYTES:
        _refuse(field, _too_big(shown, info.st_size))


def _read_path(located: LocatedMedia, path: Path) -> ResolvedMedia:
    field, shown = located.field, _echo(located.value)
    data = _read_limited(path, field=field, shown=shown, roots=located.roots)
    if located.kind == "audio":
        return _held_audio(data, field=field, shown=shown)
    real = sniff_image_type(data)
    if real is None:
        _refuse(
            field,
            f"{shown} is not a {_IMAGE_TYPES_TEXT} image: its content is {describe_bytes(data)} "
            "(the type is judged from the bytes, not the file name); valid: a PNG, JPEG or "
            "WEBP file of at most 10 MB",
        )
    encoded = base64.b64encode(data).decode("ascii")
    return _held_media(
        data, mime=real, url=f"data:{real};base64,{encoded}", source="path", field=field, what=shown
    )


def _resolved_roots(input_dirs: Sequence[Path]) -> list[Path]:
    roots: list[Path] = []
    for directory in input_dirs:
        try:
            roots.append(Path(directory).expanduser().resolve())
        except (OSError, RuntimeError):
            continue  # an unusable root contains nothing
    return roots


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _read_limited(path: Path, *, field: str, shown: str, roots: Sequence[Path]) -> bytes:
    """Read a regular file of at most MAX_MEDIA_BYTES, never more than that + 1 bytes.

    The file actually opened must still be inside ``roots``: a folder swapped for a
    symlink between the check and the open (O_NOFOLLOW guards only the last part)
    is caught where the OS can tell (Linux's /proc/self/fd).
    """
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)  # the path is resolved: a symlink here is a swap
        | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        _refuse(field, f"{shown} cannot be opened ({_os_reason(exc)}); {_VALID_IMAGE}")
    chunks: list[bytes] = []
    try:
        opened = _opened_path(fd)
        if opened is not None and not _inside(opened, roots):
            _refuse(
                field,
                f"{shown} changed while it was being opened and now leads outside the "
                "input folders (GRAVITEX_INPUT_DIRS); valid: a file inside one of them",
            )
        _check_file_type(os.fstat(fd), field=field, shown=shown)  # again: it may have changed
        remaining = MAX_MEDIA_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        _refuse(field, f"{shown} cannot be read ({_os_reason(exc)}); {_VALID_IMAGE}")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_MEDIA_BYTES:  # grew while we looked
        _refuse(field, _too_big(shown, len(data)))
    return data


def _opened_path(fd: int) -> Path | None:
    """The real path of open file ``fd``, where the OS says (Linux), else ``None``."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _too_big(shown: str, size: int) -> str:
    return (
        f"{shown} is {size} bytes ({_megabytes(size)}); the limit is 10 MB "
        f"({MAX_MEDIA_BYTES} bytes). Use a smaller {_IMAGE_TYPES_TEXT} file"
    )


# --- shared helpers --------------------------------------------------------------------


def _held_media(
    data: bytes, *, mime: str, url: str, source: MediaSource, field: str, what: str
) -> ResolvedMedia:
    size = image_dimensions(data)
    if size is None:
        _refuse(
            field,
            f"{what} starts like {mime} but its header is truncated or damaged "
            "(no readable width and height); valid: a complete PNG, JPEG or WEBP image",
        )
    width, height = size
    return ResolvedMedia(
        url=url,
        source=source,
        mime_type=mime,
        size_bytes=len(data),
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _held_audio(data: bytes, *, field: str, shown: str) -> ResolvedMedia:
    # The docs describe audio_url as an https URL; a local file travels as a data
    # URL like local images do (the contract allows a path here).
    mime = sniff_audio_type(data)
    if mime is None:
        _refuse(
            field,
            f"{shown} is not an audio file: its content is {describe_bytes(data)}; valid: an "
            f"{AUDIO_TYPES_TEXT} file of at most 10 MB, or an https:// URL",
        )
    encoded = base64.b64encode(data).decode("ascii")
    return ResolvedMedia(
        url=f"data:{mime};base64,{encoded}",
        source="path",
        mime_type=mime,
        size_bytes=len(data),
        width=None,
        height=None,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _refuse(field: str, message: str) -> NoReturn:
    raise InvalidArgumentsError.about(field, message)


def _echo(value: str) -> str:
    """A short, safe rendering of a caller's value for an error message.

    Data URLs show only their header; URLs lose credentials and query string.
    """
    if value[:5].lower() == "data:":
        header = value.split(",", 1)[0]
        return f"{clip(header, 60)!r} (data URL of {len(value)} characters)"
    scheme, sep, rest = value.partition("://")
    if sep and _SCHEME_RE.fullmatch(scheme + ":"):
        cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        authority, tail = rest[:cut], rest[cut:]
        if "@" in authority:
            authority = "…@" + authority.rsplit("@", 1)[1]
        path, query_mark, _query = tail.partition("?")
        path = path.split("#", 1)[0]
        shown = f"{scheme}://{authority}{path}{'?…' if query_mark else ''}"
        return repr(clip(shown, _ECHO_LIMIT))
    return repr(clip(value, _ECHO_LIMIT))


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.2f} MB"


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
