"""Opening the task journal's SQLite file, sharing it between processes, recovering it.

Design choices:

* **WAL mode + ``busy_timeout``** so several server processes can share one file:
  readers never block the writer, a writer waits for another. Every write is a
  short ``BEGIN IMMEDIATE`` transaction, so a read-then-write never has to upgrade
  its lock (which in WAL mode fails at once instead of waiting).
* **``synchronous=FULL``**: the rows record tasks that cost money and writes are
  rare (one per submit and per status *change*), so surviving power loss wins
  over the milliseconds an fsync costs.
* **One writing connection guarded by a lock**, used from anyio worker threads
  (``check_same_thread=False``); a write that started always finishes (worker calls
  are not abandoned on cancellation). Reads have a connection of their own.
* **A corrupt file** (checked only after an unclean close or a damaged page met
  in use, so a clean start-up does not grow with the journal) is moved aside to
  ``tasks.sqlite3.corrupt-<UTC timestamp>`` with its ``-wal``/``-shm`` files and
  a fresh journal is started. A *busy* or unreadable database is not corruption:
  it raises :class:`JournalError` and is left alone. No ``sqlite3`` error leaves
  this module unwrapped: each becomes a :class:`JournalError` saying what to do.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ..errors import JournalError
from .sqlite_files import is_corruption, move_aside
from .sqlite_schema import migrate
from .tasklock import TaskLock, try_lock_file

logger = logging.getLogger(__name__)

DB_FILENAME = "tasks.sqlite3"
DEFAULT_BUSY_TIMEOUT = 10.0
"""Seconds a writer waits for another process's write transaction."""
DEFAULT_LOCK_TIMEOUT = 10.0
"""Seconds opening waits for another process opening the same state folder."""
LOCK_FILENAME = ".journal-open.lock"
"""Held (flock) while a process opens the journal; holds the holder's pid."""
CHECK_MARKER = f"{DB_FILENAME}-check"
"""Left when a damaged page was met in use: the next open runs the integrity check."""
_LOCK_POLL_SECONDS = 0.05
_OPEN_ADVICE = (
    "If another gravitex-mcp process holds it, stop that process; if the file cannot be "
    "used (a folder in its place, no permission), move it away (a new journal is started) "
    "or set GRAVITEX_STATE_DIR to another folder."
)
_JOURNAL_ADVICE = (
    "Call again in a moment; if it persists, stop other gravitex-mcp processes sharing "
    "the state folder, or set GRAVITEX_STATE_DIR to another folder."
)

#: Reads that run at once, each on a connection of its own (WAL readers never block).
READERS = 4
#: Listings that run at once, besides them (see ``SqliteDatabase._listing_limiter``).
LISTINGS = 1
_T = TypeVar("_T")


class _CorruptDatabaseError(Exception):
    pass


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
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


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
        if not is_corruption(exc):
            raise JournalError(
                f"Cannot open the task journal {path}: {exc}. {_OPEN_ADVICE}"
            ) from exc
        reason = str(exc)
    except (sqlite3.Error, OSError) as exc:
        raise JournalError(f"Cannot open the task journal {path}: {exc}. {_OPEN_ADVICE}") from exc
    try:
        aside = move_aside(path, now())
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


def open_database(
    state_dir: Path, *, now: Callable[[], datetime], busy_timeout: float, lock_timeout: float
) -> tuple[sqlite3.Connection, Path]:
    """Open (or create) ``<state_dir>/tasks.sqlite3``: the connection and the file.

    Creates ``state_dir`` (mode 0700) when missing, migrates the schema, and
    replaces a corrupt file with a new one. Raises :class:`JournalError` when the
    journal cannot be used.
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
        return _open_connection(path, busy_timeout, now), path


class SqliteDatabase:
    """The opened file: one writing connection and a few reading ones, each used by one
    worker thread at a time, every ``sqlite3`` error turned into a :class:`JournalError`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._lock = threading.Lock()
        # Its own thread token: its calls never queue for anyio's default pool behind
        # downloads and video work. One, as ``_lock`` lets one in at a time.
        self._limiter = anyio.CapacityLimiter(1)
        # Reads (get, list) have connections and tokens of their own: with WAL they never
        # wait behind the writes' fsyncs (hundreds while many videos save). Several, so a
        # burst of reads does not queue one loop turn per read behind a single token.
        self._readers: list[sqlite3.Connection] = []  # idle ones
        self._read_lock = threading.Lock()  # guards the list, not a read
        self._read_limiter = anyio.CapacityLimiter(READERS)
        # Listings (list, usage, completions: a person's or an agent's look at the store)
        # have a token of their own, as the shared database's have a lane of its pool:
        # under load the waits' reads hold every reading token, and a listing queued
        # behind a few hundred of them.
        self._listing_limiter = anyio.CapacityLimiter(LISTINGS)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    def _close_connections(self) -> None:
        """Close every connection; call holding ``_lock`` and ``_read_lock``."""
        while self._readers:
            self._readers.pop().close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _locked(self, operation: Callable[[sqlite3.Connection], _T], *, read: bool = False) -> _T:
        if read:
            return self._read(operation)
        with self._lock:
            if self._conn is None:
                raise JournalError(f"The task journal {self._path} is closed.")
            return self._told(operation, self._conn)

    def _read(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._read_lock:
            if self._conn is None:
                raise JournalError(f"The task journal {self._path} is closed.")
            reader = self._readers.pop() if self._readers else None
        try:
            if reader is None:
                reader = self._told(self._open_reader, None)
            return self._told(operation, reader)
        finally:
            if reader is not None:
                with self._read_lock:
                    if self._closed():  # closed meanwhile
                        reader.close()
                    else:
                        self._readers.append(reader)

    def _closed(self) -> bool:
        return self._conn is None

    def _told(self, operation: Callable[[Any], _T], conn: sqlite3.Connection | None) -> _T:
        """``operation(conn)``, its ``sqlite3`` errors told as :class:`JournalError`."""
        try:
            return operation(conn)
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.DatabaseError) and is_corruption(exc):
                # Met in use (clean opens skip the scan): check it at the next start.
                with contextlib.suppress(OSError):
                    self._path.with_name(CHECK_MARKER).touch()
                raise JournalError(
                    f"The task journal {self._path} is damaged ({exc}). Restart the "
                    "server: it moves the damaged file aside and starts a new journal."
                ) from exc
            raise JournalError(f"Task journal {self._path}: {exc}. {_JOURNAL_ADVICE}") from exc

    def _open_reader(self, _: object) -> sqlite3.Connection:
        # Opened when a read finds none idle, in its worker thread.
        conn = sqlite3.connect(
            self._path,
            timeout=DEFAULT_BUSY_TIMEOUT,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # used from worker threads, one at a time
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only = ON")
        return conn

    async def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        return await anyio.to_thread.run_sync(self._locked, operation, limiter=self._limiter)

    async def _run_read(
        self, operation: Callable[[sqlite3.Connection], _T], *, listing: bool = False
    ) -> _T:
        """``operation`` (reads only) on an idle reading connection; a ``listing`` on
        the listings' own token."""
        locked = functools.partial(self._locked, operation, read=True)
        limiter = self._listing_limiter if listing else self._read_limiter
        return await anyio.to_thread.run_sync(locked, limiter=limiter)
