"""Hash helper processes: exact digests, reuse, and every way they can fail
(hashhelper.py, hashworker.py, and their use by storage.py)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gravitex_mcp import hashhelper
from gravitex_mcp.errors import StorageError
from gravitex_mcp.hashhelper import HashHelper, HelperError, HelperPool
from gravitex_mcp.storage import OutputDir

pytestmark = pytest.mark.skipif(
    not hashhelper.supported(),
    reason="hash helpers need Unix sockets that carry file descriptors (socket.send_fds)",
)


@pytest.fixture
def pool() -> Iterator[HelperPool]:
    made = HelperPool()
    yield made
    made.close()


def write_in_parts(path: Path, data: bytes, helper: HashHelper, part: int = 100_000) -> None:
    with open(path, "wb") as out:
        for at in range(0, len(data), part):
            out.write(data[at : at + part])
            out.flush()
            helper.written(min(at + part, len(data)))


def test_a_helper_hashes_a_growing_file(tmp_path: Path) -> None:
    helper = HashHelper()
    try:
        data = os.urandom(3_000_123)
        path = tmp_path / "video.part"
        path.write_bytes(b"")
        fd = os.open(path, os.O_RDONLY)
        try:
            helper.start(fd)
            write_in_parts(path, data, helper)
            assert helper.finish(len(data)) == hashlib.sha256(data).hexdigest()
        finally:
            os.close(fd)
    finally:
        helper.close()
    assert helper._process.poll() is not None  # the process ended with its socket


def test_one_helper_hashes_file_after_file(tmp_path: Path) -> None:
    helper = HashHelper()
    try:
        for number in range(3):
            data = os.urandom(200_000 * (number + 1))
            path = tmp_path / f"v{number}.part"
            path.write_bytes(data)
            fd = os.open(path, os.O_RDONLY)
            try:
                helper.start(fd)
                assert helper.finish(len(data)) == hashlib.sha256(data).hexdigest()
            finally:
                os.close(fd)
    finally:
        helper.close()


def test_a_file_shorter_than_announced_is_an_error_not_a_digest(tmp_path: Path) -> None:
    helper = HashHelper()
    try:
        path = tmp_path / "short.part"
        path.write_bytes(b"x" * 1000)
        fd = os.open(path, os.O_RDONLY)
        try:
            helper.start(fd)
            with pytest.raises(HelperError, match="ends at 1000 bytes"):
                helper.finish(5000)
        finally:
            os.close(fd)
        assert helper.healthy  # it said what was wrong: still usable
        path.write_bytes(b"y" * 10)
        fd = os.open(path, os.O_RDONLY)
        try:
            helper.start(fd)
            assert helper.finish(10) == hashlib.sha256(b"y" * 10).hexdigest()
        finally:
            os.close(fd)
    finally:
        helper.close()


def test_a_dead_helper_is_an_error(tmp_path: Path) -> None:
    helper = HashHelper()
    path = tmp_path / "v.part"
    path.write_bytes(b"z" * 5000)
    fd = os.open(path, os.O_RDONLY)
    try:
        helper.start(fd)
        helper._process.kill()
        helper._process.wait()
        with pytest.raises(HelperError):
            helper.finish(5000)
        assert not helper.healthy
    finally:
        os.close(fd)
        helper.close()


def test_a_helper_works_when_its_socket_number_is_above_1023(tmp_path: Path) -> None:
    # select() cannot watch descriptors from 1024 on: the helper must not use it.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"needs 1200 open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        helper = HashHelper()
        assert helper._sock.fileno() >= 1024
        path = tmp_path / "v.part"
        data = os.urandom(300_000)
        path.write_bytes(data)
        fd = os.open(path, os.O_RDONLY)
        try:
            helper.start(fd)
            helper.written(100_000)
            assert helper.finish(len(data)) == hashlib.sha256(data).hexdigest()
        finally:
            os.close(fd)
            helper.close()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_helpers_that_keep_dying_are_given_up(
    pool: HelperPool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="gravitex_mcp.hashhelper"):
        for _ in range(3):
            helper = pool.acquire()
            assert helper is not None
            helper.healthy = False  # as after dying before its first answer
            pool.release(helper)
    assert pool.acquire() is None
    assert "3 hash helpers in a row failed" in caplog.text


def test_one_answer_resets_the_count_of_early_failures(pool: HelperPool) -> None:
    for _ in range(2):
        helper = pool.acquire()
        assert helper is not None
        helper.healthy = False
        pool.release(helper)
    helper = pool.acquire()
    assert helper is not None
    helper.answered = 1
    pool.release(helper)
    for _ in range(2):
        helper = pool.acquire()
        assert helper is not None
        helper.healthy = False
        pool.release(helper)
    assert pool.acquire() is not None  # 2 in a row since the answer: still trying


def test_the_pool_reuses_idle_helpers_and_stops_them(pool: HelperPool) -> None:
    first = pool.acquire()
    assert first is not None
    pool.release(first)
    assert pool.acquire() is first
    second = pool.acquire()
    assert second is not None
    assert second is not first
    pool.release(first)
    pool.release(second)
    pool.close()
    assert first._process.poll() is not None
    assert second._process.poll() is not None
    assert pool.acquire() is None  # closed


def test_an_unhealthy_helper_is_not_kept(pool: HelperPool) -> None:
    helper = pool.acquire()
    assert helper is not None
    helper.healthy = False
    pool.release(helper)
    assert helper._process.poll() is not None
    assert pool.acquire() is not helper


def test_where_helpers_cannot_run_the_pool_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hashhelper, "supported", lambda: False)
    assert HelperPool().acquire() is None


def test_a_helper_that_cannot_start_is_tried_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def cannot_start(self: HashHelper) -> None:
        calls.append(1)
        raise HelperError("could not start the hash helper: no python")

    monkeypatch.setattr(HashHelper, "__init__", cannot_start)
    fresh = HelperPool()
    with caplog.at_level(logging.WARNING, logger="gravitex_mcp.hashhelper"):
        assert fresh.acquire() is None
        assert fresh.acquire() is None
    assert calls == [1]
    assert "hashing in-process" in caplog.text


# --- used by storage ------------------------------------------------------------------


def hasher_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gravitex-hasher")]


async def test_with_a_helper_there_is_no_hasher_thread(tmp_path: Path, pool: HelperPool) -> None:
    data = os.urandom(2_000_000)
    async with OutputDir(tmp_path, helpers=pool).video("v", default_stem="t") as file:
        for at in range(0, len(data), 65536):
            await file.write(data[at : at + 65536])
        assert file._helper is not None
        assert not hasher_threads()
        stored = await file.commit()
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.path.read_bytes() == data
    assert pool.acquire() is not None  # the helper went back to the pool


async def test_a_helper_that_dies_mid_file_costs_nothing_but_time(
    tmp_path: Path, pool: HelperPool, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(1_500_000)
    with caplog.at_level(logging.WARNING, logger="gravitex_mcp.storage"):
        async with OutputDir(tmp_path, helpers=pool).video("v", default_stem="t") as file:
            await file.write(data[:700_000])
            helper = file._helper
            assert helper is not None
            helper._process.kill()
            await file.write(data[700_000:])
            stored = await file.commit()
    assert stored.sha256 == hashlib.sha256(data).hexdigest()  # hashed in-process
    assert "hashing v.mp4 in-process" in caplog.text
    assert helper._process.poll() is not None
    assert pool.acquire() is not helper  # not reused


async def test_a_shrunk_file_is_refused_even_after_the_fallback(
    tmp_path: Path, pool: HelperPool
) -> None:
    async def shrink() -> None:
        async with OutputDir(tmp_path, helpers=pool).video("v", default_stem="t") as file:
            await file.write(b"x" * 300_000)
            assert file.temp_path is not None
            os.truncate(file.temp_path, 1000)
            await file.commit()

    with pytest.raises(StorageError, match="shrank"):
        await shrink()
    assert list(tmp_path.iterdir()) == []


async def test_leaving_early_stops_the_helper(tmp_path: Path, pool: HelperPool) -> None:
    seen: list[HashHelper | None] = []

    async def leave() -> None:
        async with OutputDir(tmp_path, helpers=pool).video("v", default_stem="t") as file:
            await file.write(b"x" * 100_000)
            seen.append(file._helper)
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        await leave()
    helper = seen[0]
    assert helper is not None
    assert helper._process.poll() is not None  # mid-file: stopped, not reused
    assert list(tmp_path.iterdir()) == []


async def test_without_helpers_a_thread_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hashhelper, "supported", lambda: False)
    data = os.urandom(1_000_000)
    async with OutputDir(tmp_path, helpers=HelperPool()).video("v", default_stem="t") as file:
        await file.write(data)
        assert file._helper is None
        assert hasher_threads()
        stored = await file.commit()
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
