"""Who is calling: the :class:`Caller` of a request, and the bearer-token verifiers.

On the HTTP transports the SDK's bearer middleware hands the ``Authorization``
header to one of the verifiers here (the SDK's ``TokenVerifier`` protocol), which
answers with the SDK's ``AccessToken`` whose ``subject`` is the user id; a tool then
maps that back to its :class:`Caller` with :func:`current_caller`. Over stdio (and
on an open loopback HTTP server) there is no token and the caller is :data:`LOCAL`.

- :class:`TokensFileVerifier`: ``GRAVITEX_TOKENS_FILE``, one TOML table per user,
  re-read when it changes (no restart); a broken edit keeps the last good table.
- :class:`SharedTokenVerifier`: ``GRAVITEX_HTTP_TOKEN``, one shared user.
- ``callers_jwt.JwtVerifier``: OAuth 2.1 bearer JWTs from ``GRAVITEX_OAUTH_ISSUER``.

No verifier puts a token or an upstream key in an ``AccessToken``: its ``token``
field holds only a short fingerprint, so nothing that logs or reprs it leaks one.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from pydantic import SecretStr

from ..errors import ConfigurationError, GravitexError

if TYPE_CHECKING:  # upstream/'s HTTP helper: loaded with the JWT verifier only
    from ..upstream.http import FetchJSON

logger = logging.getLogger(__name__)

LOCAL_USER = "local"
SHARED_USER = "shared"
#: Longest bearer token looked at; longer ones are refused before any work.
MAX_TOKEN_CHARS = 16 * 1024
#: User ids used as they are for storage: lower case only (case-insensitive file systems).
_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
#: The signature of a tokens file that could not be read: logged once, retried on change.
_UNREADABLE = (-1, -1, -1)
_FIELDS = frozenset({"token", "token_sha256", "upstream_key", "budget_seconds_per_day"})


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request is from: the user id, their own upstream key, their daily budget."""

    user_id: str
    #: this user's own Gravitex key (tokens file), else None: the server's key pays
    upstream_key: SecretStr | None = field(default=None, repr=False, compare=False)
    #: overrides GRAVITEX_BUDGET_SECONDS_PER_DAY for this user when set
    budget_seconds_per_day: int | None = None

    @property
    def storage_name(self) -> str:
        """A name safe as one path component or database key, distinct per user id:
        the id itself when it is plain (``alice``), else ``u-`` and a digest of it
        (``Alice``, ``../x``, ``u-1``: so two ids never share a folder on any disk)."""
        if _SAFE_NAME.fullmatch(self.user_id) and not self.user_id.startswith("u-"):
            return self.user_id
        return "u-" + hashlib.sha256(self.user_id.encode()).hexdigest()[:32]


#: The caller over stdio, and over HTTP when no authentication is configured.
LOCAL = Caller(LOCAL_USER)


class CallerVerifier(TokenVerifier, Protocol):
    """A ``TokenVerifier`` that can also say which :class:`Caller` a token it
    accepted stands for."""

    def caller_for(self, access: AccessToken) -> Caller | None:
        """The caller of ``access`` (as this verifier returned it), or None if that
        user is no longer known (removed from the tokens file since)."""
        ...


class UnknownCallerError(GravitexError):
    """The request's token named a user the server no longer knows."""


def current_caller(verifier: CallerVerifier | None) -> Caller:
    """The caller of the request being handled (call it inside a tool or resource).

    No authenticated token (stdio, or HTTP without authentication) is :data:`LOCAL`.
    """
    access = get_access_token()
    if access is None or verifier is None:
        return LOCAL
    caller = verifier.caller_for(access)
    if caller is None:
        raise UnknownCallerError(
            "This token's user is no longer in the server's tokens file; ask its operator."
        )
    if caller.user_id == LOCAL_USER:
        # The local user's tasks and files are the stdio user's (and those from before
        # users): a signed-in user must not reach them by taking its name.
        raise UnknownCallerError(
            f"The user id {LOCAL_USER!r} is reserved for the server's own local user; ask the "
            "operator to give this user another name (tokens file table, or the token's sub)."
        )
    return caller


