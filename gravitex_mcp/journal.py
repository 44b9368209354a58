"""The task journal: every task this server submits, kept in SQLite.

The journal lives in ``<state_dir>/tasks.sqlite3`` and is what
``list_video_tasks`` and the ``gravitex://tasks/{task_id}`` resource read. A row
is written *before* the submit request goes out (status ``submitting``), so a
task that may have been created (and charged) upstream is never forgotten, even
when the answer is lost or the process dies mid-request.

Design choices:

* **WAL mode + ``busy_timeout``** so several server processes can share one file:
  readers never block the writer, a writer waits for another. Every write is a
  short ``BEGIN IMMEDIATE`` transaction, so a read-then-write never has to upgrade
  its lock (which in WAL mode fails at once instead of waiting).
* **``synchronous=FULL``**: the rows record tasks that cost money and writes are
  rare (one per submit and per status *change*), so surviving power loss wins
  over the milliseconds an fsync costs.
* **One connection per :class:`Journal`, guarded by a lock**, used from anyio
  worker threads (``check_same_thread=False``); a write that started always
  finishes (worker calls are not abandoned on cancellation).
* **Schema versioned with ``PRAGMA user_version``**, one step per version in
  :data:`_MIGRATIONS`, applied in one transaction at :meth:`Journal.open`.
* **A corrupt file** (checked only after an unclean close or a damaged page met
  in use, so a clean start-up does not grow with the journal) is moved aside to
  ``tasks.sqlite3.corrupt-<UTC timestamp>`` with its ``-wal``/``-shm`` files and
  a fresh journal is started. A *busy* or unreadable database is not corruption:
  it raises :class:`JournalError` and is left alone.
* **A submit holds a lease** while its answer is awaited: a claimed idempotency
  key's row comes with an exclusive flock on ``locks/submit-<local id>.lock``,
  taken before the row is committed and let go once the answer is recorded. The
  kernel drops it when the process dies, so a ``submitting`` row whose lock can
  be taken was left by a crash: the key's next claim marks it ``submit_unknown``
  at once rather than waiting on it forever.
* **Only tasks this server submitted are journalled**: for another task id its
  model and arguments are unknown, and a row made of guesses would be worse than
  none. **Terminal states stick** (polls answered out of order do not undo them).
* **No image data and no signatures in the public view**: ``data:`` URLs in the
  arguments are stored as ``sha256:<hex> (<mime>, N bytes)``; the result URL is
  stored whole (downloads need it) but serialised without its query string.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from .domain import TaskStatus
from .errors import InvalidArgumentsError, JournalError, Problem
from .redact import redact_url
from .tasklock import LOCKS_DIRNAME, TaskLock, holder_gone, try_lock_file

__all__ = [
    "DB_FILENAME",
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_LIST_LIMIT",
    "DEFAULT_URL_LIFETIME",
    "MAX_LIST_LIMIT",
    "Journal",
    "JournalError",
    "JournalStatus",
    "KeyClaim",
    "TaskEvent",
    "TaskRecord",
    "data_url_digest",
    "parse_url_expiry",
    "redact_data_urls",
    "redact_url",
    "schema_version",
    "utc_now",
]

logger = logging.getLogger(__name__)

DB_FILENAME = "tasks.sqlite3"
DEFAULT_BUSY_TIMEOUT = 10.0
"""Seconds a writer waits for another process's write transaction."""
DEFAULT_LOCK_TIMEOUT = 10.0
"""Seconds :meth:`Journal.open` waits for another process opening the same state folder."""
LOCK_FILENAME = ".journal-open.lock"
"""Held (flock) while a process opens the journal; holds the holder's pid."""
CHECK_MARKER = f"{DB_FILENAME}-check"
"""Left when a damaged page was met in use: the next open runs the integrity check."""
_LOCK_POLL_SECONDS = 0.05
_STOPPED_MID_SUBMIT = "The server stopped before the submit answered; a task may exist upstream."
_OPEN_ADVICE = (
    "If another gravitex-mcp process holds it, stop that process; if the file cannot be "
    "used (a folder in its place, no permission), move it away (a new journal is started) "
    "or set GRAVITEX_STATE_DIR to another folder."
)
_JOURNAL_ADVICE = (
    "Call again in a moment; if it persists, stop other gravitex-mcp processes sharing "
    "the state folder, or set GRAVITEX_STATE_DIR to another folder."
)
DEFAULT_URL_LIFETIME = timedelta(hours=24)
"""The docs: result URLs are valid for about 24 hours."""
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100

_T = TypeVar("_T")


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class JournalStatus(StrEnum):
    """A journal row's status: the contract's task states plus local ones."""

    SUBMITTING = "submitting"
    """Written before the submit request; the answer has not arrived yet."""
    SUBMIT_UNKNOWN = "submit_unknown"
    """The submit may have reached the API but its answer was lost."""
    SUBMIT_FAILED = "submit_failed"
    """The submit was refused (by the API, or before sending: no key): no task exists."""
    SUBMITTED = TaskStatus.SUBMITTED.value
    """The API accepted the submit and returned a task id."""
    QUEUED = TaskStatus.QUEUED.value
    """The task waits upstream for a free worker."""
    IN_PROGRESS = TaskStatus.IN_PROGRESS.value
    """The video is being made."""
    SUCCEEDED = TaskStatus.SUCCEEDED.value
    """The video is ready (and, once downloaded, saved: see its path)."""
    FAILED = TaskStatus.FAILED.value
    """The task ended without a video; the entry says why."""
    UNKNOWN = TaskStatus.UNKNOWN.value
    """The API answered a status this server does not know."""

    @property
    def is_terminal(self) -> bool:
        """``succeeded`` or ``failed``: nothing more will happen upstream."""
        return self in (JournalStatus.SUCCEEDED, JournalStatus.FAILED)


