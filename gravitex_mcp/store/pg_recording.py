"""Recording what became of a task in the PostgreSQL task store, each in one statement
(one round trip, no ``BEGIN``/``COMMIT``): what a status query showed, where its video
was saved, the saved file's identity.

A status change is one statement of data-modifying CTEs: the row is locked only when the
observation changes something (most polls change nothing, and write nothing), the new
values are merged from the locked row (so a write racing another replica's merges with
what that one wrote), its event is added and the change notified to every replica on
commit. :class:`PgRecording` holds these
:class:`~gravitex_mcp.store.seam.TaskStore` methods;
:class:`~gravitex_mcp.store.postgres.PostgresTaskStore` mixes it in.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..domain import JournalStatus, TaskStatus
from .pg_changes import notify_sql
from .pg_rows import TARGET, StoreParts, clean_text, encodable, one, record
from .records import TaskRecord, parse_url_expiry
from .sqlite_rows import event_detail

logger = logging.getLogger(__name__)

#: The statuses a later non-terminal one never replaces.
_TERMINAL = [s.value for s in JournalStatus if s.is_terminal]

# %(keep)s: the statuses kept whatever was seen (none when the status seen is terminal);
# an observation's None (%(raw)s, %(url)s, %(code)s, %(message)s) keeps what is there.
_MERGED_STATUS = "CASE WHEN t.status = ANY(%(keep)s) THEN t.status ELSE %(status)s END"
_MERGED_RAW = (
    "CASE WHEN t.status = ANY(%(keep)s) THEN t.raw_status ELSE coalesce(%(raw)s, t.raw_status) END"
)
_RECORD_STATUS = f"""
WITH target AS ({TARGET}),
old AS (
    SELECT t.local_id, t.status FROM tasks t WHERE t.local_id = (SELECT local_id FROM target)
    AND ({_MERGED_STATUS}, {_MERGED_RAW}, coalesce(%(url)s, t.url),
         coalesce(%(code)s, t.error_code), coalesce(%(message)s, t.error_message))
        IS DISTINCT FROM (t.status, t.raw_status, t.url, t.error_code, t.error_message)
    FOR UPDATE
),
new AS (
    UPDATE tasks t SET status = {_MERGED_STATUS}, raw_status = {_MERGED_RAW},
        url = coalesce(%(url)s, t.url),
        url_expires_at = CASE WHEN t.url IS DISTINCT FROM coalesce(%(url)s, t.url)
            THEN %(expires)s ELSE t.url_expires_at END,
        error_code = coalesce(%(code)s, t.error_code),
        error_message = coalesce(%(message)s, t.error_message),
        checked_at = %(now)s, updated_at = %(now)s
    FROM old WHERE t.local_id = old.local_id
    RETURNING t.*, old.status AS was
),
event AS (
    INSERT INTO task_events (local_id, status, at, detail)
    SELECT local_id, status, %(now)s, coalesce(
        -- event_detail's rule for a failure (its code and message, as merged), else
        -- its detail of the upstream status, given
        CASE WHEN %(failed)s THEN
            nullif(concat_ws(': ', nullif(error_code, ''), nullif(error_message, '')), '')
        END, %(raw_detail)s)
    FROM new WHERE status <> was
)
SELECT new.*, CASE WHEN status <> was THEN {notify_sql("new")} END AS notified FROM new
UNION ALL
SELECT t.*, NULL, NULL FROM tasks t
WHERE t.local_id = (SELECT local_id FROM target) AND NOT EXISTS (SELECT FROM new)
"""  # noqa: S608 - composed of constants
_RECORD_DOWNLOAD = (
    "UPDATE tasks SET saved_path = %(path)s, size_bytes = %(size)s, sha256 = %(sha256)s,"  # noqa: S608
    " saved_identity = %(identity)s, downloaded_at = %(at)s, updated_at = %(at)s"
    f" WHERE local_id = ({TARGET}) RETURNING local_id"
)
_RECORD_IDENTITY = (
    "UPDATE tasks SET saved_identity = %(identity)s"  # noqa: S608
    f" WHERE local_id = ({TARGET}) AND saved_path = %(path)s"
)


class PgRecording:
    """What a query showed, where a video was saved (see the module notes)."""

    async def record_status(
        self: StoreParts,
        task_id: str,
        *,
        status: TaskStatus | JournalStatus,
        raw_status: str | None = None,
        url: str | None = None,
        error_code: str | int | None = None,
        error_message: str | None = None,
    ) -> TaskRecord | None:
        """What a query of ``task_id`` showed (see :meth:`Journal.record_status`); a
        change is notified to every replica."""
        if not encodable(task_id):
            return None
        seen = JournalStatus(status)
        now = self._stamp()
        params = {
            "id": task_id,
            "user": self._user,
            "keep": [] if seen.is_terminal else _TERMINAL,
            "status": seen.value,
            "raw": raw_status,
            "url": url,
            "expires": None if url is None else parse_url_expiry(url, seen_at=now),
            "code": None if error_code is None else str(error_code),
            "message": clean_text(error_message),
            "now": now,
            "failed": seen is JournalStatus.FAILED,
            "raw_detail": event_detail(seen, seen_raw=raw_status, code=None, message=None),
        }
        async with self._connection() as conn:
            row = await one(conn, _RECORD_STATUS, params)
        if row is None:
            logger.debug("record_status: task %s is not in the journal", task_id)
            return None
        return record(row)

    async def record_download(
        self: StoreParts,
        task_id: str,
        *,
        path: Path | str,
        size_bytes: int,
        sha256: str,
        identity: str | None = None,
    ) -> None:
        """Where the video of ``task_id`` was saved (nothing for an unknown task)."""
        if not encodable(task_id):
            return
        params = {
            "id": task_id,
            "user": self._user,
            "path": str(path),
            "size": int(size_bytes),
            "sha256": sha256,
            "identity": identity,
            "at": self._stamp(),
        }
        async with self._connection() as conn:
            if await one(conn, _RECORD_DOWNLOAD, params) is None:
                logger.debug("record_download: task %s is not in the journal", task_id)

    async def record_identity(
        self: StoreParts, task_id: str, *, path: Path | str, identity: str
    ) -> None:
        """The identity the saved file at ``path`` has now (nothing for another file)."""
        if not encodable(task_id):
            return
        params = {"id": task_id, "user": self._user, "path": str(path), "identity": identity}
        async with self._connection() as conn:
            await conn.execute(_RECORD_IDENTITY.encode(), params)