def fingerprint(token: str) -> str:
    """What an ``AccessToken.token`` holds instead of the token: short, one-way."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _access(token: str, user_id: str) -> AccessToken:
    return AccessToken(
        token=fingerprint(token), client_id=user_id, subject=user_id, scopes=[], expires_at=None
    )


class SharedTokenVerifier:
    """``GRAVITEX_HTTP_TOKEN``: one token, one user (:data:`SHARED_USER`)."""

    def __init__(self, token: str, *, user_id: str = SHARED_USER) -> None:
        if not token.strip():
            raise ConfigurationError("GRAVITEX_HTTP_TOKEN is empty.")
        self._digest = _digest(token.strip())
        self._caller = Caller(user_id)

    def __repr__(self) -> str:
        return f"SharedTokenVerifier(user_id={self._caller.user_id!r})"

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > MAX_TOKEN_CHARS:
            return None
        if not hmac.compare_digest(_digest(token.strip()), self._digest):
            return None
        return _access(token, self._caller.user_id)

    def caller_for(self, access: AccessToken) -> Caller | None:
        return self._caller if access.subject == self._caller.user_id else None


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes = field(repr=False)
    caller: Caller


class TokensFileError(ConfigurationError):
    """The tokens file cannot be used; the message names the file and the line."""


def _line_of_table(text: str, name: str) -> int | None:
    quoted = re.escape(name)
    header = re.compile(rf"^\s*\[\s*(?:{quoted}|\"{quoted}\"|'{quoted}')\s*\]")
    for number, line in enumerate(text.splitlines(), start=1):
        if header.match(line):
            return number
    return None


def parse_tokens_file(text: str, path: Path) -> dict[str, _Entry]:
    """The users of a tokens file's ``text``, or a :class:`TokensFileError` naming
    ``path`` and the line (never a token or key)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib quotes the odd character it met (a repr); leave those out.
        reason = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(exc))
        raise TokensFileError(f"{path}: not valid TOML: {reason}") from None
    entries: dict[str, _Entry] = {}
    seen: dict[bytes, str] = {}
    for user_id, table in data.items():
        where = f"{path}, line {_line_of_table(text, user_id) or '?'} (user {user_id!r})"
        entry = _entry(user_id, table, where)
        other = next((u for d, u in seen.items() if hmac.compare_digest(d, entry.digest)), None)
        if other is not None:
            raise TokensFileError(
                f"{where}: has the same token as user {other!r}; every user needs their own."
            )
        seen[entry.digest] = user_id
        entries[user_id] = entry
    return entries


