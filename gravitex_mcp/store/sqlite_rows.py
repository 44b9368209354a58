"""Rows of the task journal's tables: reading one into a record, writing one.

The SQL the journal's operations share, beside :mod:`.journal` which runs them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..domain import JournalStatus, as_utc
from ..redact import digest_data_urls, redact_data_urls
from .records import TaskEvent, TaskRecord


def encode_arguments(arguments: Mapping[str, Any]) -> str:
    return json.dumps(redact_data_urls(arguments), ensure_ascii=False, separators=(",", ":"))


def iso(moment: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so text order is time order."""
    return as_utc(moment).isoformat(timespec="microseconds")


# Every query of a task names its user: a row of another user is not found.
FIND_BY_TASK_ID = "SELECT * FROM tasks WHERE task_id = ? AND user_id = ?"
FIND_BY_LOCAL_ID = "SELECT * FROM tasks WHERE local_id = ? AND user_id = ?"
LIST_ALL = "SELECT * FROM tasks WHERE user_id = ? ORDER BY created_at DESC, seq DESC LIMIT ?"
LIST_BY_STATUS = (
    "SELECT * FROM tasks WHERE user_id = ? AND status = ? "
    "ORDER BY created_at DESC, seq DESC LIMIT ?"
)


def find(conn: sqlite3.Connection, key: str, user_id: str) -> sqlite3.Row | None:
    """The row of ``user_id`` whose upstream or local id is ``key``; None when there is
    none (another user's row included, and a key no stored id can be: a lone
    surrogate, which SQLite cannot even be asked about)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return None
    row: sqlite3.Row | None = conn.execute(FIND_BY_TASK_ID, (key, user_id)).fetchone()
    if row is None:
        row = conn.execute(FIND_BY_LOCAL_ID, (key, user_id)).fetchone()
    return row


def add_event(
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


def record(row: sqlite3.Row, events: Sequence[TaskEvent] = ()) -> TaskRecord:
    # Every field but the events is a column of its name; pydantic parses the timestamps.
    fields = {k: row[k] for k in TaskRecord.model_fields if k != "events"}
    fields["arguments"] = json.loads(row["arguments"])
    return TaskRecord.model_validate({**fields, "events": list(events)})


def insert_submission(
    conn: sqlite3.Connection,
    local_id: str,
    model: str,
    family: str,
    encoded: str,
    arguments_hash: str | None,
    at: str,
    user_id: str,
) -> None:
    conn.execute(
        "INSERT INTO tasks (local_id, model, family, arguments, arguments_hash, status, "
        "created_at, updated_at, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            local_id,
            str(model),
            str(family),
            encoded,
            arguments_hash,
            JournalStatus.SUBMITTING.value,
            at,
            at,
            user_id,
        ),
    )
    add_event(conn, local_id, JournalStatus.SUBMITTING, at, None)


def mark_unknown(conn: sqlite3.Connection, local_id: str, at: str, detail: str) -> None:
    conn.execute(
        "UPDATE tasks SET status = ?, error_message = ?, updated_at = ? WHERE local_id = ?",
        (JournalStatus.SUBMIT_UNKNOWN.value, detail, at, local_id),
    )
    add_event(conn, local_id, JournalStatus.SUBMIT_UNKNOWN, at, detail)


def observed(row: sqlite3.Row) -> tuple[str | None, ...]:
    """What a status query may change in a row (see :meth:`Journal.record_status`)."""
    return tuple(row[k] for k in ("status", "raw_status", "url", "error_code", "error_message"))


def clean_text(text: str | None) -> str | None:
    return None if text is None else digest_data_urls(text)


def event_detail(
    status: JournalStatus, *, seen_raw: str | None, code: str | None, message: str | None
) -> str | None:
    if status is JournalStatus.FAILED and (code or message):
        return f"{code}: {message}" if code and message else (message or code)
    if seen_raw is not None and seen_raw != status.value:
        return f"upstream status {seen_raw!r}"
    return None
