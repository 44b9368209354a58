"""The task journal: every task this server submits, kept in SQLite.

The journal lives in ``<state_dir>/tasks.sqlite3`` and is what
``list_video_tasks`` and the ``gravitex://tasks/{task_id}`` resource read. A row
is written *before* the submit request goes out (status ``submitting``), so a
task that may have been created (and charged) upstream is never forgotten, even
when the answer is lost or the process dies mid-request.

The SQLite file itself (sharing, recovery) is :mod:`.sqlite_open`'s, its schema
:mod:`.sqlite_schema`'s, and what it hands out :mod:`.records`'.

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

import builtins
import logging
import sqlite3
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread

from ..domain import LOCAL_USER, JournalStatus, TaskStatus, as_utc, utc_now
from ..errors import JournalError
from .records import KeyClaim, TaskEvent, TaskRecord, parse_url_expiry
from .seam import DEFAULT_LIST_LIMIT, Clock, UserView, checked_listing
from .sqlite_open import DEFAULT_BUSY_TIMEOUT, DEFAULT_LOCK_TIMEOUT, SqliteDatabase, open_database
from .sqlite_rows import (
    FIND_BY_LOCAL_ID,
    LIST_ALL,
    LIST_BY_STATUS,
    add_event,
    clean_text,
    encode_arguments,
    event_detail,
    find,
    insert_submission,
    iso,
    mark_unknown,
    observed,
    record,
)
from .sqlite_schema import read as _read
from .sqlite_schema import write as _write
from .sqlite_usage import SqliteUsage
from .tasklock import FlockLeases, SubmitLeases, TaskLocks

logger = logging.getLogger(__name__)

_STOPPED_MID_SUBMIT = "The server stopped before the submit answered; a task may exist upstream."


class Journal(SqliteDatabase, SqliteUsage, UserView, FlockLeases):
    """The task journal. Build it with :meth:`open`; share one per process.

    Every read and write is for one user: the journal :meth:`open` returns is the local
    user's, :meth:`for_user` another user's view of the same database (rows stamped
    with, and filtered by, that user). Whose a task is, budgets and submit slots:
    :class:`~.sqlite_usage.SqliteUsage`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, now: Callable[[], datetime]) -> None:
        super().__init__(conn, path)
        self._now = now
        self._user = LOCAL_USER
        self._submits = SubmitLeases(path.parent)  # each claimed key's submit (see module)
        self._task_locks = TaskLocks(path.parent)

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        now: Callable[[], datetime] = utc_now,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        clock: Clock | None = None,
    ) -> Journal:
        """Open (or create) ``<state_dir>/tasks.sqlite3``; call once at start-up.
        ``clock`` (tests) times :meth:`wait_for_change`.

        Raises :class:`JournalError` when the journal cannot be used (see
        :func:`~gravitex_mcp.store.sqlite_open.open_database`).
        """
        conn, path = open_database(
            state_dir, now=now, busy_timeout=busy_timeout, lock_timeout=lock_timeout
        )
        journal = cls(conn, path, now)
        if clock is not None:
            journal._wait_clock = clock
        return journal

    def close(self) -> None:
        """Close the connection; idempotent. Later calls raise :class:`JournalError`."""
        with self._lock, self._read_lock:
            self._submits.end_all()
            self._close_connections()

    # --- plumbing

    def _stamp(self) -> str:
        return iso(self._now())

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
        encoded = await anyio.to_thread.run_sync(encode_arguments, dict(arguments))
        local_id = str(uuid.uuid4())
        user = self._user

        def operation(conn: sqlite3.Connection) -> str:
            with _write(conn):
                insert_submission(
                    conn, local_id, model, family, encoded, arguments_hash, self._stamp(), user
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
        encoded = await anyio.to_thread.run_sync(encode_arguments, dict(arguments))
        local_id = str(uuid.uuid4())

        user = self._user
        # A key is one user's: the same string from another user is another key.
        find_key = (
            "SELECT k.arguments_hash AS key_hash, t.* FROM user_idempotency_keys k "
            "JOIN tasks t ON t.local_id = k.local_id WHERE k.user_id = ? AND k.key = ?"
        )

        def operation(conn: sqlite3.Connection) -> KeyClaim:
            at = self._stamp()
            try:
                with _write(conn):
                    held = conn.execute(find_key, (user, key)).fetchone()
                    if (
                        held is not None
                        and held["status"] == JournalStatus.SUBMITTING.value
                        and self._submits.gone(held["local_id"])
                    ):
                        mark_unknown(conn, held["local_id"], at, _STOPPED_MID_SUBMIT)
                        held = conn.execute(find_key, (user, key)).fetchone()
                    if held is not None and held["status"] != JournalStatus.SUBMIT_FAILED.value:
                        return KeyClaim(
                            local_id=None, holder=record(held), arguments_hash=held["key_hash"]
                        )
                    # Held before the row is visible: whoever sees the row finds it held.
                    self._submits.take(local_id)
                    insert_submission(
                        conn, local_id, model, family, encoded, arguments_hash, at, user
                    )
                    conn.execute(
                        "INSERT INTO user_idempotency_keys (user_id, key, arguments_hash, "
                        "local_id, created_at) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (user_id, key) DO UPDATE SET "
                        "arguments_hash = excluded.arguments_hash, "
                        "local_id = excluded.local_id, created_at = excluded.created_at",
                        (user, key, arguments_hash, local_id, at),
                    )
            except BaseException:
                self._submits.end(local_id)  # the row was not written
                raise
            return KeyClaim(local_id=local_id, holder=None, arguments_hash=arguments_hash)

        return await self._run(operation)

    async def recent_with_arguments(
        self, arguments_hash: str, *, within: timedelta
    ) -> builtins.list[TaskRecord]:
        """Submissions with these arguments created in the last ``within``, newest first."""
        cutoff = iso(self._now() - within)
        user = self._user

        def operation(conn: sqlite3.Connection) -> builtins.list[TaskRecord]:
            rows = conn.execute(
                "SELECT * FROM tasks WHERE user_id = ? AND arguments_hash = ? "
                "AND created_at >= ? ORDER BY created_at DESC, seq DESC LIMIT 5",
                (user, arguments_hash, cutoff),
            ).fetchall()
            return [record(row) for row in rows]

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
        user = self._user

        def operation(conn: sqlite3.Connection) -> TaskRecord:
            try:
                return answered(conn)
            finally:
                self._submits.end(local_id)  # the submit is over, recorded or not

        def answered(conn: sqlite3.Connection) -> TaskRecord:
            at = self._stamp()
            with _write(conn):
                row = conn.execute(FIND_BY_LOCAL_ID, (local_id, user)).fetchone()
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
                    add_event(conn, local_id, new_status, at, f"task id {task_id}")
                updated = conn.execute(FIND_BY_LOCAL_ID, (local_id, user)).fetchone()
            return record(updated)

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
        detail = clean_text(message)
        user = self._user

        def operation(conn: sqlite3.Connection) -> None:
            try:
                failed(conn)
            finally:
                self._submits.end(local_id)  # the submit is over, recorded or not

        def failed(conn: sqlite3.Connection) -> None:
            at = self._stamp()
            with _write(conn):
                row = conn.execute(
                    "SELECT status FROM tasks WHERE local_id = ? AND user_id = ?", (local_id, user)
                ).fetchone()
                if row is None:
                    raise JournalError(f"No submission {local_id!r} in the task journal.")
                conn.execute(
                    "UPDATE tasks SET status = ?, error_message = ?, updated_at = ? "
                    "WHERE local_id = ?",
                    (new_status.value, detail, at, local_id),
                )
                if new_status.value != row["status"]:
                    add_event(conn, local_id, new_status, at, detail)

        await self._run(operation)

    async def expire_stale_submissions(self, *, older_than: timedelta) -> int:
        """Mark submissions still ``submitting`` after ``older_than`` as ``submit_unknown``.

        Such rows are left by a process that stopped while its POST was in flight;
        the request may have created a task, which ``list_video_tasks`` should say.
        Returns how many rows were marked, of every user (a start-up sweep of the
        whole store, not a read or write for one user).
        """
        cutoff = iso(self._now() - older_than)
        detail = _STOPPED_MID_SUBMIT

        def operation(conn: sqlite3.Connection) -> int:
            at = self._stamp()
            with _write(conn):
                rows = conn.execute(
                    "SELECT local_id FROM tasks WHERE status = ? AND created_at < ?",
                    (JournalStatus.SUBMITTING.value, cutoff),
                ).fetchall()
                for row in rows:
                    mark_unknown(conn, row["local_id"], at, detail)
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
        message = clean_text(error_message)
        user = self._user

        def merged(row: sqlite3.Row) -> tuple[str | None, ...]:
            """:func:`observed` of the row after this observation (a terminal status
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
            now = as_utc(self._now())
            at = iso(now)
            # A poll that changes nothing writes nothing (no lock, no fsync): most
            # polls of a long task see the same status.
            with _read(conn):
                row = find(conn, task_id, user)
            if row is not None and merged(row) == observed(row):
                return record(row)
            with _write(conn):
                row = find(conn, task_id, user)
                if row is None:
                    logger.debug("record_status: task %s is not in the journal", task_id)
                    return None
                new = merged(row)
                new_status, _, _, new_code, new_message = new
                expires = row["url_expires_at"]
                if url is not None and url != row["url"]:
                    expires = iso(parse_url_expiry(url, seen_at=now))
                updated_at = at if new != observed(row) else row["updated_at"]
                conn.execute(
                    "UPDATE tasks SET status = ?, raw_status = ?, url = ?, error_code = ?, "
                    "error_message = ?, url_expires_at = ?, checked_at = ?, updated_at = ? "
                    "WHERE local_id = ?",
                    (*new, expires, at, updated_at, row["local_id"]),
                )
                if new_status != row["status"]:  # not a regression: the status seen
                    detail = event_detail(
                        seen, seen_raw=raw_status, code=new_code, message=new_message
                    )
                    add_event(conn, row["local_id"], seen, at, detail)
                updated = conn.execute(FIND_BY_LOCAL_ID, (row["local_id"], user)).fetchone()
            return record(updated)

        return await self._run(operation)

    async def record_download(
        self,
        task_id: str,
        *,
        path: Path | str,
        size_bytes: int,
        sha256: str,
        identity: str | None = None,
    ) -> None:
        """Record where the video of ``task_id`` (upstream or local id) was saved, and
        the file's identity then (see :class:`~gravitex_mcp.store.ondisk.FileIdentity`).

        Does nothing for a task the journal does not know.
        """
        saved = str(path)
        user = self._user

        def operation(conn: sqlite3.Connection) -> None:
            at = self._stamp()
            with _write(conn):
                row = find(conn, task_id, user)
                if row is None:
                    logger.debug("record_download: task %s is not in the journal", task_id)
                    return
                conn.execute(
                    "UPDATE tasks SET saved_path = ?, size_bytes = ?, sha256 = ?, "
                    "saved_identity = ?, downloaded_at = ?, updated_at = ? WHERE local_id = ?",
                    (saved, int(size_bytes), sha256, identity, at, at, row["local_id"]),
                )

        await self._run(operation)

    async def record_identity(self, task_id: str, *, path: Path | str, identity: str) -> None:
        """Record the identity the saved file at ``path`` now has (its bytes were
        checked to be the ones saved); nothing when the entry names another file."""
        user = self._user

        def operation(conn: sqlite3.Connection) -> None:
            with _write(conn):
                row = find(conn, task_id, user)
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
        user = self._user

        def operation(conn: sqlite3.Connection) -> TaskRecord | None:
            with _read(conn):
                row = find(conn, task_id, user)
                if row is None:
                    return None
                events = [
                    TaskEvent.model_validate(dict(e))
                    for e in conn.execute(
                        "SELECT status, at, detail FROM task_events WHERE local_id = ? ORDER BY id",
                        (row["local_id"],),
                    )
                ]
            return record(row, events)

        return await self._run_read(operation)

    async def list(
        self, *, limit: int = DEFAULT_LIST_LIMIT, status: str | None = None
    ) -> builtins.list[TaskRecord]:
        """The newest entries first (by creation), optionally of one status.

        Raises :class:`InvalidArgumentsError` for a ``limit`` outside
        1..:data:`MAX_LIST_LIMIT` or an unknown ``status``.
        """
        wanted = checked_listing(limit, status)

        user = self._user

        def operation(conn: sqlite3.Connection) -> builtins.list[TaskRecord]:
            if wanted is None:
                rows = conn.execute(LIST_ALL, (user, limit)).fetchall()
            else:
                rows = conn.execute(LIST_BY_STATUS, (user, wanted.value, limit)).fetchall()
            return [record(row) for row in rows]

        return await self._run_read(operation, listing=True)

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
        matching = (
            "FROM tasks WHERE user_id = ? AND task_id IS NOT NULL AND substr(task_id, 1, ?) = ?"
        )
        params = (self._user, len(prefix), prefix)

        def operation(conn: sqlite3.Connection) -> tuple[builtins.list[str], int]:
            with _read(conn):  # one snapshot: the count agrees with the values
                total = int(conn.execute(f"SELECT count(*) {matching}", params).fetchone()[0])
                rows = conn.execute(
                    f"SELECT task_id {matching} ORDER BY created_at DESC, seq DESC LIMIT ?",
                    (*params, limit),
                ).fetchall()
            return [str(row["task_id"]) for row in rows], total

        return await self._run_read(operation, listing=True)
