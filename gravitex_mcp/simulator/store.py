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
import secrets
import sqlite3
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from ..domain import Family
from ..journal import redact_data_urls
from .tasks import SimTask

#: The file, under the server's state folder, that a persistent store uses.
STORE_FILENAME = "simulator.sqlite3"

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

    def __init__(self, path: Path | None = None) -> None:
        self._memory: dict[str, SimTask] = {}
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One connection guarded by a lock: the app runs in an event loop, the
            # tests may call from another thread.
            conn = sqlite3.connect(path, timeout=10, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                conn.commit()
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn

    @classmethod
    def in_folder(cls, state_dir: Path) -> TaskStore:
        """A persistent store in ``state_dir`` (the server's state folder)."""
        return cls(state_dir / STORE_FILENAME)

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
            # INSERT OR IGNORE: two processes racing keep whichever key landed first.
            self._conn.execute(
                "INSERT OR IGNORE INTO sim_meta (name, value) VALUES ('signing_key', ?)", (fresh,)
            )
            self._conn.commit()
            row = self._conn.execute(
                "SELECT value FROM sim_meta WHERE name = 'signing_key'"
            ).fetchone()
            return bytes(row[0])

    # --- MutableMapping -----------------------------------------------------

    def __getitem__(self, task_id: str) -> SimTask:
        with self._lock:
            task = self._memory.get(task_id)
            if task is not None or self._conn is None:
                if task is None:
                    raise KeyError(task_id)
                return task
            row = self._conn.execute(
                "SELECT data FROM sim_tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
            if row is None:
                raise KeyError(task_id)
            task = task_from_json(row[0])
            self._memory[task_id] = task
            return task

    def __setitem__(self, task_id: str, task: SimTask) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO sim_tasks (task_id, data) VALUES (?, ?)",
                    (task_id, task_to_json(task)),
                )
                self._conn.commit()
            self._memory[task_id] = task

    def __delitem__(self, task_id: str) -> None:
        with self._lock:
            found = self._memory.pop(task_id, None) is not None
            if self._conn is not None:
                cursor = self._conn.execute("DELETE FROM sim_tasks WHERE task_id = ?", (task_id,))
                self._conn.commit()
                found = found or cursor.rowcount > 0
            if not found:
                raise KeyError(task_id)

    def _ids(self) -> list[str]:
        with self._lock:
            if self._conn is None:
                return list(self._memory)
            rows = self._conn.execute("SELECT task_id FROM sim_tasks ORDER BY rowid").fetchall()
            return [str(r[0]) for r in rows]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids())

    def __len__(self) -> int:
        return len(self._ids())

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()
            if self._conn is not None:
                self._conn.execute("DELETE FROM sim_tasks")
                self._conn.commit()
