"""The test services themselves: real PostgreSQL 15 and SeaweedFS S3, as the team store uses them.

psycopg 3 async through a psycopg_pool pool; a stopped server fails with
``psycopg.OperationalError`` and works again once restarted. obstore against
SeaweedFS: create-only puts (``If-None-Match: *``), a multipart streaming put,
ranged and presigned ranged gets, and signatures really checked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx2
import obstore
import psycopg
import pytest
from obstore.exceptions import AlreadyExistsError, PermissionDeniedError
from obstore.store import S3Store
from psycopg_pool import AsyncConnectionPool

from tests.conftest import PostgresDatabase, S3Bucket, service_unavailable
from tests.services import ServiceUnavailableError, start_postgres

pytestmark = pytest.mark.slow  # real PostgreSQL and SeaweedFS servers

if TYPE_CHECKING:
    from obstore.store import ClientConfig  # in the stubs only

# ------------------------------------------------------------------------ PostgreSQL


async def test_pool_round_trips_through_postgres(postgres_db: PostgresDatabase) -> None:
    async with AsyncConnectionPool(postgres_db.dsn, min_size=1, max_size=4, open=False) as pool:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE tasks (id text PRIMARY KEY, body jsonb NOT NULL)")
            await conn.execute(
                "INSERT INTO tasks VALUES (%s, %s::jsonb)", ("t1", '{"status": "queued"}')
            )
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT body->>'status', version() FROM tasks")
            row = await cur.fetchone()
    assert row is not None
    assert row[0] == "queued"
    assert "PostgreSQL 15" in row[1]


async def test_each_test_has_a_fresh_database(postgres_db: PostgresDatabase) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_db.dsn) as conn:
        cur = await conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        row = await cur.fetchone()
    assert row == (0,)


async def test_a_wrong_password_is_refused(postgres_db: PostgresDatabase) -> None:
    wrong = postgres_db.dsn.replace(postgres_db.server.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await psycopg.AsyncConnection.connect(wrong, connect_timeout=5)


async def test_a_stopped_server_fails_with_operational_error_then_recovers(
    postgres_db: PostgresDatabase,
) -> None:
    server = postgres_db.server
    async with AsyncConnectionPool(
        postgres_db.dsn, min_size=1, max_size=2, timeout=3, open=False
    ) as pool:
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE t (n int)")
            await conn.execute("INSERT INTO t VALUES (1)")

        await asyncio.to_thread(server.stop)
        # A pooled connection that was open when the server went away...
        with pytest.raises(psycopg.OperationalError):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
        # ...and a new connection both fail with psycopg's retryable error class.
        with pytest.raises(psycopg.OperationalError):
            await psycopg.AsyncConnection.connect(postgres_db.dsn, connect_timeout=2)

        server.start()  # on this (main) thread, so the new postmaster dies with us
        await pool.check()  # drop the dead connections rather than wait for the pool to notice
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT n FROM t")
            assert await cur.fetchall() == [(1,)]


def test_a_cluster_keeps_its_settings_across_restarts() -> None:
    # A setting only a start can give (the team benchmark counts statements with it).
    try:
        server = start_postgres(settings={"shared_preload_libraries": "pg_stat_statements"})
    except ServiceUnavailableError as exc:
        service_unavailable(str(exc))
    try:
        for _ in range(2):
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                row = conn.execute("SHOW shared_preload_libraries").fetchone()
            assert row == ("pg_stat_statements",)
            server.restart()
    finally:
        server.close()


# ----------------------------------------------------------------------- S3 storage


def _store(b: S3Bucket, *, secret: str | None = None, timeout: str | None = None) -> S3Store:
    client: ClientConfig = {"allow_http": True}
    if timeout is not None:
        client["connect_timeout"] = timeout
        client["timeout"] = timeout
    return S3Store(
        b.bucket,
        endpoint=b.endpoint,
        region=b.region,
        access_key_id=b.access_key_id,
        secret_access_key=secret if secret is not None else b.secret_access_key,
        client_options=client,
        retry_config={
            "max_retries": 0,
            "retry_timeout": dt.timedelta(seconds=5),
            "backoff": {
                "init_backoff": dt.timedelta(milliseconds=10),
                "max_backoff": dt.timedelta(milliseconds=100),
                "base": 2,
            },
        },
    )


async def test_create_only_put_refuses_an_existing_key(s3_bucket: S3Bucket) -> None:
    store = _store(s3_bucket)
    await obstore.put_async(store, "videos/a.mp4", b"first", mode="create")
    with pytest.raises(AlreadyExistsError):
        await obstore.put_async(store, "videos/a.mp4", b"second", mode="create")
    got = await obstore.get_async(store, "videos/a.mp4")
    assert bytes(await got.bytes_async()) == b"first"


async def test_concurrent_create_only_puts_have_one_winner(s3_bucket: S3Bucket) -> None:
    """SeaweedFS serialises conditional puts of one key: exactly one of them succeeds."""
    store = _store(s3_bucket)
    body_size = 256 * 1024

    async def put(i: int) -> int | None:
        try:
            await obstore.put_async(store, "race", bytes([i]) * body_size, mode="create")
        except AlreadyExistsError:
            return None
        return i

    results = await asyncio.gather(*(put(i) for i in range(6)))
    winners = [i for i in results if i is not None]
    assert len(winners) == 1, results
    got = await obstore.get_async(store, "race")
    assert bytes(await got.bytes_async()) == bytes([winners[0]]) * body_size


async def test_create_only_streamed_put_is_one_buffered_put(s3_bucket: S3Bucket) -> None:
    """obstore does not stream a create-only put: it buffers it and sends a single PUT.

    A tripwire for the video store: ``mode="create"`` with ``use_multipart=True`` still
    makes one plain PUT (its ETag has no ``-<parts>``), so the whole body sits in memory.
    """
    store = _store(s3_bucket)
    chunk = os.urandom(1024 * 1024)

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(12):
            yield chunk

    result = await obstore.put_async(store, "v.mp4", stream(), mode="create", use_multipart=True)
    assert "-" not in str(result["e_tag"]), result
    with pytest.raises(AlreadyExistsError):
        await obstore.put_async(store, "v.mp4", stream(), mode="create", use_multipart=True)


def test_seaweed_honours_if_none_match_on_completing_a_multipart_upload(
    s3_bucket: S3Bucket,
) -> None:
    """The server side of a streamed create-only save: CompleteMultipartUpload + If-None-Match."""
    creds = s3_bucket.server.credentials
    path = f"/{s3_bucket.bucket}/videos/streamed.mp4"

    def upload(if_none_match: bool) -> httpx2.Response:
        made = creds.signed_request("POST", path, query={"uploads": ""})
        assert made.status_code == 200, made.text
        upload_id = made.text.split("<UploadId>", 1)[1].split("</UploadId>", 1)[0]
        part = creds.signed_request(
            "PUT",
            path,
            query={"partNumber": "1", "uploadId": upload_id},
            body=os.urandom(5 * 1024 * 1024),
            timeout=30,
        )
        assert part.status_code == 200, part.text
        etag = part.headers["etag"]
        xml = (
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
            f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        )
        return creds.signed_request(
            "POST",
            path,
            query={"uploadId": upload_id},
            body=xml.encode(),
            headers={"if-none-match": "*"} if if_none_match else {},
            timeout=30,
        )

    assert upload(if_none_match=True).status_code == 200
    refused = upload(if_none_match=True)
    assert refused.status_code == 412
    assert "PreconditionFailed" in refused.text
    assert upload(if_none_match=False).status_code == 200  # without the header: overwritten


async def test_multipart_streaming_put_then_ranged_gets(s3_bucket: S3Bucket) -> None:
    store = _store(s3_bucket)
    chunk = os.urandom(1024 * 1024)
    chunks = 20
    whole = hashlib.sha256()
    for _ in range(chunks):
        whole.update(chunk)

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(chunks):
            yield chunk

    result = await obstore.put_async(
        store, "videos/big.mp4", stream(), use_multipart=True, chunk_size=5 * 1024 * 1024
    )
    # A multipart upload's ETag ends in -<number of parts>.
    assert str(result["e_tag"]).strip('"').endswith("-4"), result

    meta = await obstore.head_async(store, "videos/big.mp4")
    assert meta["size"] == chunks * len(chunk)
    got = await obstore.get_async(store, "videos/big.mp4")
    assert hashlib.sha256(bytes(await got.bytes_async())).digest() == whole.digest()

    start = 3 * len(chunk) - 10
    part = await obstore.get_range_async(store, "videos/big.mp4", start=start, length=20)
    assert bytes(part) == (chunk + chunk)[len(chunk) - 10 : len(chunk) + 10]


async def test_presigned_get_serves_a_range(s3_bucket: S3Bucket) -> None:
    store = _store(s3_bucket)
    body = bytes(range(256)) * 40
    await obstore.put_async(store, "videos/clip.mp4", body)
    url = await obstore.sign_async(store, "GET", "videos/clip.mp4", dt.timedelta(minutes=5))
    assert "X-Amz-Signature=" in url
    async with httpx2.AsyncClient(timeout=10) as http:
        whole = await http.get(url)
        ranged = await http.get(url, headers={"Range": "bytes=100-199"})
        unsigned = await http.get(url.split("?", 1)[0])
    assert whole.status_code == 200
    assert whole.content == body
    assert ranged.status_code == 206
    assert ranged.content == body[100:200]
    assert ranged.headers["content-range"] == f"bytes 100-199/{len(body)}"
    assert unsigned.status_code == 403


async def test_a_bad_secret_is_refused(s3_bucket: S3Bucket) -> None:
    good = _store(s3_bucket)
    await obstore.put_async(good, "kept", b"mine")
    bad = _store(s3_bucket, secret="not-the-secret")
    with pytest.raises(PermissionDeniedError, match="SignatureDoesNotMatch"):
        await obstore.put_async(bad, "intruder", b"theirs")
    with pytest.raises(PermissionDeniedError, match="SignatureDoesNotMatch"):
        await obstore.get_async(bad, "kept")
    # A presigned URL made with the wrong secret is refused too.
    url = await obstore.sign_async(bad, "GET", "kept", dt.timedelta(minutes=5))
    async with httpx2.AsyncClient(timeout=10) as http:
        assert (await http.get(url)).status_code == 403
    # And so is a key id the server does not know.
    stranger = S3Bucket(**{**vars(s3_bucket), "access_key_id": "NOTAKEY"})
    with pytest.raises(PermissionDeniedError, match="InvalidAccessKeyId"):
        await obstore.get_async(_store(stranger), "kept")
    with pytest.raises(FileNotFoundError):  # obstore raises the builtin for a 404
        await obstore.get_async(good, "intruder")


async def test_stopped_storage_fails_and_comes_back_with_its_objects(
    s3_bucket: S3Bucket,
) -> None:
    store = _store(s3_bucket, timeout="3s")
    await obstore.put_async(store, "before", b"kept across the restart")
    await asyncio.to_thread(s3_bucket.server.stop)
    with pytest.raises(Exception, match=r"(?i)connect|refused|error sending request"):
        await obstore.put_async(store, "during", b"x")
    s3_bucket.server.start()  # on the main thread: see _as_user_prefix
    got = await obstore.get_async(store, "before")
    assert bytes(await got.bytes_async()) == b"kept across the restart"


async def test_paused_storage_times_out_then_answers(s3_bucket: S3Bucket) -> None:
    store = _store(s3_bucket, timeout="1s")
    await obstore.put_async(store, "slow", b"eventually")
    s3_bucket.server.pause()
    try:
        with pytest.raises(Exception, match=r"(?i)time"):
            await obstore.get_async(store, "slow")
    finally:
        s3_bucket.server.resume()
    got = await obstore.get_async(store, "slow")
    assert bytes(await got.bytes_async()) == b"eventually"