# --- Public models ------------------------------------------------------------


class TaskEvent(BaseModel):
    """One status change of a task."""

    # Built at first use: start-up and tools/list never need the journal's models.
    model_config = ConfigDict(frozen=True, defer_build=True)

    status: JournalStatus = Field(description="The status the task moved to.")
    at: datetime = Field(description="When the change was seen (UTC).")
    detail: str | None = Field(default=None, description="Why, when known.")


class TaskRecord(BaseModel):
    """One journal entry.

    Serialising it (``model_dump``, ``model_dump_json``, :meth:`public_dict`)
    always redacts ``url`` to ``scheme://host/path``; the attribute itself holds
    the whole signed URL for the download code.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    local_id: str = Field(description="This server's id of the submission (a UUID).")
    task_id: str | None = Field(description="The upstream task id; null until the submit answered.")
    model: str = Field(description="The model id the task was submitted to.")
    family: str = Field(description="The model family (sora, veo, wan, seedance).")
    arguments: dict[str, Any] = Field(
        description="The arguments given, with media data replaced by a sha256 digest."
    )
    status: JournalStatus = Field(description="The last status seen.")
    raw_status: str | None = Field(
        default=None, description="The upstream status string as it was received."
    )
    url: str | None = Field(
        default=None,
        repr=False,  # the signature must not reach a log through repr()
        description="The result URL, shown without its query string (the signature).",
    )
    url_expires_at: datetime | None = Field(
        default=None, description="When the result URL stops working (UTC, estimated)."
    )
    error_code: str | None = Field(default=None, description="The upstream error code.")
    error_message: str | None = Field(default=None, description="Why the task failed.")
    saved_path: str | None = Field(
        default=None, description="Where the video was saved, once downloaded."
    )
    size_bytes: int | None = Field(default=None, description="Size of the saved video.")
    sha256: str | None = Field(default=None, description="SHA-256 of the saved video.")
    saved_identity: str | None = Field(
        default=None,
        exclude=True,  # internal: how a reuse checks the file cheaply (ondisk.FileIdentity)
        repr=False,
        description="The saved file's identity when saved: dev:ino:size:mtime_ns:ctime_ns.",
    )
    created_at: datetime = Field(description="When the submission began (UTC).")
    updated_at: datetime = Field(description="When anything in this entry last changed (UTC).")
    checked_at: datetime | None = Field(
        default=None,
        description="When a changed status was last recorded from the API (UTC); "
        "polls that change nothing are not written.",
    )
    downloaded_at: datetime | None = Field(
        default=None, description="When the video was saved (UTC)."
    )
    events: list[TaskEvent] = Field(
        default_factory=list,
        description="Status history, oldest first (filled for a single task only).",
    )

    @field_serializer("url")
    def _serialize_url(self, value: str | None) -> str | None:
        return None if value is None else redact_url(value)

    def public_dict(self) -> dict[str, Any]:
        """The JSON-able view for the tasks resource and ``list_video_tasks``."""
        return self.model_dump(mode="json")


# --- Helpers (pure) -----------------------------------------------------------


_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z


def _as_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        return None
    seconds = int(value)
    return seconds if seconds <= _MAX_EPOCH else None


def parse_url_expiry(url: str, *, seen_at: datetime) -> datetime:
    """When a signed result URL expires.

    Understood: ``Expires=<unix time>`` (Alibaba OSS, CloudFront);
    ``X-Tos-Expires``/``X-Amz-Expires``/``X-Goog-Expires`` seconds counted from
    the matching ``-Date`` (``YYYYMMDDTHHMMSSZ``), or from ``seen_at`` without
    one. Anything else: ``seen_at`` + 24 h, the lifetime the docs give.
    """
    seen_at = _utc(seen_at)
    try:
        query = urlsplit(url).query
    except ValueError:
        query = ""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(key.lower(), value)
    epoch = _as_seconds(params.get("expires"))
    if epoch is not None:
        return datetime.fromtimestamp(epoch, UTC)
    for vendor in ("x-tos", "x-amz", "x-goog"):
        lifetime = _as_seconds(params.get(f"{vendor}-expires"))
        if lifetime is None:
            continue
        start = seen_at
        raw_date = params.get(f"{vendor}-date")
        if raw_date:
            try:
                start = datetime.strptime(raw_date.strip(), _AMZ_DATE).replace(tzinfo=UTC)
            except ValueError:
                start = seen_at
        try:
            return start + timedelta(seconds=lifetime)
        except OverflowError:
            break
    return seen_at + DEFAULT_URL_LIFETIME


_MIME_PART = r"[A-Za-z0-9!#$&^_.+-]+"
_DATA_URL = re.compile(
    rf"\s*data:(?P<mime>{_MIME_PART}/{_MIME_PART})?(?P<params>(?:;[^,;]*)*),(?P<payload>.*)",
    re.IGNORECASE | re.DOTALL,
)
_EMBEDDED_BASE64_DATA_URL = re.compile(
    rf"data:(?:{_MIME_PART}/{_MIME_PART})?(?:;[A-Za-z0-9._=+-]+)*;base64,[A-Za-z0-9+/_=-]+",
    re.IGNORECASE,
)


def _digest(data: bytes, mime: str, note: str = "") -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()} ({mime}, {len(data)} bytes{note})"


def data_url_digest(value: str) -> str | None:
    """``sha256:<hex> (<mime>, N bytes)`` of a data URL's decoded bytes.

    ``None`` when ``value`` is not a data URL. A payload that claims base64
    but is not valid base64 is hashed as it stands and marked so.
    """
    match = _DATA_URL.fullmatch(value)
    if match is None:
        return None
    mime = (match["mime"] or "text/plain").lower()
    params = [p.strip().lower() for p in match["params"].split(";") if p.strip()]
    payload = match["payload"]
    if "base64" in params:
        compact = re.sub(r"\s+", "", payload)
        if "-" in compact or "_" in compact:  # the URL-safe alphabet
            compact = compact.translate(str.maketrans("-_", "+/"))
        try:
            return _digest(base64.b64decode(compact.encode("ascii"), validate=True), mime)
        except (binascii.Error, ValueError):
            pass
        return _digest(payload.encode("utf-8", "surrogatepass"), mime, ", not valid base64")
    return _digest(unquote_to_bytes(payload), mime)


def _redact_text(text: str) -> str:
    whole = data_url_digest(text)
    if whole is not None:
        return whole

    def _one(match: re.Match[str]) -> str:
        return data_url_digest(match[0]) or match[0]

    return _EMBEDDED_BASE64_DATA_URL.sub(_one, text)


def redact_data_urls(value: Any) -> Any:
    """A JSON-able copy of ``value`` with every ``data:`` URL replaced by its digest.

    Walks mappings, lists, tuples and sets at any depth. Raw bytes become a
    digest too; other objects their ``str()``.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Enum):
        return redact_data_urls(value.value)
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _digest(bytes(value), "application/octet-stream")
    if isinstance(value, BaseModel):
        return redact_data_urls(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): redact_data_urls(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_data_urls(v) for v in value]
    return _redact_text(str(value))


