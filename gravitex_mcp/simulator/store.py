"""Where the simulator keeps its tasks: in memory, or in a SQLite file shared by processes.

A ``--simulate`` server is often one of many short-lived processes (Claude
Desktop restarts it, the MCP Inspector starts one per call, SSE runs a lifespan
per connection), so a task submitted by one must be found by the next. The
file holds each task as JSON plus the key that signs the file URLs, so a link
handed out by one process is honoured by another.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

from ..domain import Family, utc_now
from ..errors import SimulatorStoreError
from ..redact import redact_data_urls
from ..store.sqlite_files import is_corruption, move_aside
from .tasks import SimTask

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

#: The file, under the server's state folder, that a persistent store uses.
STORE_FILENAME = "simulator.sqlite3"
#: Seconds a call waits for another process that holds the file locked.
BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_tasks (task_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sim_meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


def task_to_json(task: SimTask) -> str:
    """``task`` as a JSON object of its fields (the family by its value)."""
    data: dict[str, Any] = {f.name: getattr(task, f.name) for f in dataclasses.fields(SimTask)}
    data["family"] = task.family.value
    # Inline images (up to ~27 MB of base64 a request) are kept by their digest only:
    # nothing reads them back, and the write happens inside a submit.
    data["body"] = redact_data_urls(task.body)
    if task.clip is not None:  # the task's own mp4 (a few KB): kept so the next process serves it
        data["clip"] = base64.b64encode(task.clip).decode("ascii")
    return json.dumps(data)


def task_from_json(text: str) -> SimTask:
    """The :class:`SimTask` :func:`task_to_json` wrote; unknown fields are ignored."""
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(SimTask)}
    values = {k: v for k, v in data.items() if k in known}
    values["family"] = Family(values["family"])
    if isinstance(values.get("clip"), str):
        values["clip"] = base64.b64decode(values["clip"])
    return SimTask(**values)


class TaskStore(MutableMapping[str, SimTask]):
    """The simulator's tasks by id.

    Without a path it is a plain in-memory map. With one, every task is also
    written to SQLite and a lookup that misses the memory reads the file, so
    several simulators (in one process or many) over one file see each other's
    tasks. Tasks never change after creation, so a cached copy stays right.
    """

    def __init__(self, path: Path | None = None, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self._memory: dict[str, SimTask] = {}
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._busy_timeout = busy_timeout
        self.path = path
        #: where a damaged file found at open was moved (its tasks are gone)
        self.moved_aside: Path | None = None
        if path is not None:
            self._conn = self._open(path)

    def _open(self, path: Path) -> sqlite3.Connection:
        """The file's connection; a damaged file is moved aside and a new one started,
        anything else that keeps it from opening is a :class:`SimulatorStoreError`."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise SimulatorStoreError(
                    f"The simulator's task store {path} is a folder, not a database file: "
                    "move it away (or set GRAVITEX_STATE_DIR to another folder) and call again."
                )
            return self._connect(path)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise self._error(exc) from exc
            reason = str(exc)
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from exc
        try:
            aside = move_aside(path, utc_now())
            conn = self._connect(path)
        except (sqlite3.Error, OSError) as exc:
            raise SimulatorStoreError(
                f"The simulator's task store {path} is damaged ({reason}) and could not be "
                f"replaced ({exc}): remove it and call again."
            ) from exc
        logger.warning(
            "the simulator's task store %s was damaged (%s); moved it aside to %s and "
            "started a new one (its tasks are gone)",
            path,
            reason,
            aside.name,
        )
        self.moved_aside = aside
        return conn

    def _connect(self, path: Path) -> sqlite3.Connection:
        # One connection guarded by a lock: the app runs in an event loop, the
        # tests may call from another thread.
        conn = sqlite3.connect(path, timeout=self._busy_timeout, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def _error(self, exc: sqlite3.Error | OSError) -> SimulatorStoreError:
        """The error naming this store's file, for ``exc`` met opening or using it."""
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            what = (
                f"is locked by another process (waited {self._busy_timeout:g} s): call again "
                "in a moment, or stop the other gravitex-mcp --simulate process"
            )
        else:
            what = (
                f"cannot be used ({exc}): check the file's permissions, or set "
                "GRAVITEX_STATE_DIR to another folder"
            )
        return SimulatorStoreError(f"The simulator's task store {self.path} {what}.")

    def _sql(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """``operation`` on the file (under the lock); a failure names the file, and a
        file found damaged in use is moved aside for a new one."""
        assert self._conn is not None
        try:
            return operation(self._conn)
        except sqlite3.Error as exc:
            if not (isinstance(exc, sqlite3.DatabaseError) and is_corruption(exc)):
                raise self._error(exc) from exc
            self._conn.close()
            self._conn = None
            assert self.path is not None
            self._conn = self._open(self.path)  # moves the damaged file aside
            raise SimulatorStoreError(
                f"The simulator's task store {self.path} was damaged ({exc}); it was moved "
                "aside and a new one started: call again (its earlier tasks are gone)."
            ) from exc

    @classmethod
    def in_folder(cls, state_dir: Path, *, busy_timeout: float = BUSY_TIMEOUT) -> TaskStore:
        """A persistent store in ``state_dir`` (the server's state folder)."""
        return cls(state_dir / STORE_FILENAME, busy_timeout=busy_timeout)

    def close(self) -> None:
        """Close the file (the in-memory copy stays readable)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def signing_key(self) -> bytes:
        """The URL-signing key: persisted with the tasks, random for a memory store."""
        with self._lock:
            if self._conn is None:
                return secrets.token_bytes(32)
            fresh = secrets.token_bytes(32)

            def operation(conn: sqlite3.Connection) -> bytes:
                # INSERT OR IGNORE: two processes racing keep whichever key landed first.
                conn.execute(
                    "INSERT OR IGNORE INTO sim_meta (name, value) VALUES ('signing_key', ?)",
                    (fresh,),
                )
                conn.commit()
                row = conn.execute("SELECT value FROM sim_meta WHERE name = 'signing_key'")
                return bytes(row.fetchone()[0])

            return self._sql(operation)

    # --- MutableMapping -----------------------------------------------------

    def __getitem__(self, task_id: str) -> SimTask:
        with self._lock:
            task = self._memory.get(task_id)
            if task is not None or self._conn is None:
                if task is None:
                    raise KeyError(task_id)
                return task
            row = self._sql(
                lambda conn: conn.execute(
                    "SELECT data FROM sim_tasks WHERE task_id = ?", (task_id,)
                ).fetchone()
            )
            if row is None:
                raise KeyError(task_id)
            task = task_from_json(row[0])
            self._memory[task_id] = task
            return task

    def __setitem__(self, task_id: str, task: SimTask) -> None:
        with self._lock:
            if self._conn is not None:
                data = task_to_json(task)

                def operation(conn: sqlite3.Connection) -> None:
                    conn.execute(
                        "INSERT OR REPLACE INTO sim_tasks (task_id, data) VALUES (?, ?)",
                        (task_id, data),
                    )
                    conn.commit()

                self._sql(operation)
            self._memory[task_id] = task

    def __delitem__(self, task_id: str) -> None:
        with self._lock:
            found = self._memory.pop(task_id, None) is not None
            if self._conn is not None:

                def operation(conn: sqlite3.Connection) -> int:
                    cursor = conn.execute("DELETE FROM sim_tasks WHERE task_id = ?", (task_id,))
                    conn.commit()
                    return cursor.rowcount

                found = self._sql(operation) > 0 or found
            if not found:
                raise KeyError(task_id)

    def _ids(self) -> list[str]:
        with self._lock:
            if self._conn is None:
                return list(self._memory)
            rows = self._sql(
                lambda conn: conn.execute("SELECT task_id FROM sim_tasks ORDER BY rowid").fetchall()
            )
            return [str(r[0]) for r in rows]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids())

    def __len__(self) -> int:
        return len(self._ids())

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()
            if self._conn is not None:

                def operation(conn: sqlite3.Connection) -> None:
                    conn.execute("DELETE FROM sim_tasks")
                    conn.commit()

                self._sql(operation)
