"""Rows of the PostgreSQL task store: reading one into a record, the SQL its parts share,
and what its mixed-in parts (:mod:`.pg_reading`, :mod:`.pg_usage`) use of the store."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow

from ..domain import JournalStatus
from ..redact import digest_data_urls
from .records import TaskEvent, TaskRecord

Conn = AsyncConnection[DictRow]


class StoreParts(Protocol):
    """What the store's mixed-in methods use of it: its user, a pooled connection (its
    errors told as the store's; ``_reading``: for a call answered from the store alone,
    a listing, from a pool nothing else waits on), and its clock's time now (UTC)."""

    _user: str

    def _connection(self) -> AbstractAsyncContextManager[Conn]: ...

    def _reading(self) -> AbstractAsyncContextManager[Conn]: ...

    def _stamp(self) -> datetime: ...


# Every query of a task names its user: another user's row is not found. TARGET is the
# local id of the task ``%(id)s`` (its upstream or local id) of ``%(user)s``, the task
# whose upstream id it is first.
TARGET = (
    "SELECT local_id FROM tasks WHERE (task_id = %(id)s OR local_id = %(id)s)"
    " AND user_id = %(user)s ORDER BY (task_id IS NOT DISTINCT FROM %(id)s) DESC LIMIT 1"
)


def clean_text(text: str | None) -> str | None:
    """A message as the journal keeps it (data: URLs digested), with any NUL (which a
    PostgreSQL text value cannot hold) shown as U+FFFD."""
    return None if text is None else digest_data_urls(text).replace("\x00", "\ufffd")


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: nothing stored can match it
        return False
    return "\x00" not in text


def record(row: Mapping[str, Any], events: builtins.list[TaskEvent] | None = None) -> TaskRecord:
    fields = {k: row[k] for k in TaskRecord.model_fields if k != "events"}
    fields["arguments"] = json.loads(row["arguments"])
    return TaskRecord.model_validate({**fields, "events": events or []})


async def add_event(
    conn: Conn, local_id: str, status: JournalStatus, at: datetime, detail: str | None
) -> None:
    await conn.execute(
        "INSERT INTO task_events (local_id, status, at, detail) VALUES (%s, %s, %s, %s)",
        (local_id, status.value, at, detail),
    )


async def one(
    conn: Conn, query: str, params: tuple[Any, ...] | Mapping[str, Any]
) -> DictRow | None:
    cur = await conn.execute(query.encode(), params)
    return await cur.fetchone()


def where(dsn: str) -> str:
    """host:port/dbname, for messages (never the password)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparsable GRAVITEX_DATABASE_URL)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
