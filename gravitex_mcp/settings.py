"""Settings, built once at start-up from the environment and CLI flags.

Nothing here runs at import time: :func:`load_settings` is called by the CLI
(or a test) with an explicit environment mapping.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigurationError, MissingAPIKeyError

DEFAULT_BASE_URL = "https://api.gravitex.ai"
DEFAULT_OUTPUT_SUBDIR = "gravitex-videos"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Seconds a streamable-HTTP session may go without a request before it is closed.
DEFAULT_SESSION_IDLE = 1800.0
#: Default life of a presigned media link to an object (GRAVITEX_MEDIA_TTL_SECONDS).
DEFAULT_MEDIA_TTL = 3600
#: How object storage copies create-only unless AWS_COPY_IF_NOT_EXISTS says otherwise:
#: Amazon S3's own way (a multipart copy completed with ``If-None-Match: *``). SeaweedFS
#: accepts that too but does not make it atomic (racing copies both "win", the last
#: replacing the first; tests/test_video_store_contract.py), while it honours
#: ``header:If-None-Match:*`` on a plain copy atomically: set that for SeaweedFS.
DEFAULT_COPY_IF_NOT_EXISTS = "multipart"
#: Connections to GRAVITEX_DATABASE_URL kept open, and the most at once (per replica):
#: sized for a replica serving about 1,000 jobs at once (bench/RESULTS.md, issue 17),
#: each call holding one for a statement or so; a fifth are kept for listings
#: (store/pg_pool.py).
DEFAULT_POOL_MIN = 2
DEFAULT_POOL_MAX = 20
MAX_POOL_SIZE = 100
#: Shortest GRAVITEX_SERVER_SECRET (the SDK's request-state keys need 32 bytes).
MIN_SERVER_SECRET = 32

#: Every environment variable the server reads, with what it sets (for --help,
#: the MCP registry's server.json and the bundle's manifest; a test keeps them in step).
ENVIRONMENT_VARIABLES: tuple[tuple[str, str], ...] = (
    ("GRAVITEX_API_KEY", "your Gravitex API key (sk-...); not needed with --simulate"),
    ("GRAVITEX_OUTPUT_DIR", "where videos are saved (default ~/gravitex-videos)"),
    (
        "GRAVITEX_STATE_DIR",
        "task journal and simulated tasks (default ~/.local/state/gravitex-mcp, "
        "or $XDG_STATE_HOME/gravitex-mcp)",
    ),
    (
        "GRAVITEX_INPUT_DIRS",
        "folders local images may be read from, ':'-separated (';' on Windows; default none)",
    ),
    ("GRAVITEX_BASE_URL", f"the upstream API (default {DEFAULT_BASE_URL})"),
    ("GRAVITEX_SIMULATE", "1 to use the built-in simulator instead of the real API"),
    ("GRAVITEX_SIMULATOR_SECONDS", "how long a simulated generation takes (default 6)"),
    ("GRAVITEX_HTTP_TOKEN", "bearer token clients must send over sse / streamable-http"),
    ("GRAVITEX_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO; on stderr)"),
    (
        "GRAVITEX_PUBLIC_URL",
        "external base URL of the media links over sse / streamable-http, behind a proxy",
    ),
    ("GRAVITEX_MEDIA", "off turns the media links and the loopback media server off (default on)"),
    (
        "GRAVITEX_SERVER_SECRET",
        "shared by every replica (32+ characters): signs media links and request state",
    ),
    ("GRAVITEX_STATELESS", "1: stateless streamable HTTP, any request to any replica"),
    (
        "GRAVITEX_SESSION_IDLE_SECONDS",
        f"streamable-HTTP sessions idle this long are closed (default {DEFAULT_SESSION_IDLE:g})",
    ),
    ("GRAVITEX_METRICS_PUBLIC", "1: GET /metrics needs no token (default: the token of /mcp)"),
    ("GRAVITEX_TOKENS_FILE", "TOML file of users: token, own upstream_key (sse / streamable-http)"),
    (
        "GRAVITEX_OAUTH_ISSUER",
        "OAuth issuer whose JWTs (audience GRAVITEX_PUBLIC_URL) say who calls",
    ),
    ("GRAVITEX_USER_KEYS", "1: a request's X-Gravitex-Api-Key header pays for what it causes"),
    (
        "GRAVITEX_CONFIRM_OVER_SECONDS",
        "ask the person to approve a submission of more seconds of video than this",
    ),
    (
        "GRAVITEX_SUBMITS_PER_MINUTE",
        "submissions each user may make per minute (default: no limit)",
    ),
    (
        "GRAVITEX_STORAGE_URL",
        "s3://bucket[/prefix]: videos, sheets, frames and joins as objects (AWS_ENDPOINT_URL, "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION; AWS_ALLOW_HTTP=1 for plain http)",
    ),
    (
        "GRAVITEX_MEDIA_TTL_SECONDS",
        f"life of a presigned media link to an object (default {DEFAULT_MEDIA_TTL})",
    ),
    (
        "GRAVITEX_BUDGET_SECONDS_PER_DAY",
        "seconds of video each user may submit per UTC day (default: no cap)",
    ),
    (
        "GRAVITEX_DATABASE_URL",
        "postgresql://...: keep the tasks in PostgreSQL, shared by every replica "
        "(default: the state folder's SQLite journal)",
    ),
    (
        "GRAVITEX_DATABASE_POOL_MIN",
        f"connections to GRAVITEX_DATABASE_URL kept open (default {DEFAULT_POOL_MIN})",
    ),
    (
        "GRAVITEX_DATABASE_POOL_MAX",
        f"most connections to GRAVITEX_DATABASE_URL at once (default {DEFAULT_POOL_MAX}; "
        "a fifth of them kept for listings)",
    ),
)


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or env.get("USERPROFILE")
    return Path(home) if home else Path.home()


def default_output_dir(env: Mapping[str, str]) -> Path:
    """``~/gravitex-videos``: easy to find for a person, outside any project tree."""
    return _home(env) / DEFAULT_OUTPUT_SUBDIR


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/gravitex-mcp``, else ``~/.local/state/gravitex-mcp``."""
    xdg = env.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "gravitex-mcp"
    return _home(env) / ".local" / "state" / "gravitex-mcp"