def _entry(user_id: str, table: Any, where: str) -> _Entry:
    if not isinstance(table, dict):
        raise TokensFileError(f"{where}: each user must be a table such as [alice].")
    if not user_id.strip():
        raise TokensFileError(f"{where}: the user id is empty.")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise TokensFileError(
            f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}."
        )
    if ("token" in table) == ("token_sha256" in table):
        raise TokensFileError(f"{where}: give exactly one of token or token_sha256.")
    if "token" in table:
        token = table["token"]
        if not isinstance(token, str) or not token or token != token.strip():
            raise TokensFileError(f"{where}: token must be a non-empty string without spaces.")
        digest = _digest(token)
    else:
        hexdigest = table["token_sha256"]
        if not isinstance(hexdigest, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", hexdigest):
            raise TokensFileError(f"{where}: token_sha256 must be 64 hex digits.")
        digest = bytes.fromhex(hexdigest)
    key = table.get("upstream_key")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise TokensFileError(f"{where}: upstream_key must be a non-empty string.")
    budget = table.get("budget_seconds_per_day")
    if budget is not None and (type(budget) is not int or budget < 0):
        raise TokensFileError(f"{where}: budget_seconds_per_day must be a whole number >= 0.")
    caller = Caller(user_id, SecretStr(key.strip()) if key else None, budget)
    return _Entry(digest, caller)


class TokensFileVerifier:
    """``GRAVITEX_TOKENS_FILE``: each user's token (or its sha256) in a TOML table.

    The file is stat'ed at most once per ``check_interval`` seconds of ``clock``
    while tokens are being checked, and re-read when its mtime, size or inode
    changed; an edit that does not parse is logged (file and line) and the last
    good table stays in force. The first read happens here and must succeed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        check_interval: float = 1.0,
    ) -> None:
        self._path = Path(path)
        self._clock = clock
        self._interval = check_interval
        self._next_check = clock() + check_interval
        self._signature: tuple[int, int, int] | None = None
        try:
            self._entries = self._read()
        except OSError as exc:
            raise TokensFileError(f"{self._path}: cannot read it ({exc.strerror}).") from None
        except UnicodeDecodeError:
            raise TokensFileError(f"{self._path}: cannot read it (not UTF-8).") from None

    def __repr__(self) -> str:
        return f"TokensFileVerifier({str(self._path)!r}, users={len(self._entries)})"

    @property
    def users(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def _read(self) -> dict[str, _Entry]:
        info = self._path.stat()
        self._signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        if os.name == "posix" and info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            logger.warning(
                "%s can be read by other users (mode %o); it holds tokens: chmod 600 it.",
                self._path,
                stat.S_IMODE(info.st_mode),
            )
        entries = parse_tokens_file(self._path.read_text(encoding="utf-8"), self._path)
        logger.info("tokens file %s: %d user(s)", self._path, len(entries))
        return entries

    def _reload_if_changed(self) -> None:
        try:
            info = self._path.stat()
            if (info.st_mtime_ns, info.st_size, info.st_ino) == self._signature:
                return
            self._entries = self._read()
        except TokensFileError as exc:
            logger.error("%s; still using the last good version.", exc)
        except (OSError, UnicodeDecodeError) as exc:
            if self._signature == _UNREADABLE:
                return  # said so already
            self._signature = _UNREADABLE
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            logger.error(
                "%s: cannot read it (%s); still using the last good version.", self._path, reason
            )

    async def _refresh(self) -> None:
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self._interval  # set before awaiting: one check at a time
        await anyio.to_thread.run_sync(self._reload_if_changed)

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token) > MAX_TOKEN_CHARS:
            return None
        await self._refresh()
        digest = _digest(token.strip())
        found: _Entry | None = None
        for entry in self._entries.values():  # no early exit: every entry is compared
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        return None if found is None else _access(token, found.caller.user_id)

    def caller_for(self, access: AccessToken) -> Caller | None:
        entry = self._entries.get(access.subject or "")
        return None if entry is None else entry.caller


def verifier_from_env(
    env: Mapping[str, str],
    *,
    fetch_json: FetchJSON | None = None,
    clock: Callable[[], float] | None = None,
) -> CallerVerifier | None:
    """The verifier the environment asks for, or None (no authentication).

    ``GRAVITEX_TOKENS_FILE``, else ``GRAVITEX_OAUTH_ISSUER`` (with ``GRAVITEX_PUBLIC_URL``
    as the audience; ``fetch_json`` fetches its metadata and keys), else ``GRAVITEX_HTTP_TOKEN``.
    """
    tokens_file = (env.get("GRAVITEX_TOKENS_FILE") or "").strip()
    issuer = (env.get("GRAVITEX_OAUTH_ISSUER") or "").strip()
    if tokens_file and issuer:
        raise ConfigurationError(
            "Set one of GRAVITEX_TOKENS_FILE and GRAVITEX_OAUTH_ISSUER, not both."
        )
    if tokens_file:
        return TokensFileVerifier(tokens_file, clock=clock or time.monotonic)
    if issuer:
        from .callers_jwt import JwtVerifier

        audience = (env.get("GRAVITEX_PUBLIC_URL") or "").strip().rstrip("/")
        if not audience:
            raise ConfigurationError(
                "GRAVITEX_OAUTH_ISSUER needs GRAVITEX_PUBLIC_URL, the server's base URL that "
                "tokens are issued for (their audience), such as https://videos.example.com."
            )
        if fetch_json is None:
            raise ConfigurationError("GRAVITEX_OAUTH_ISSUER needs an HTTP client for its keys.")
        return JwtVerifier(issuer, audience, fetch_json, clock=clock or time.time)
    token = (env.get("GRAVITEX_HTTP_TOKEN") or "").strip()
    return SharedTokenVerifier(token) if token else None


def auth_settings(verifier: CallerVerifier, public_url: str | None) -> AuthSettings:
    """The SDK ``AuthSettings`` to pass ``MCPServer(auth=..., token_verifier=verifier)``.

    For OAuth JWTs: ``public_url`` is the resource, its RFC 9728 metadata is served
    at ``/.well-known/oauth-protected-resource`` and named by every 401. For the
    static tokens there is no authorization server to point clients at, so no
    metadata (the SDK insists on an ``issuer_url`` all the same: it goes unused).
    """
    from .callers_jwt import JwtVerifier

    if isinstance(verifier, JwtVerifier):
        if not public_url:
            raise ConfigurationError("OAuth needs GRAVITEX_PUBLIC_URL, the tokens' audience.")
        return AuthSettings(
            issuer_url=verifier.issuer,  # type: ignore[arg-type]  # pydantic validates the str
            resource_server_url=public_url,  # type: ignore[arg-type]
            validate_token_resource=True,
        )
    return AuthSettings(
        issuer_url=public_url or "http://127.0.0.1",  # type: ignore[arg-type]
        resource_server_url=None,
    )
