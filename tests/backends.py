"""The two backends a server keeps its tasks and videos on, for tests that run on both
(the ``backend`` fixture, tests/server/conftest.py):

- ``local``: the SQLite journal in the state folder and the output folder;
- ``team``: PostgreSQL and S3, the tests' real ones (``postgres_db``, ``s3_bucket``),
  the videos under :data:`PREFIX` of the bucket.

:meth:`Backend.stored` reads back everything a backend holds, to look there for what
must never be kept (a caller's own key).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import obstore
import psycopg
from obstore.store import S3Store
from psycopg import sql

from gravitex_mcp.settings import Settings, load_settings
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.objects import ObjectVideoStore
from gravitex_mcp.store.seam import TaskStore, VideoStore
from gravitex_mcp.store.storage import OutputDir
from tests.conftest import PostgresDatabase, S3Bucket

#: The team backend's videos are under this prefix of the bucket.
PREFIX = "team/"

#: Every table the server made (the catalog's own are PostgreSQL's).
_TABLES = """
    SELECT table_schema, table_name FROM information_schema.tables
    WHERE table_type = 'BASE TABLE'
      AND table_schema NOT IN ('pg_catalog', 'information_schema')
    ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Backend:
    """Where the server keeps its tasks and videos: ``settings`` to build it with."""

    settings: dict[str, Any] = field(default_factory=dict)
    bucket: S3Bucket | None = None
    database: PostgresDatabase | None = None

    @classmethod
    def team(cls, database: PostgresDatabase, bucket: S3Bucket) -> Backend:
        storage = load_settings(bucket.storage_env(PREFIX)).storage
        return cls({"database_url": database.dsn, "storage": storage}, bucket, database)

    def folder_of(self, root: Path, user: str) -> str:
        """Where ``user``'s saved files are (a path or URI prefix)."""
        if self.bucket is None:
            return f"{root / 'videos' / 'users' / user}/"
        return f"s3://{self.bucket.bucket}/{PREFIX}users/{user}/"

    def env(self) -> dict[str, str]:
        """What a server process's environment adds to run on this backend."""
        if self.database is None or self.bucket is None:
            return {}
        return {"GRAVITEX_DATABASE_URL": self.database.dsn, **self.bucket.storage_env(PREFIX)}

    @asynccontextmanager
    async def stores(self, settings: Settings) -> AsyncIterator[tuple[TaskStore, VideoStore]]:
        """The task and video stores a server on this backend opens for ``settings``
        (``settings`` built with :attr:`settings`), closed at exit."""
        if settings.database_url is None or settings.storage is None:
            journal = Journal.open(settings.state_dir)
            try:
                yield journal, OutputDir(settings.output_dir)
            finally:
                journal.close()
            return
        from gravitex_mcp.store.postgres import PostgresTaskStore

        videos = ObjectVideoStore(settings.storage)
        try:
            async with PostgresTaskStore.open(settings.database_url) as tasks:
                yield tasks, videos
        finally:
            videos.close()

    def stored(self, *folders: Path) -> Iterator[tuple[str, bytes]]:
        """Everything this backend holds, as (where, bytes): every file under
        ``folders`` (the state and output folders; a team server keeps files there
        too, its media-link key), and on ``team`` every row of every table of the
        database (as text: no column is binary), every object of the bucket with its
        attributes, and both services' logs."""
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    yield str(path), path.read_bytes()
        if self.database is None or self.bucket is None:
            return
        yield from self._rows(self.database.dsn)
        yield from self._objects(self.bucket)
        for log in (self.database.server.log_path, self.bucket.server.log_path):
            yield str(log), log.read_bytes() if log.is_file() else b""

    @staticmethod
    def _rows(dsn: str) -> Iterator[tuple[str, bytes]]:
        with psycopg.connect(dsn) as conn:
            tables = conn.execute(_TABLES).fetchall()
            assert ("public", "tasks") in tables, tables  # the scan reads the server's tables
            for schema, table in tables:
                query = sql.SQL("SELECT t::text FROM {}.{} AS t").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                for (row,) in conn.execute(query):
                    yield f"{schema}.{table} row {row[:60]}", row.encode()

    @staticmethod
    def _objects(bucket: S3Bucket) -> Iterator[tuple[str, bytes]]:
        with _whole(bucket) as store:
            for batch in obstore.list(store):
                for meta in batch:
                    got = obstore.get(store, meta["path"])
                    where = f"s3://{bucket.bucket}/{meta['path']}"
                    yield where, repr(got.attributes).encode() + bytes(got.bytes())

    def holds(self, location: str) -> bool:
        """Whether a saved video is where ``location`` (a path or s3:// URI) says."""
        if self.bucket is None:
            return Path(location).is_file()
        key = location.removeprefix(f"s3://{self.bucket.bucket}/")
        with _whole(self.bucket) as store:
            try:
                return obstore.head(store, key)["size"] > 0
            except FileNotFoundError:
                return False


@contextmanager
def _whole(bucket: S3Bucket) -> Iterator[S3Store]:
    """A client of the whole of ``bucket`` (not only the server's prefix)."""
    storage = load_settings(bucket.storage_env()).storage
    assert storage is not None
    videos = ObjectVideoStore(storage)
    try:
        assert videos.store is not None
        yield videos.store
    finally:
        videos.close()