@dataclass(frozen=True, slots=True)
class ObjectStorage:
    """Where and how to reach the bucket (built once, in settings)."""

    bucket: str
    prefix: str = ""
    """``""`` or a key prefix ending in ``/``."""
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    allow_http: bool = False
    media_ttl_seconds: int = DEFAULT_MEDIA_TTL
    #: how a copy is made create-only (obstore's ``copy_if_not_exists``; the standard
    #: AWS_COPY_IF_NOT_EXISTS): S3's own multipart copy completed with If-None-Match,
    #: or a header the store honours on a plain copy (see DEFAULT_COPY_IF_NOT_EXISTS)
    copy_if_not_exists: str = "multipart"
    #: obstore's retries of one request, and its time-outs (a failing store answers soon).
    max_retries: int = 3
    retry_timeout: timedelta = timedelta(seconds=30)
    connect_timeout: timedelta = timedelta(seconds=5)
    timeout: timedelta = timedelta(seconds=120)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_storage_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> (bucket, prefix ending in ``/`` or ``""``);
    ``ValueError`` saying what is wrong."""
    if not url.startswith("s3://"):
        raise ValueError(f"must be s3://bucket[/prefix], got {url!r}")
    bucket, _, rest = url[len("s3://") :].partition("/")
    if not bucket or any(c in bucket for c in "?#\\ "):
        raise ValueError(f"names no bucket: {url!r} (use s3://bucket[/prefix])")
    parts = [p for p in rest.split("/") if p]
    if any(p in (".", "..") or p.startswith(".") for p in parts) or any(
        c in rest for c in "?#\\\0"
    ):
        raise ValueError(f"has an unusable prefix: {url!r}")
    return bucket, "".join(p + "/" for p in parts)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs to know about its environment."""

    api_key: str | None = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    output_dir: Path = field(default_factory=lambda: Path.cwd() / DEFAULT_OUTPUT_SUBDIR)
    state_dir: Path = field(default_factory=lambda: Path.cwd() / ".gravitex-state")
    input_dirs: tuple[Path, ...] = ()
    http_token: str | None = field(default=None, repr=False)
    simulate: bool = False
    log_level: str = "INFO"
    #: how long a simulated generation takes (queued + in progress), seconds
    simulator_seconds: float = 6.0
    #: external base URL of the media links behind a proxy (GRAVITEX_PUBLIC_URL)
    public_url: str | None = None
    #: media links and the loopback media server (GRAVITEX_MEDIA=off turns them off)
    media: bool = True
    #: shared by every replica: keys for media links and request state (derive_key)
    server_secret: str | None = field(default=None, repr=False)
    #: stateless streamable HTTP (--stateless, GRAVITEX_STATELESS=1)
    stateless: bool = False
    #: a streamable-HTTP session with no request for this long is closed
    session_idle_seconds: float = DEFAULT_SESSION_IDLE
    #: GET /metrics without the token (GRAVITEX_METRICS_PUBLIC=1)
    metrics_public: bool = False
    #: a request's X-Gravitex-Api-Key header pays for it (GRAVITEX_USER_KEYS=1)
    user_keys: bool = False
    #: submissions of more seconds than this ask the person first (None: never)
    confirm_over_seconds: int | None = None
    #: submissions per user per minute (None: no limit)
    submits_per_minute: int | None = None
    #: seconds of video a user may submit per UTC day (None: no cap; the tokens file's
    #: budget_seconds_per_day overrides it per user)
    budget_seconds_per_day: int | None = None
    #: who calls (HTTP): the tokens file, or the OAuth issuer (server/callers.py reads them)
    tokens_file: str | None = None
    oauth_issuer: str | None = None
    #: the S3-compatible video store (GRAVITEX_STORAGE_URL); None: the output folder
    storage: ObjectStorage | None = None
    #: the tasks in PostgreSQL (GRAVITEX_DATABASE_URL); None: the state folder's journal
    database_url: str | None = field(default=None, repr=False)  # may hold a password
    #: the database's connection pool per replica (GRAVITEX_DATABASE_POOL_MIN/MAX)
    database_pool: tuple[int, int] = (DEFAULT_POOL_MIN, DEFAULT_POOL_MAX)

    def require_api_key(self) -> str:
        """The key, or a :class:`MissingAPIKeyError` naming what to set and where."""
        if not self.api_key:
            raise MissingAPIKeyError()
        return self.api_key


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (brackets allowed)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def load_settings(
    env: Mapping[str, str],
    *,
    simulate: bool | None = None,
    base_url: str | None = None,
    output_dir: str | Path | None = None,
    state_dir: str | Path | None = None,
    log_level: str | None = None,
    input_dirs: Sequence[str | Path] | None = None,
    stateless: bool | None = None,
) -> Settings:
    """Build :class:`Settings` from ``env``; keyword arguments (CLI flags) win."""
    sim = simulate if simulate is not None else _truthy(env.get("GRAVITEX_SIMULATE"))
    key = (env.get("GRAVITEX_API_KEY") or "").strip() or None
    url = (base_url or env.get("GRAVITEX_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ConfigurationError(
            f"GRAVITEX_BASE_URL must be an http(s) URL, got {url!r} (default {DEFAULT_BASE_URL})."
        )
    if url.startswith("http://") and not sim and not is_loopback(urlsplit(url).hostname or ""):
        raise ConfigurationError(
            f"GRAVITEX_BASE_URL {url!r} is plain http: the API key would cross the network "
            "unencrypted. Use https (plain http is accepted only for a loopback host)."
        )
    out = Path(output_dir or env.get("GRAVITEX_OUTPUT_DIR") or default_output_dir(env))
    state = Path(state_dir or env.get("GRAVITEX_STATE_DIR") or default_state_dir(env))
    raw_inputs = env.get("GRAVITEX_INPUT_DIRS") or ""
    given = [str(p) for p in input_dirs or () if str(p).strip()]
    inputs = tuple(
        Path(p).expanduser().resolve() for p in (given or raw_inputs.split(os.pathsep)) if p.strip()
    )
    level = (log_level or env.get("GRAVITEX_LOG_LEVEL") or "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError(
            f"GRAVITEX_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}."
        )
    token = (env.get("GRAVITEX_HTTP_TOKEN") or "").strip() or None
    raw_sim_seconds = env.get("GRAVITEX_SIMULATOR_SECONDS") or "6"
    try:
        sim_seconds = float(raw_sim_seconds)
    except ValueError:
        sim_seconds = -1.0
    if not 0 <= sim_seconds <= 3600:
        raise ConfigurationError(
            f"GRAVITEX_SIMULATOR_SECONDS must be a number of seconds from 0 to 3600, "
            f"got {raw_sim_seconds!r}."
        )
    raw_public = (env.get("GRAVITEX_PUBLIC_URL") or "").strip()
    public_url = _public_url(raw_public) if raw_public else None
    return Settings(
        api_key=key,
        base_url=url,
        output_dir=out.expanduser().resolve(),
        state_dir=state.expanduser().resolve(),
        input_dirs=inputs,
        http_token=token,
        simulate=sim,
        log_level=level,
        simulator_seconds=sim_seconds,
        public_url=public_url,
        media=_media_switch(env.get("GRAVITEX_MEDIA")),
        server_secret=_server_secret(env.get("GRAVITEX_SERVER_SECRET")),
        stateless=stateless or _truthy(env.get("GRAVITEX_STATELESS")),
        session_idle_seconds=_session_idle(env.get("GRAVITEX_SESSION_IDLE_SECONDS")),
        metrics_public=_truthy(env.get("GRAVITEX_METRICS_PUBLIC")),
        user_keys=_truthy(env.get("GRAVITEX_USER_KEYS")),
        confirm_over_seconds=_whole(
            env.get("GRAVITEX_CONFIRM_OVER_SECONDS"), "GRAVITEX_CONFIRM_OVER_SECONDS", minimum=0
        ),
        submits_per_minute=_whole(
            env.get("GRAVITEX_SUBMITS_PER_MINUTE"), "GRAVITEX_SUBMITS_PER_MINUTE", minimum=1
        ),
        budget_seconds_per_day=_whole(
            env.get("GRAVITEX_BUDGET_SECONDS_PER_DAY"), "GRAVITEX_BUDGET_SECONDS_PER_DAY", minimum=0
        ),
        tokens_file=(env.get("GRAVITEX_TOKENS_FILE") or "").strip() or None,
        oauth_issuer=(env.get("GRAVITEX_OAUTH_ISSUER") or "").strip() or None,
        storage=_storage(env),
        database_url=_database_url(env.get("GRAVITEX_DATABASE_URL")),
        database_pool=_database_pool(
            env.get("GRAVITEX_DATABASE_POOL_MIN"), env.get("GRAVITEX_DATABASE_POOL_MAX")
        ),
    )


def _whole(value: str | None, name: str, *, minimum: int) -> int | None:
    """A whole-number setting, or None when unset."""
    raw = (value or "").strip()
    if not raw:
        return None
    try:
        number = int(raw)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {raw!r}.")
    return number


def _server_secret(value: str | None) -> str | None:
    secret = (value or "").strip()
    if not secret:
        return None
    if len(secret) < MIN_SERVER_SECRET:
        # The value itself is never echoed, only its length.
        raise ConfigurationError(
            f"GRAVITEX_SERVER_SECRET must be at least {MIN_SERVER_SECRET} characters "
            f"(got {len(secret)}); make one with: python -c "
            '"import secrets; print(secrets.token_hex(32))"'
        )
    return secret


def _database_url(value: str | None) -> str | None:
    url = (value or "").strip()
    if not url:
        return None
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        # Not echoed: the value may hold a password.
        raise ConfigurationError(
            "GRAVITEX_DATABASE_URL must be a PostgreSQL URL: "
            "postgresql://user:password@host:5432/dbname (or unset for the local journal)."
        )
    return url


def _pool_size(name: str, value: str | None, default: int) -> int:
    raw = (value or "").strip() or str(default)
    size = int(raw) if raw.isdigit() else 0
    if not 1 <= size <= MAX_POOL_SIZE:
        raise ConfigurationError(
            f"{name} must be a whole number from 1 to {MAX_POOL_SIZE} (default {default}), "
            f"got {value!r}."
        )
    return size


def _database_pool(low: str | None, high: str | None) -> tuple[int, int]:
    pool = (
        _pool_size("GRAVITEX_DATABASE_POOL_MIN", low, DEFAULT_POOL_MIN),
        _pool_size("GRAVITEX_DATABASE_POOL_MAX", high, DEFAULT_POOL_MAX),
    )
    if pool[0] > pool[1]:
        raise ConfigurationError(
            f"GRAVITEX_DATABASE_POOL_MIN ({pool[0]}) must not exceed "
            f"GRAVITEX_DATABASE_POOL_MAX ({pool[1]})."
        )
    return pool


def _session_idle(value: str | None) -> float:
    raw = (value or "").strip() or f"{DEFAULT_SESSION_IDLE:g}"
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 1 <= seconds <= 7 * 24 * 3600:
        raise ConfigurationError(
            "GRAVITEX_SESSION_IDLE_SECONDS must be a number of seconds from 1 to 604800 "
            f"(default {DEFAULT_SESSION_IDLE:g}), got {value!r}."
        )
    return seconds


def derive_key(secret: str, label: str) -> bytes:
    """A 32-byte key for one purpose (``label``) from ``GRAVITEX_SERVER_SECRET``:
    HMAC-SHA256 keyed by the secret, so every replica with the same secret derives
    the same key and a key for one purpose says nothing about another's."""
    return hmac.new(secret.encode(), f"gravitex-mcp/{label}".encode(), hashlib.sha256).digest()


def _public_url(value: str) -> str:
    url = value.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(
            "GRAVITEX_PUBLIC_URL must be an http(s) base URL such as "
            f"https://videos.example.com, without query or fragment; got {value!r}."
        )
    return url


def _media_switch(value: str | None) -> bool:
    text = (value or "on").strip().lower()
    if text in {"on", "1", "true", "yes"}:
        return True
    if text in {"off", "0", "false", "no"}:
        return False
    raise ConfigurationError(f"GRAVITEX_MEDIA must be on or off, got {value!r}.")


def _storage(env: Mapping[str, str]) -> ObjectStorage | None:
    """The object storage GRAVITEX_STORAGE_URL names, with the standard ``AWS_*``
    variables; None when unset."""
    url = (env.get("GRAVITEX_STORAGE_URL") or "").strip()
    raw_ttl = (env.get("GRAVITEX_MEDIA_TTL_SECONDS") or "").strip() or str(DEFAULT_MEDIA_TTL)
    ttl = int(raw_ttl) if raw_ttl.isdigit() else -1
    if not 60 <= ttl <= 7 * 24 * 3600:  # S3 signs for at most 7 days
        raise ConfigurationError(
            "GRAVITEX_MEDIA_TTL_SECONDS must be whole seconds from 60 to 604800 "
            f"(default {DEFAULT_MEDIA_TTL}), got {raw_ttl!r}."
        )
    if not url:
        return None
    try:
        bucket, prefix = parse_storage_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"GRAVITEX_STORAGE_URL {exc}.") from exc
    endpoint = (env.get("AWS_ENDPOINT_URL") or "").strip() or None
    allow_http = _truthy(env.get("AWS_ALLOW_HTTP"))
    if endpoint is not None and endpoint.startswith("http://") and not allow_http:
        host = urlsplit(endpoint).hostname or ""
        if not is_loopback(host):
            raise ConfigurationError(
                f"AWS_ENDPOINT_URL {endpoint!r} is plain http: the storage credentials and "
                "videos would cross the network unencrypted. Use https, or set "
                "AWS_ALLOW_HTTP=1 if you mean it."
            )
        allow_http = True  # a loopback endpoint (tests, a local gateway)
    return ObjectStorage(
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        region=(env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip() or None,
        access_key_id=(env.get("AWS_ACCESS_KEY_ID") or "").strip() or None,
        secret_access_key=(env.get("AWS_SECRET_ACCESS_KEY") or "").strip() or None,
        allow_http=allow_http,
        media_ttl_seconds=ttl,
        copy_if_not_exists=_copy_if_not_exists(env.get("AWS_COPY_IF_NOT_EXISTS")),
    )


def _copy_if_not_exists(value: str | None) -> str:
    text = (value or "").strip() or DEFAULT_COPY_IF_NOT_EXISTS
    if text == "multipart" or (
        text.startswith(("header:", "header-with-status:")) and text.count(":") >= 2
    ):
        return text
    raise ConfigurationError(
        "AWS_COPY_IF_NOT_EXISTS must be multipart (Amazon S3), header:<name>:<value> "
        f"(e.g. header:If-None-Match:* for SeaweedFS) or header-with-status:..., got {value!r}."
    )