def _encode_arguments(arguments: Mapping[str, Any]) -> str:
    return json.dumps(redact_data_urls(arguments), ensure_ascii=False, separators=(",", ":"))


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so text order is time order."""
    return _utc(moment).isoformat(timespec="microseconds")


# --- Schema -------------------------------------------------------------------


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE tasks (
            seq            INTEGER PRIMARY KEY AUTOINCREMENT,
            local_id       TEXT    NOT NULL UNIQUE,
            task_id        TEXT    UNIQUE,
            model          TEXT    NOT NULL,
            family         TEXT    NOT NULL,
            arguments      TEXT    NOT NULL,
            status         TEXT    NOT NULL,
            raw_status     TEXT,
            url            TEXT,
            url_expires_at TEXT,
            error_code     TEXT,
            error_message  TEXT,
            saved_path     TEXT,
            size_bytes     INTEGER,
            sha256         TEXT,
            created_at     TEXT    NOT NULL,
            updated_at     TEXT    NOT NULL,
            checked_at     TEXT,
            downloaded_at  TEXT
        )
        """
    )
    conn.execute("CREATE INDEX tasks_by_created ON tasks (created_at, seq)")
    conn.execute("CREATE INDEX tasks_by_status ON tasks (status, created_at, seq)")
    conn.execute(
        """
        CREATE TABLE task_events (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            local_id TEXT NOT NULL REFERENCES tasks (local_id) ON DELETE CASCADE,
            status   TEXT NOT NULL,
            at       TEXT NOT NULL,
            detail   TEXT
        )
        """
    )
    conn.execute("CREATE INDEX task_events_by_task ON task_events (local_id, id)")


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    # Never paying twice: which arguments a row was submitted with (a digest, to spot
    # repeats), and the idempotency keys, each claimed by exactly one submission.
    conn.execute("ALTER TABLE tasks ADD COLUMN arguments_hash TEXT")
    conn.execute("CREATE INDEX tasks_by_arguments ON tasks (arguments_hash, created_at)")
    conn.execute(
        """
        CREATE TABLE idempotency_keys (
            key            TEXT PRIMARY KEY,
            arguments_hash TEXT NOT NULL,
            local_id       TEXT NOT NULL REFERENCES tasks (local_id) ON DELETE CASCADE,
            created_at     TEXT NOT NULL
        )
        """
    )


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    # What is on disk is checked, not trusted: the saved file's identity (device, inode,
    # size, mtime, ctime) lets a reuse skip hashing it again while it is untouched.
    # Rows saved before have none: their files are hashed once when next reused.
    conn.execute("ALTER TABLE tasks ADD COLUMN saved_identity TEXT")


_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_0_to_1,
    _migrate_1_to_2,
    _migrate_2_to_3,
]
"""``_MIGRATIONS[n]`` takes a database from ``user_version`` n to n + 1.

To change the schema, append a step; never edit a released one.
"""


def schema_version() -> int:
    """The ``user_version`` this code writes."""
    return len(_MIGRATIONS)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, begin: str) -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _write(conn: sqlite3.Connection) -> contextlib.AbstractContextManager[None]:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a
    # read inside the transaction never needs a lock upgrade.
    return _transaction(conn, "BEGIN IMMEDIATE")


def _read(conn: sqlite3.Connection) -> contextlib.AbstractContextManager[None]:
    return _transaction(conn, "BEGIN")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    target = schema_version()
    with _write(conn):
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > target:
            raise JournalError(
                f"The task journal {path} has schema version {version}, newer than this "
                f"gravitex-mcp understands ({target}): upgrade gravitex-mcp, or point "
                "GRAVITEX_STATE_DIR at another directory."
            )
        for step in range(version, target):
            _MIGRATIONS[step](conn)
        if version != target:
            conn.execute(f"PRAGMA user_version = {int(target)}")


