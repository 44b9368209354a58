"""https URLs: sent upstream byte for byte, never fetched; refused unless on a public host.

Refused: any other scheme, no host, credentials (``user:pass@``), ``localhost``, and an
IP literal outside the public internet, in every spelling a browser accepts (bracketed
IPv6, IPv4 inside IPv6 - mapped, 6to4, Teredo, NAT64 - and numeric IPv4 such as
``https://2130706433/`` or ``https://0x7f.1/``). Whitespace, control characters and
backslashes are refused rather than cleaned up, so the URL checked is the URL sent.
Host *names* are not resolved.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

from ...redact import clip
from .media import ECHO_LIMIT, echo, refuse

MAX_URL_LENGTH: Final = 8192
"""The longest https URL passed through (signed URLs are typically 1-2 KB)."""

_HOST_NAME_RE: Final = re.compile(r"[a-z0-9_\-.]+")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def check_https_url(value: str, *, field: str, valid: str) -> None:
    """Refuse anything but an https URL on a public host, without credentials.

    ``valid`` ends each message, saying what the field accepts. Raises
    :class:`InvalidArgumentsError` with one problem for ``field``.
    """
    shown = echo(value)
    if len(value) > MAX_URL_LENGTH:
        refuse(field, f"the URL is {len(value)} characters long; the limit is {MAX_URL_LENGTH}")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        refuse(
            field,
            f"{shown} contains whitespace or control characters; percent-encode them. {valid}",
        )
    if "\\" in value:
        refuse(field, f"{shown} contains a backslash; use '/' or percent-encode it. {valid}")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        refuse(field, f"{shown} is not a well-formed URL ({exc}); {valid}")
    scheme = parts.scheme.lower()
    if scheme == "http":
        refuse(
            field,
            f"{shown} is a plain http:// URL; only https:// URLs are accepted "
            f"(change the scheme if the server supports https). {valid}",
        )
    if scheme == "file":
        where = "give the file's path (inside GRAVITEX_INPUT_DIRS) instead"
        refuse(field, f"{shown} is a file:// URL, which is not accepted; {where}. {valid}")
    if scheme != "https":
        refuse(
            field,
            f"{shown} uses the URL scheme {clip(scheme, ECHO_LIMIT)!r}, which is not "
            f"accepted; {valid}",
        )
    netloc = parts.netloc
    if not netloc:
        refuse(field, f"{shown} has no host; {valid}")
    if "@" in netloc:
        refuse(
            field,
            "the URL contains credentials (user:password@host), which are not accepted: "
            "they would be sent to the video provider and kept in logs. Use a URL that "
            f"needs no login, such as a signed URL. {valid}",
        )
    try:
        _ = parts.port
    except ValueError:
        refuse(field, f"{shown} has an invalid port; {valid}")
    host = parts.hostname
    if not host:
        refuse(field, f"{shown} has no host; {valid}")
    reason = _host_refusal(host, bracketed=netloc.startswith("["))
    if reason is not None:
        refuse(
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
