"""Shared fixtures, each defined once: a fake clock, simulator settings, the tool names,
a lock held by another process, and real PostgreSQL and S3 servers (tests/services.py).

- ``FakeClock`` / ``clock``: monotonic time that moves only when something sleeps on it, and
  a UTC wall clock that moves one second on every reading.
- ``simulator_settings(root, ...)``: the settings of a ``--simulate`` server under ``root``.
- ``TOOLS``: the tool names the server lists, written out (not read from the server).
- ``lock_held_elsewhere(path, ...)``: another process holding ``path``'s flock or SQLite lock.
- ``restore_logging``: the logging state put back after a test that configures it.
- ``postgres_server`` (session): one throwaway PostgreSQL 15 cluster (:class:`PostgresServer`).
- ``postgres_db`` (function): a fresh database in it (:class:`PostgresDatabase`, ``.dsn``),
  dropped afterwards; the server is started again if the test stopped it.
- ``s3_server`` (session): one SeaweedFS with a signed S3 gateway (:class:`SeaweedS3`).
- ``s3_bucket`` (function): a fresh bucket in it (:class:`S3Bucket`: ``endpoint``, ``region``,
  ``access_key_id``, ``secret_access_key``, ``bucket``), deleted afterwards; the server is
  resumed or started again if the test paused or stopped it.

A test whose service is not installed skips loudly, saying what to install; with ``CI``
set in the environment it fails instead, since CI installs every service (.ci/run).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, NoReturn

import anyio
import anyio.lowlevel
import pytest

from gravitex_mcp.logs import NOISY, configure_logging
from gravitex_mcp.settings import Settings
from tests.proc import STOP_TIMEOUT
from tests.services import (
    PostgresServer,
    SeaweedS3,
    ServiceUnavailableError,
    start_postgres,
    start_seaweed,
)

#: Where :class:`FakeClock`'s wall clock starts (it reads one second later each time).
WALL_START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

TOOLS = frozenset(
    {
        "list_models",
        "generate_video",
        "generate_videos",
        "check_video_task",
        "download_video",
        "join_videos",
        "extract_frames",
        "list_video_tasks",
        "get_usage",
    }
)


class FakeClock:
    """Fake time for both clocks the code reads.

    ``monotonic``/``sleep``/``deadline`` (upstream.waiting's ``Clock``): time that only
    moves when something sleeps on it. Calling the clock (the journal's ``now``): a UTC
    wall clock that moves one second forward on every reading; thread-safe.
    """

    def __init__(self, start: datetime = WALL_START) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._deadlines: list[tuple[float, anyio.CancelScope]] = []
        self.current = start
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Like anyio.move_on_after on a real clock: a deadline inside the sleep cuts
        # it short at the deadline.
        self.sleeps.append(seconds)
        target = self.now + seconds
        due = [at for at, scope in self._deadlines if at <= target and not scope.cancel_called]
        self.now = min([target, *due])
        for at, scope in self._deadlines:
            if at <= self.now:
                scope.cancel()
        await anyio.lowlevel.checkpoint()

    def deadline(self, seconds: float) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        self._deadlines.append((self.now + seconds, scope))
        if seconds <= 0:
            scope.cancel()
        return scope

    def __call__(self) -> datetime:
        with self._lock:
            self.current += timedelta(seconds=1)
            return self.current


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging (and the CLI run in-process) changes process-wide state: the
    root's handlers and level, the noisy loggers' levels, the record factory and the
    secrets it scrubs. Put it all back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY}
    factory = logging.getLogRecordFactory()
    yield
    configure_logging("WARNING")  # forget the secrets
    logging.setLogRecordFactory(factory)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


def simulator_settings(root: Path, **overrides: Any) -> Settings:
    """A ``--simulate`` server's settings, its folders under ``root``."""
    values: dict[str, Any] = {
        "api_key": None,
        "simulate": True,
        "output_dir": root / "videos",
        "state_dir": root / "state",
    }
    return Settings(**(values | overrides))


_LOCK_HOLDERS = {
    # flock, with the holder's pid written in (the journal's lock-file convention)
    "flock+pid": """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())
""",
    # flock only, the file left as it is (a temp file being written)
    "flock": """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
""",
    # a SQLite file locked exclusively: every other connection gets "database is locked"
    "sqlite": """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode=EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
""",
}


@contextmanager
def lock_held_elsewhere(
    path: Path, kind: Literal["flock+pid", "flock", "sqlite"] = "flock"
) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``path`` locked until the block ends (it reads stdin to
    its end, then exits); yields that process."""
    script = _LOCK_HOLDERS[kind] + 'print("ready", flush=True)\nsys.stdin.read()\n'
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the lock holder did not start"
        yield proc
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        if proc.stdout is not None:
            proc.stdout.close()


def service_unavailable(reason: str) -> NoReturn:
    """Skip loudly, or fail when running in CI (where every service must be there)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but: {reason}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except ServiceUnavailableError as exc:
        service_unavailable(str(exc))
    try:
        yield server
    finally:
        server.close()


@dataclass(frozen=True)
class PostgresDatabase:
    """A database of its own for one test, on the session's server."""

    server: PostgresServer
    name: str
    dsn: str


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    postgres_server.start()  # a no-op unless an earlier test left it stopped
    dsn = postgres_server.create_database()
    name = dsn.rsplit("/", 1)[1]
    try:
        yield PostgresDatabase(server=postgres_server, name=name, dsn=dsn)
    finally:
        postgres_server.start()
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    try:
        server = start_seaweed()
    except ServiceUnavailableError as exc:
        service_unavailable(str(exc))
    try:
        yield server
    finally:
        server.close()


@dataclass(frozen=True)
class S3Bucket:
    """A bucket of its own for one test, with what a client needs to reach it."""

    server: SeaweedS3
    endpoint: str
    region: str
    access_key_id: str
    secret_access_key: str
    bucket: str

    def storage_env(self, prefix: str = "") -> dict[str, str]:
        """The environment a gravitex-mcp server reads to store its videos here."""
        return self.server.storage_env(self.bucket, prefix)


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> Iterator[S3Bucket]:
    s3_server.resume()
    s3_server.start()  # a no-op unless an earlier test left it stopped
    bucket = s3_server.create_bucket()
    try:
        yield S3Bucket(
            server=s3_server,
            endpoint=s3_server.endpoint,
            region=s3_server.region,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
            bucket=bucket,
        )
    finally:
        s3_server.resume()
        s3_server.start()
        s3_server.delete_bucket(bucket)