# --- Opening ------------------------------------------------------------------


class _CorruptDatabaseError(Exception):
    pass


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def _ensure_state_dir(state_dir: Path) -> None:
    if state_dir.is_dir():
        return
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask; say exactly what we mean.
    os.chmod(state_dir, 0o700)


@contextlib.contextmanager
def _open_lock(
    state_dir: Path, timeout: float, sleep: Callable[[float], None] = time.sleep
) -> Iterator[None]:
    """Serialise the check-and-recover step between processes (POSIX only).

    Without it, a process that found the file corrupt could move aside the
    fresh journal another process had just created in its place. A holder that
    does not let go within ``timeout`` seconds (stuck, or stopped in a debugger)
    ends start-up with a :class:`JournalError` naming the folder and its pid,
    rather than a silent hang.
    """
    deadline = time.monotonic() + timeout
    logged = False
    while True:
        try:
            held = try_lock_file(state_dir / LOCK_FILENAME)
        except OSError:
            held = TaskLock(None)  # no lock file or no flock here: go on unlocked
        if isinstance(held, TaskLock):
            break
        holder = f"pid {held}" if held else "pid unknown"
        if time.monotonic() >= deadline:
            raise JournalError(
                f"The state folder {state_dir} is locked by another gravitex-mcp process "
                f"({holder}) that has been opening the task journal for over {timeout:g} s. "
                "Stop that process, or set GRAVITEX_STATE_DIR to another folder."
            )
        if not logged:
            logger.warning(
                "state folder %s is locked by another process (%s); waiting up to %g s for it",
                state_dir,
                holder,
                timeout,
            )
            logged = True
        sleep(min(_LOCK_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    try:
        yield
    finally:
        held.release()


def _connect(path: Path, busy_timeout: float, *, check: bool) -> sqlite3.Connection:
    # Create the file ourselves so it is private to the user (-wal/-shm inherit it).
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,  # used from worker threads, one at a time (lock)
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        if mode != "wal":
            logger.warning(
                "task journal %s: WAL mode unavailable (journal_mode=%s); "
                "sharing it between processes will be slower",
                path,
                mode,
            )
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if check:
            verdict = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
            if verdict != ["ok"]:
                raise _CorruptDatabaseError(
                    "; ".join(verdict[:3]) or "quick_check returned nothing"
                )
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


_SIDE_FILES = ("-wal", "-shm", "-journal")


def _move_aside(path: Path, at: datetime) -> Path:
    base = f"{path.name}.corrupt-{_utc(at).strftime('%Y%m%dT%H%M%SZ')}"
    aside = path.with_name(base)
    counter = 0
    while any(Path(f"{aside}{s}").exists() for s in ("", *_SIDE_FILES)):
        counter += 1
        aside = path.with_name(f"{base}.{counter}")
    for suffix in ("", *_SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
    return aside


def _open_connection(
    path: Path, busy_timeout: float, now: Callable[[], datetime]
) -> sqlite3.Connection:
    reason: str
    # The integrity check reads the whole file: run it only when the last user did
    # not close the journal cleanly (SQLite removes the -wal file on a clean close;
    # it is also there while another process has it open) or a damaged page was met
    # in use. A clean open stays O(1) however many tasks the journal holds.
    marker = path.with_name(CHECK_MARKER)
    check = Path(f"{path}-wal").exists() or marker.exists()
    try:
        conn = _connect(path, busy_timeout, check=check)
        with contextlib.suppress(OSError):
            marker.unlink(missing_ok=True)
        return conn
    except _CorruptDatabaseError as exc:
        reason = str(exc)
    except sqlite3.DatabaseError as exc:
        if not _is_corruption(exc):
            raise JournalError(
                f"Cannot open the task journal {path}: {exc}. {_OPEN_ADVICE}"
            ) from exc
        reason = str(exc)
    except (sqlite3.Error, OSError) as exc:
        raise JournalError(f"Cannot open the task journal {path}: {exc}. {_OPEN_ADVICE}") from exc
    try:
        aside = _move_aside(path, now())
    except OSError as exc:
        raise JournalError(
            f"The task journal {path} is corrupt ({reason}) and could not be moved aside: {exc}"
        ) from exc
    logger.warning(
        "task journal %s was corrupt (%s); moved it aside to %s and started a new one",
        path,
        reason,
        aside,
    )
    with contextlib.suppress(OSError):
        marker.unlink(missing_ok=True)
    try:
        return _connect(path, busy_timeout, check=False)
    except (_CorruptDatabaseError, sqlite3.Error, OSError) as exc:
        raise JournalError(f"Cannot start a new task journal at {path}: {exc}") from exc


# --- The journal --------------------------------------------------------------


_FIND_BY_TASK_ID = "SELECT * FROM tasks WHERE task_id = ?"
_FIND_BY_LOCAL_ID = "SELECT * FROM tasks WHERE local_id = ?"
_LIST_ALL = "SELECT * FROM tasks ORDER BY created_at DESC, seq DESC LIMIT ?"
_LIST_BY_STATUS = "SELECT * FROM tasks WHERE status = ? ORDER BY created_at DESC, seq DESC LIMIT ?"


def _find(conn: sqlite3.Connection, key: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(_FIND_BY_TASK_ID, (key,)).fetchone()
    if row is None:
        row = conn.execute(_FIND_BY_LOCAL_ID, (key,)).fetchone()
    return row


def _add_event(
    conn: sqlite3.Connection,
    local_id: str,
    status: JournalStatus,
    at: str,
    detail: str | None,
) -> None:
    conn.execute(
        "INSERT INTO task_events (local_id, status, at, detail) VALUES (?, ?, ?, ?)",
        (local_id, status.value, at, detail),
    )


def _record(row: sqlite3.Row, events: Sequence[TaskEvent] = ()) -> TaskRecord:
    # Every field but the events is a column of its name; pydantic parses the timestamps.
    fields = {k: row[k] for k in TaskRecord.model_fields if k != "events"}
    fields["arguments"] = json.loads(row["arguments"])
    return TaskRecord.model_validate({**fields, "events": list(events)})


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """What :meth:`Journal.claim_key` found: a new claim, or the key's holder."""

    local_id: str | None
    """The new submission's local id when the key was claimed; else ``None``."""
    holder: TaskRecord | None
    """The submission already holding the key (when not claimed)."""
    arguments_hash: str
    """The digest of the arguments the key is bound to."""


def _insert_submission(
    conn: sqlite3.Connection,
    local_id: str,
    model: str,
    family: str,
    encoded: str,
    arguments_hash: str | None,
    at: str,
) -> None:
    conn.execute(
        "INSERT INTO tasks (local_id, model, family, arguments, arguments_hash, status, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            local_id,
            str(model),
            str(family),
            encoded,
            arguments_hash,
            JournalStatus.SUBMITTING.value,
            at,
            at,
        ),
    )
    _add_event(conn, local_id, JournalStatus.SUBMITTING, at, None)


def _mark_unknown(conn: sqlite3.Connection, local_id: str, at: str, detail: str) -> None:
    conn.execute(
        "UPDATE tasks SET status = ?, error_message = ?, updated_at = ? WHERE local_id = ?",
        (JournalStatus.SUBMIT_UNKNOWN.value, detail, at, local_id),
    )
    _add_event(conn, local_id, JournalStatus.SUBMIT_UNKNOWN, at, detail)


def _observed(row: sqlite3.Row) -> tuple[str | None, ...]:
    """What a status query may change in a row (see :meth:`Journal.record_status`)."""
    return tuple(row[k] for k in ("status", "raw_status", "url", "error_code", "error_message"))


def _clean_text(text: str | None) -> str | None:
    return None if text is None else _redact_text(text)


class Journal:
    """The task journal. Build it with :meth:`open`; share one per process."""

    def __init__(self, conn: sqlite3.Connection, path: Path, now: Callable[[], datetime]) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._now = now
        self._lock = threading.Lock()
        self._leases: dict[str, TaskLock] = {}  # local id -> its submit's lease (see module)
        # The journal's own thread token: its calls never queue for anyio's default
        # pool behind downloads and video work. One, as ``_lock`` lets one in at a time.
        self._limiter = anyio.CapacityLimiter(1)
        # Reads (get, list) have a connection, lock and token of their own: with WAL
        # they never wait behind the writes' fsyncs (hundreds while many videos save).
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._read_limiter = anyio.CapacityLimiter(1)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        now: Callable[[], datetime] = utc_now,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> Journal:
        """Open (or create) ``<state_dir>/tasks.sqlite3``; call once at start-up.

        Creates ``state_dir`` (mode 0700) when missing, migrates the schema,
        and replaces a corrupt file with a new one (see the module notes).
        Raises :class:`JournalError` when the journal cannot be used.
        """
        state_dir = Path(state_dir)
        try:
            _ensure_state_dir(state_dir)
        except OSError as exc:
            raise JournalError(
                f"Cannot create the state directory {state_dir} for the task journal: {exc}. "
                "Set GRAVITEX_STATE_DIR to a writable directory."
            ) from exc
        path = state_dir / DB_FILENAME
        with _open_lock(state_dir, lock_timeout):
            conn = _open_connection(path, busy_timeout, now)
        return cls(conn, path, now)

    def close(self) -> None:
        """Close the connection; idempotent. Later calls raise :class:`JournalError`."""
        with self._lock, self._read_lock:
            for local_id in builtins.list(self._leases):
                self._end_lease(local_id)
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- plumbing

    def _stamp(self) -> str:
        return _iso(self._now())

    def _locked(self, operation: Callable[[sqlite3.Connection], _T], *, read: bool = False) -> _T:
        with self._read_lock if read else self._lock:
            if self._conn is None:
                raise JournalError(f"The task journal {self._path} is closed.")
            try:
                return operation(self._read_connection() if read else self._conn)
            except sqlite3.Error as exc:
                if isinstance(exc, sqlite3.DatabaseError) and _is_corruption(exc):
                    # Met in use (clean opens skip the scan): check it at the next start.
                    with contextlib.suppress(OSError):
                        self._path.with_name(CHECK_MARKER).touch()
                    raise JournalError(
                        f"The task journal {self._path} is damaged ({exc}). Restart the "
                        "server: it moves the damaged file aside and starts a new journal."
                    ) from exc
                raise JournalError(f"Task journal {self._path}: {exc}. {_JOURNAL_ADVICE}") from exc

    def _read_connection(self) -> sqlite3.Connection:
        # Opened at the first read, in its worker thread (holding _read_lock).
        if self._reader is None:
            conn = sqlite3.connect(
                self._path,
                timeout=DEFAULT_BUSY_TIMEOUT,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # used from worker threads, one at a time
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            self._reader = conn
        return self._reader

    async def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._locked, operation, limiter=self._limiter)

    async def _run_read(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """``operation`` (reads only) on the reading connection."""
        locked = functools.partial(self._locked, operation, read=True)
        return await anyio.to_thread.run_sync(locked, limiter=self._read_limiter)

    # Leases (see the module notes); called under ``self._lock``.

    def _lease_path(self, local_id: str) -> Path:
        return self._path.parent / LOCKS_DIRNAME / f"submit-{local_id}.lock"

    def _take_lease(self, local_id: str) -> None:
        path = self._lease_path(local_id)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            held = try_lock_file(path)
        except OSError as exc:
            raise JournalError(
                f"Cannot create the submit lock {path}: {exc}. Nothing was sent; make the "
                "state folder writable (GRAVITEX_STATE_DIR)."
            ) from exc
        if not isinstance(held, TaskLock):  # a fresh UUID: nobody else can hold it
            raise JournalError(f"The submit lock {path} is held by pid {held}; nothing was sent.")
        self._leases[local_id] = held

    def _end_lease(self, local_id: str) -> None:
        held = self._leases.pop(local_id, None)
        if held is not None:
            # Removed while still held, so a waiter that finds it can never take it
            # from a live holder.
            with contextlib.suppress(OSError):
                self._lease_path(local_id).unlink()
            held.release()

    def _holder_gone(self, local_id: str) -> bool:
        return local_id not in self._leases and holder_gone(self._lease_path(local_id))

    # --- submissions

    async def begin_submission(
        self,
        *,
        model: str,
        family: str,
        arguments: Mapping[str, Any],
        arguments_hash: str | None = None,
    ) -> str:
        """Record a submission about to be sent; returns its local id.

        Call it *before* the POST. Any ``data:`` URL left in ``arguments`` is
        replaced by its digest. ``arguments_hash`` (a digest of the checked
        arguments) lets :meth:`recent_with_arguments` find repeats.
        """
        encoded = await anyio.to_thread.run_sync(_encode_arguments, dict(arguments))
        local_id = str(uuid.uuid4())

        def operation(conn: sqlite3.Connection) -> str:
            with _write(conn):
                _insert_submission(
                    conn, local_id, model, family, encoded, arguments_hash, self._stamp()
                )
            return local_id

        return await self._run(operation)

    async def claim_key(
        self,
        key: str,
        *,
        arguments_hash: str,
        model: str,
        family: str,
        arguments: Mapping[str, Any],
    ) -> KeyClaim:
        """Claim idempotency ``key`` for a new submission, or find who holds it.

        In one write transaction (so two processes sharing the state dir cannot
        both win): when ``key`` is free, or its submission was refused by the API
        (``submit_failed``: no task exists, so a retry may submit, even with
        other arguments), a new
        ``submitting`` row is written and claimed, with its lease held until
        :meth:`complete_submission` or :meth:`fail_submission`; ``KeyClaim.local_id``
        is set. Otherwise ``KeyClaim.holder`` is the submission holding the key,
        with ``KeyClaim.arguments_hash`` its arguments' digest; a holder still
        ``submitting`` whose process is gone is first marked ``submit_unknown``.
        """
        encoded = await anyio.to_thread.run_sync(_encode_arguments, dict(arguments))
        local_id = str(uuid.uuid4())

        find = (
            "SELECT k.arguments_hash AS key_hash, t.* FROM idempotency_keys k "
            "JOIN tasks t ON t.local_id = k.local_id WHERE k.key = ?"
        )

        def operation(conn: sqlite3.Connection) -> KeyClaim:
            at = self._stamp()
            try:
                with _write(conn):
                    held = conn.execute(find, (key,)).fetchone()
                    if (
                        held is not None
                        and held["status"] == JournalStatus.SUBMITTING.value
                        and self._holder_gone(held["local_id"])
                    ):
                        _mark_unknown(conn, held["local_id"], at, _STOPPED_MID_SUBMIT)
                        held = conn.execute(find, (key,)).fetchone()
                    if held is not None and held["status"] != JournalStatus.SUBMIT_FAILED.value:
                        return KeyClaim(
                            local_id=None, holder=_record(held), arguments_hash=held["key_hash"]
                        )
                    # Held before the row is visible: whoever sees the row finds it held.
                    self._take_lease(local_id)
                    _insert_submission(conn, local_id, model, family, encoded, arguments_hash, at)
                    conn.execute(
                        "INSERT INTO idempotency_keys (key, arguments_hash, local_id, "
                        "created_at) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                        "arguments_hash = excluded.arguments_hash, "
                        "local_id = excluded.local_id, created_at = excluded.created_at",
                        (key, arguments_hash, local_id, at),
                    )
            except BaseException:
                self._end_lease(local_id)  # the row was not written
                raise
            return KeyClaim(local_id=local_id, holder=None, arguments_hash=arguments_hash)

        return await self._run(operation)

    async def recent_with_arguments(
        self, arguments_hash: str, *, within: timedelta
    ) -> builtins.list[TaskRecord]:
        """Submissions with these arguments created in the last ``within``, newest first."""
        cutoff = _iso(self._now() - within)

        def operation(conn: sqlite3.Connection) -> builtins.list[TaskRecord]:
            rows = conn.execute(
                "SELECT * FROM tasks WHERE arguments_hash = ? AND created_at >= ? "
                "ORDER BY created_at DESC, seq DESC LIMIT 5",
                (arguments_hash, cutoff),
            ).fetchall()
            return [_record(row) for row in rows]

        return await self._run(operation)

    async def complete_submission(
        self, local_id: str, *, task_id: str, status: TaskStatus | JournalStatus
    ) -> TaskRecord:
        """The submit answered with ``task_id``: attach it and record ``status``.

        Also accepted after :meth:`fail_submission` (a late answer). Raises
        :class:`JournalError` for an unknown ``local_id`` or a ``task_id``
        already attached to another submission.
        """
        new_status = JournalStatus(status)

        def operation(conn: sqlite3.Connection) -> TaskRecord:
            try:
                return answered(conn)
            finally:
                self._end_lease(local_id)  # the submit is over, recorded or not

        def answered(conn: sqlite3.Connection) -> TaskRecord:
            at = self._stamp()
            with _write(conn):
                row = conn.execute(_FIND_BY_LOCAL_ID, (local_id,)).fetchone()
                if row is None:
                    raise JournalError(f"No submission {local_id!r} in the task journal.")
                if row["task_id"] not in (None, task_id):
                    raise JournalError(
                        f"Submission {local_id!r} already has task id {row['task_id']!r}."
                    )
                other = conn.execute(
                    "SELECT local_id FROM tasks WHERE task_id = ? AND local_id <> ?",
                    (task_id, local_id),
                ).fetchone()
                if other is not None:
                    raise JournalError(
                        f"Task id {task_id!r} is already recorded for submission "
                        f"{other['local_id']!r}."
                    )
                conn.execute(
                    "UPDATE tasks SET task_id = ?, status = ?, updated_at = ? WHERE local_id = ?",
                    (task_id, new_status.value, at, local_id),
                )
                if new_status.value != row["status"]:
                    _add_event(conn, local_id, new_status, at, f"task id {task_id}")
                updated = conn.execute(_FIND_BY_LOCAL_ID, (local_id,)).fetchone()
            return _record(updated)

        return await self._run(operation)

    async def fail_submission(self, local_id: str, *, message: str, outcome_unknown: bool) -> None:
        """The submit did not give a task id.

        ``outcome_unknown=True``: the request may have created a task (status
        ``submit_unknown``); otherwise the API refused it (``submit_failed``).
        Raises :class:`JournalError` for an unknown ``local_id``.
        """
        new_status = (
            JournalStatus.SUBMIT_UNKNOWN if outcome_unknown else JournalStatus.SUBMIT_FAILED
        )
        detail = _clean_text(message)

        def operation(conn: sqlite3.Connection) -> None:
            try:
                failed(conn)
            finally:
                self._end_lease(local_id)  # the submit is over, recorded or not

        def failed(conn: sqlite3.Connection) -> None:
            at = self._stamp()
            with _write(conn):
                row = conn.execute(
                    "SELECT status FROM tasks WHERE local_id = ?", (local_id,)
                ).fetchone()
                if row is None:
                    raise JournalError(f"No submission {local_id!r} in the task journal.")
                conn.execute(
                    "UPDATE tasks SET status = ?, error_message = ?, updated_at = ? "
                    "WHERE local_id = ?",
                    (new_status.value, detail, at, local_id),
                )
                if new_status.value != row["status"]:
                    _add_event(conn, local_id, new_status, at, detail)

        await self._run(operation)

    async def expire_stale_submissions(self, *, older_than: timedelta) -> int:
        """Mark submissions still ``submitting`` after ``older_than`` as ``submit_unknown``.

        Such rows are left by a process that stopped while its POST was in flight;
        the request may have created a task, which ``list_video_tasks`` should say.
        Returns how many rows were marked.
        """
        cutoff = _iso(self._now() - older_than)
        detail = _STOPPED_MID_SUBMIT

        def operation(conn: sqlite3.Connection) -> int:
            at = self._stamp()
            with _write(conn):
                rows = conn.execute(
                    "SELECT local_id FROM tasks WHERE status = ? AND created_at < ?",
                    (JournalStatus.SUBMITTING.value, cutoff),
                ).fetchall()
                for row in rows:
                    _mark_unknown(conn, row["local_id"], at, detail)
            return len(rows)

        return await self._run(operation)

    # --- observations

    async def record_status(
        self,
        task_id: str,
        *,
        status: TaskStatus | JournalStatus,
        raw_status: str | None = None,
        url: str | None = None,
        error_code: str | int | None = None,
        error_message: str | None = None,
    ) -> TaskRecord | None:
        """Record what a query of ``task_id`` (upstream id, or local id) showed.

        A history event is appended only when the status changes; a terminal
        status is never replaced by a non-terminal one. A new ``url`` gets its
        expiry computed (see :func:`parse_url_expiry`). Returns the updated
        entry (without events), or ``None`` - writing nothing - when the journal
        does not know the task.
        """
        seen = JournalStatus(status)
        code = None if error_code is None else str(error_code)
        message = _clean_text(error_message)

        def merged(row: sqlite3.Row) -> tuple[str | None, ...]:
            """:func:`_observed` of the row after this observation (a terminal status
            is not replaced by a non-terminal one)."""
            regression = JournalStatus(row["status"]).is_terminal and not seen.is_terminal
            return (
                row["status"] if regression else seen.value,
                row["raw_status"] if regression or raw_status is None else raw_status,
                row["url"] if url is None else url,
                row["error_code"] if code is None else code,
                row["error_message"] if message is None else message,
            )

        def operation(conn: sqlite3.Connection) -> TaskRecord | None:
            now = _utc(self._now())
            at = _iso(now)
            # A poll that changes nothing writes nothing (no lock, no fsync): most
            # polls of a long task see the same status.
            with _read(conn):
                row = _find(conn, task_id)
            if row is not None and merged(row) == _observed(row):
                return _record(row)
            with _write(conn):
                row = _find(conn, task_id)
                if row is None:
                    logger.debug("record_status: task %s is not in the journal", task_id)
                    return None
                new = merged(row)
                new_status, _, _, new_code, new_message = new
                expires = row["url_expires_at"]
                if url is not None and url != row["url"]:
                    expires = _iso(parse_url_expiry(url, seen_at=now))
                updated_at = at if new != _observed(row) else row["updated_at"]
                conn.execute(
                    "UPDATE tasks SET status = ?, raw_status = ?, url = ?, error_code = ?, "
                    "error_message = ?, url_expires_at = ?, checked_at = ?, updated_at = ? "
                    "WHERE local_id = ?",
                    (*new, expires, at, updated_at, row["local_id"]),
                )
                if new_status != row["status"]:  # not a regression: the status seen
                    detail = _event_detail(
                        seen, seen_raw=raw_status, code=new_code, message=new_message
                    )
                    _add_event(conn, row["local_id"], seen, at, detail)
                updated = conn.execute(_FIND_BY_LOCAL_ID, (row["local_id"],)).fetchone()
            return _record(updated)

        return await self._run(operation)

    async def record_download(
        self,
        task_id: str,
        *,
        path: Path,
        size_bytes: int,
        sha256: str,
        identity: str | None = None,
    ) -> None:
        """Record where the video of ``task_id`` (upstream or local id) was saved, and
        the file's identity then (see :class:`~gravitex_mcp.ondisk.FileIdentity`).

        Does nothing for a task the journal does not know.
        """
        saved = str(path)

        def operation(conn: sqlite3.Connection) -> None:
            at = self._stamp()
            with _write(conn):
                row = _find(conn, task_id)
                if row is None:
                    logger.debug("record_download: task %s is not in the journal", task_id)
                    return
                conn.execute(
                    "UPDATE tasks SET saved_path = ?, size_bytes = ?, sha256 = ?, "
                    "saved_identity = ?, downloaded_at = ?, updated_at = ? WHERE local_id = ?",
                    (saved, int(size_bytes), sha256, identity, at, at, row["local_id"]),
                )

        await self._run(operation)

    async def record_identity(self, task_id: str, *, path: Path, identity: str) -> None:
        """Record the identity the saved file at ``path`` now has (its bytes were
        checked to be the ones saved); nothing when the entry names another file."""

        def operation(conn: sqlite3.Connection) -> None:
            with _write(conn):
                row = _find(conn, task_id)
                if row is None or row["saved_path"] != str(path):
                    return
                conn.execute(
                    "UPDATE tasks SET saved_identity = ? WHERE local_id = ?",
                    (identity, row["local_id"]),
                )

        await self._run(operation)

    # --- reading

    async def get(self, task_id: str) -> TaskRecord | None:
        """One entry with its status history, by upstream task id or local id."""

        def operation(conn: sqlite3.Connection) -> TaskRecord | None:
            with _read(conn):
                row = _find(conn, task_id)
                if row is None:
                    return None
                events = [
                    TaskEvent.model_validate(dict(e))
                    for e in conn.execute(
                        "SELECT status, at, detail FROM task_events WHERE local_id = ? ORDER BY id",
                        (row["local_id"],),
                    )
                ]
            return _record(row, events)

        return await self._run_read(operation)

    async def list(
        self, *, limit: int = DEFAULT_LIST_LIMIT, status: str | None = None
    ) -> builtins.list[TaskRecord]:
        """The newest entries first (by creation), optionally of one status.

        Raises :class:`InvalidArgumentsError` for a ``limit`` outside
        1..:data:`MAX_LIST_LIMIT` or an unknown ``status``.
        """
        problems: builtins.list[Problem] = []
        if isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
            problems.append(
                Problem("limit", f"must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}")
            )
        wanted: JournalStatus | None = None
        if status is not None:
            try:
                wanted = JournalStatus(status)
            except ValueError:
                valid = ", ".join(s.value for s in JournalStatus)
                problems.append(Problem("status", f"must be one of {valid}, got {status!r}"))
        if problems:
            raise InvalidArgumentsError(problems)

        def operation(conn: sqlite3.Connection) -> builtins.list[TaskRecord]:
            if wanted is None:
                rows = conn.execute(_LIST_ALL, (limit,)).fetchall()
            else:
                rows = conn.execute(_LIST_BY_STATUS, (wanted.value, limit)).fetchall()
            return [_record(row) for row in rows]

        return await self._run_read(operation)

    async def task_ids_starting_with(
        self, prefix: str, *, limit: int
    ) -> tuple[builtins.list[str], int]:
        """Upstream task ids starting with ``prefix`` (case-sensitive), newest first:
        at most ``limit`` of them, and how many match in all."""
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no stored id can start with it
            return [], 0
        # substr, not LIKE: LIKE folds ASCII case and treats % and _ as wildcards.
        matching = "FROM tasks WHERE task_id IS NOT NULL AND substr(task_id, 1, ?) = ?"
        params = (len(prefix), prefix)

        def operation(conn: sqlite3.Connection) -> tuple[builtins.list[str], int]:
            with _read(conn):  # one snapshot: the count agrees with the values
                total = int(conn.execute(f"SELECT count(*) {matching}", params).fetchone()[0])
                rows = conn.execute(
                    f"SELECT task_id {matching} ORDER BY created_at DESC, seq DESC LIMIT ?",
                    (*params, limit),
                ).fetchall()
            return [str(row["task_id"]) for row in rows], total

        return await self._run(operation)


def _event_detail(
    status: JournalStatus, *, seen_raw: str | None, code: str | None, message: str | None
) -> str | None:
    if status is JournalStatus.FAILED and (code or message):
        return f"{code}: {message}" if code and message else (message or code)
    if seen_raw is not None and seen_raw != status.value:
        return f"upstream status {seen_raw!r}"
    return None
