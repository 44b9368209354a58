"""Shared fixtures: real PostgreSQL and S3 servers, started by the tests (tests/services.py).

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

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import pytest

from .services import (
    PostgresServer,
    SeaweedS3,
    ServiceUnavailableError,
    start_postgres,
    start_seaweed,
)


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
        url = f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"
        return {
            "GRAVITEX_STORAGE_URL": url,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_ALLOW_HTTP": "true",
        }


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
