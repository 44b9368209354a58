from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from gravitex_mcp.domain import JournalStatus, TaskStatus
from gravitex_mcp.errors import InvalidArgumentsError, JournalError
from gravitex_mcp.redact import data_url_digest, redact_data_urls
from gravitex_mcp.store import sqlite_files, sqlite_open, sqlite_schema
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.records import TaskRecord, parse_url_expiry
from gravitex_mcp.store.seam import MAX_LIST_LIMIT
from gravitex_mcp.store.sqlite_open import DB_FILENAME
from gravitex_mcp.store.sqlite_schema import schema_version
from tests.conftest import WALL_START as START
from tests.conftest import FakeClock, lock_held_elsewhere
from tests.proc import REPO as REPO_ROOT
from tests.proc import clean_env, run_cli

SIGNED_URL = (
    "https://bucket.oss-cn-shanghai.aliyuncs.com/out/video.mp4"
    "?Expires=1735960000&OSSAccessKeyId=LTAIkey&Signature=s3cr3tSig%3D"
)


@pytest.fixture
def journal(tmp_path: Path, clock: FakeClock) -> Iterator[Journal]:
    j = Journal.open(tmp_path / "state", now=clock)
    yield j
    j.close()


async def _submitted(j: Journal, task_id: str, *, model: str = "veo-3.1-generate-preview") -> str:
    local_id = await j.begin_submission(model=model, family="veo", arguments={"prompt": task_id})
    await j.complete_submission(local_id, task_id=task_id, status=TaskStatus.SUBMITTED)
    return local_id


def _png_data_url(payload: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(payload).decode()


def _digest_of(payload: bytes, mime: str) -> str:
    return f"sha256:{hashlib.sha256(payload).hexdigest()} ({mime}, {len(payload)} bytes)"


# --- The life of a task --------------------------------------------------------


async def test_begin_complete_status_download(journal: Journal, clock: FakeClock) -> None:
    local_id = await journal.begin_submission(
        model="wan2.5-i2v-preview",
        family="wan",
        arguments={"prompt": "a cat", "duration": 5},
    )
    before_answer = await journal.get(local_id)
    assert before_answer is not None
    assert before_answer.status is JournalStatus.SUBMITTING
    assert before_answer.task_id is None
    assert before_answer.created_at == START + timedelta(seconds=1)

    record = await journal.complete_submission(
        local_id, task_id="ae8eb420", status=TaskStatus.SUBMITTED
    )
    assert record.task_id == "ae8eb420"
    assert record.local_id == local_id
    assert record.status is JournalStatus.SUBMITTED

    await journal.record_status("ae8eb420", status=TaskStatus.QUEUED, raw_status="queued")
    await journal.record_status("ae8eb420", status=TaskStatus.IN_PROGRESS)
    done = await journal.record_status(
        "ae8eb420", status=TaskStatus.SUCCEEDED, raw_status="succeeded", url=SIGNED_URL
    )
    assert done is not None
    assert done.url == SIGNED_URL
    assert done.url_expires_at == datetime.fromtimestamp(1735960000, UTC)

    await journal.record_download(
        "ae8eb420", path=Path("/videos/cat.mp4"), size_bytes=1234, sha256="ab" * 32
    )
    final = await journal.get("ae8eb420")
    assert final is not None
    assert final.model == "wan2.5-i2v-preview"
    assert final.family == "wan"
    assert final.arguments == {"prompt": "a cat", "duration": 5}
    assert final.status is JournalStatus.SUCCEEDED
    assert final.raw_status == "succeeded"
    assert final.saved_path == "/videos/cat.mp4"
    assert final.size_bytes == 1234
    assert final.sha256 == "ab" * 32
    assert final.downloaded_at == clock.current
    assert final.updated_at == clock.current
    assert final.created_at == START + timedelta(seconds=1)
    assert [e.status for e in final.events] == [
        JournalStatus.SUBMITTING,
        JournalStatus.SUBMITTED,
        JournalStatus.QUEUED,
        JournalStatus.IN_PROGRESS,
        JournalStatus.SUCCEEDED,
    ]
    times = [e.at for e in final.events]
    assert times == sorted(times)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)


async def test_history_appended_only_on_change(journal: Journal, clock: FakeClock) -> None:
    await _submitted(journal, "t-1")
    first = await journal.record_status("t-1", status=TaskStatus.QUEUED)
    assert first is not None
    again: TaskRecord | None = None
    for _ in range(5):
        again = await journal.record_status("t-1", status=TaskStatus.QUEUED)
    assert again is not None
    assert again.updated_at == first.updated_at  # nothing changed
    assert again.checked_at == first.checked_at  # an unchanged poll writes nothing
    await journal.record_status("t-1", status=TaskStatus.IN_PROGRESS)
    await journal.record_status("t-1", status=TaskStatus.IN_PROGRESS)
    record = await journal.get("t-1")
    assert record is not None
    assert [e.status.value for e in record.events] == [
        "submitting",
        "submitted",
        "queued",
        "in_progress",
    ]


async def test_terminal_status_is_not_undone(journal: Journal) -> None:
    await _submitted(journal, "t-done")
    await journal.record_status("t-done", status=TaskStatus.SUCCEEDED, url=SIGNED_URL)
    late = await journal.record_status("t-done", status=TaskStatus.IN_PROGRESS)
    assert late is not None
    assert late.status is JournalStatus.SUCCEEDED
    record = await journal.get("t-done")
    assert record is not None
    assert record.events[-1].status is JournalStatus.SUCCEEDED
    assert len(record.events) == 3


async def test_failed_task_keeps_error(journal: Journal) -> None:
    await _submitted(journal, "t-bad")
    record = await journal.record_status(
        "t-bad",
        status=TaskStatus.FAILED,
        raw_status="failed",
        error_code=400,
        error_message="prompt refused",
    )
    assert record is not None
    assert record.error_code == "400"
    assert record.error_message == "prompt refused"
    full = await journal.get("t-bad")
    assert full is not None
    assert full.events[-1].status is JournalStatus.FAILED
    assert full.events[-1].detail == "400: prompt refused"


async def test_unrecognised_upstream_status_kept_raw(journal: Journal) -> None:
    await _submitted(journal, "t-odd")
    record = await journal.record_status(
        "t-odd", status=TaskStatus.parse("rendering"), raw_status="rendering"
    )
    assert record is not None
    assert record.status is JournalStatus.UNKNOWN
    assert record.raw_status == "rendering"
    full = await journal.get("t-odd")
    assert full is not None
    assert full.events[-1].detail == "upstream status 'rendering'"


async def test_failed_submissions(journal: Journal) -> None:
    lost = await journal.begin_submission(model="sora-2", family="sora", arguments={})
    refused = await journal.begin_submission(model="sora-2", family="sora", arguments={})
    await journal.fail_submission(lost, message="connection reset", outcome_unknown=True)
    await journal.fail_submission(refused, message="400: bad size", outcome_unknown=False)
    a = await journal.get(lost)
    b = await journal.get(refused)
    assert a is not None
    assert b is not None
    assert a.status is JournalStatus.SUBMIT_UNKNOWN
    assert a.error_message == "connection reset"
    assert [e.status for e in a.events] == [JournalStatus.SUBMITTING, JournalStatus.SUBMIT_UNKNOWN]
    assert b.status is JournalStatus.SUBMIT_FAILED
    assert b.events[-1].detail == "400: bad size"
    assert [r.local_id for r in await journal.list(status="submit_unknown")] == [lost]
    with pytest.raises(JournalError, match="No submission"):
        await journal.fail_submission("nope", message="x", outcome_unknown=True)


async def test_late_answer_after_unknown_outcome(journal: Journal) -> None:
    local_id = await journal.begin_submission(model="sora-2", family="sora", arguments={})
    await journal.fail_submission(local_id, message="read timeout", outcome_unknown=True)
    record = await journal.complete_submission(
        local_id, task_id="video_1", status=TaskStatus.SUBMITTED
    )
    assert record.status is JournalStatus.SUBMITTED
    assert record.task_id == "video_1"


async def test_complete_submission_refuses_bad_ids(journal: Journal) -> None:
    with pytest.raises(JournalError, match="No submission"):
        await journal.complete_submission("missing", task_id="t", status=TaskStatus.SUBMITTED)
    first = await _submitted(journal, "dup")
    second = await journal.begin_submission(model="m", family="veo", arguments={})
    with pytest.raises(JournalError, match="already recorded"):
        await journal.complete_submission(second, task_id="dup", status=TaskStatus.SUBMITTED)
    with pytest.raises(JournalError, match="already has task id"):
        await journal.complete_submission(first, task_id="other", status=TaskStatus.SUBMITTED)
    # the same answer twice is harmless
    again = await journal.complete_submission(first, task_id="dup", status=TaskStatus.SUBMITTED)
    assert again.local_id == first
    untouched = await journal.get(second)
    assert untouched is not None
    assert untouched.task_id is None
    assert untouched.status is JournalStatus.SUBMITTING


async def test_unknown_task_id_is_not_recorded(journal: Journal) -> None:
    assert await journal.record_status("foreign", status=TaskStatus.SUCCEEDED) is None
    await journal.record_download("foreign", path=Path("/x.mp4"), size_bytes=1, sha256="00")
    assert await journal.get("foreign") is None
    assert await journal.list() == []


async def test_get_by_local_id(journal: Journal) -> None:
    local_id = await _submitted(journal, "t-local")
    by_local = await journal.get(local_id)
    by_task = await journal.get("t-local")
    assert by_local is not None
    assert by_local == by_task


# --- Listing --------------------------------------------------------------------


async def test_list_newest_first_with_filter_and_limit(journal: Journal) -> None:
    for i in range(5):
        await _submitted(journal, f"t{i}")
    await journal.record_status("t1", status=TaskStatus.SUCCEEDED)
    await journal.record_status("t3", status=TaskStatus.SUCCEEDED)

    assert [r.task_id for r in await journal.list()] == ["t4", "t3", "t2", "t1", "t0"]
    assert [r.task_id for r in await journal.list(limit=2)] == ["t4", "t3"]
    assert [r.task_id for r in await journal.list(status="succeeded")] == ["t3", "t1"]
    assert [r.task_id for r in await journal.list(status="succeeded", limit=1)] == ["t3"]
    assert [r.task_id for r in await journal.list(status=TaskStatus.SUBMITTED)] == [
        "t4",
        "t2",
        "t0",
    ]
    assert await journal.list(status="failed") == []
    assert all(r.events == [] for r in await journal.list())


async def test_list_ties_broken_by_insertion_order(tmp_path: Path) -> None:
    frozen = START
    j = Journal.open(tmp_path, now=lambda: frozen)
    try:
        for i in range(3):
            await _submitted(j, f"same-{i}")
        assert [r.task_id for r in await j.list()] == ["same-2", "same-1", "same-0"]
    finally:
        j.close()


async def test_list_max_limit(journal: Journal) -> None:
    for i in range(MAX_LIST_LIMIT + 5):
        await journal.begin_submission(model="m", family="veo", arguments={"i": i})
    assert len(await journal.list(limit=MAX_LIST_LIMIT)) == MAX_LIST_LIMIT
    assert len(await journal.list()) == 20


@pytest.mark.parametrize("limit", [0, -1, MAX_LIST_LIMIT + 1, True])
async def test_list_limit_bounds(journal: Journal, limit: int) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        await journal.list(limit=limit)
    assert info.value.problems[0].field == "limit"
    assert f"1 to {MAX_LIST_LIMIT}" in str(info.value)


async def test_list_unknown_status(journal: Journal) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        await journal.list(status="done")
    assert info.value.problems[0].field == "status"
    assert "in_progress" in str(info.value)
    assert "submit_unknown" in str(info.value)


# --- Durability and sharing -------------------------------------------------------


async def test_survives_reopen(tmp_path: Path, clock: FakeClock) -> None:
    first = Journal.open(tmp_path, now=clock)
    await _submitted(first, "keep-me")
    await first.record_status("keep-me", status=TaskStatus.SUCCEEDED, url=SIGNED_URL)
    before = await first.get("keep-me")
    first.close()

    second = Journal.open(tmp_path, now=clock)
    try:
        after = await second.get("keep-me")
        assert after is not None
        assert after == before
        assert after.url == SIGNED_URL
    finally:
        second.close()


async def test_pragmas_and_schema_version(journal: Journal) -> None:
    conn = sqlite3.connect(journal.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema_version() == 5
    finally:
        conn.close()
    own = journal._conn
    assert own is not None
    assert own.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert own.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    assert own.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_state_dir_created_private(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "state"
    j = Journal.open(state)
    try:
        assert j.path == state / DB_FILENAME
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE(j.path.stat().st_mode) == 0o600
    finally:
        j.close()


def test_state_dir_unusable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalError, match="GRAVITEX_STATE_DIR"):
        Journal.open(blocker / "state")


async def test_closed_journal_refuses(tmp_path: Path) -> None:
    j = Journal.open(tmp_path)
    j.close()
    j.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        await j.list()


async def test_two_instances_concurrently(tmp_path: Path) -> None:
    a = Journal.open(tmp_path)
    b = Journal.open(tmp_path)
    rounds = 40

    async def worker(j: Journal, name: str, start: int) -> None:
        for i in range(start, rounds, 2):
            task_id = f"{name}-{i}"
            await _submitted(j, task_id)
            await j.record_status(task_id, status=TaskStatus.QUEUED)
            await j.record_status(task_id, status=TaskStatus.QUEUED)
            await j.record_status(task_id, status=TaskStatus.SUCCEEDED, url=SIGNED_URL)

    try:
        async with anyio.create_task_group() as tg:
            for j, name in ((a, "a"), (b, "b")):
                tg.start_soon(worker, j, name, 0)
                tg.start_soon(worker, j, name, 1)
        for name, reader in (("a", b), ("b", a)):  # each sees the other's writes
            for i in range(rounds):
                record = await reader.get(f"{name}-{i}")
                assert record is not None
                assert [e.status.value for e in record.events] == [
                    "submitting",
                    "submitted",
                    "queued",
                    "succeeded",
                ]
        assert len(await a.list(limit=MAX_LIST_LIMIT)) == 2 * rounds
    finally:
        a.close()
        b.close()


_CHILD = """
import sys
from pathlib import Path

import anyio

from gravitex_mcp.domain import TaskStatus
from gravitex_mcp.store.journal import Journal


async def main(state_dir: str, rounds: int) -> None:
    journal = Journal.open(Path(state_dir))
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(rounds):
        local_id = await journal.begin_submission(
            model="sora-2", family="sora", arguments={"i": i}
        )
        await journal.complete_submission(
            local_id, task_id=f"child-{i}", status=TaskStatus.SUBMITTED
        )
        await journal.record_status(f"child-{i}", status=TaskStatus.IN_PROGRESS)
        await journal.record_status(f"child-{i}", status=TaskStatus.IN_PROGRESS)
    journal.close()
    print("done", flush=True)


anyio.run(main, sys.argv[1], int(sys.argv[2]))
"""


@pytest.mark.slow
def test_second_process_concurrently(tmp_path: Path) -> None:
    rounds = 60
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), str(rounds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        journal = Journal.open(tmp_path)

        async def parent() -> None:
            for i in range(rounds):
                await _submitted(journal, f"parent-{i}")
                await journal.record_status(f"parent-{i}", status=TaskStatus.FAILED)

        child.stdin.write("go\n")
        child.stdin.flush()
        try:
            anyio.run(parent)
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            assert out.strip() == "done"

            async def check() -> None:
                for i in range(rounds):
                    mine = await journal.get(f"parent-{i}")
                    theirs = await journal.get(f"child-{i}")
                    assert mine is not None
                    assert theirs is not None
                    assert [e.status.value for e in mine.events] == [
                        "submitting",
                        "submitted",
                        "failed",
                    ]
                    assert [e.status.value for e in theirs.events] == [
                        "submitting",
                        "submitted",
                        "in_progress",
                    ]
                    assert theirs.arguments == {"i": i}

            anyio.run(check)
        finally:
            journal.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


# --- Corruption and schema ------------------------------------------------------------


def _corrupt_files(state: Path) -> list[Path]:
    return sorted(state.glob(f"{DB_FILENAME}.corrupt-*"))


async def test_garbage_file_moved_aside(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = bytes(range(256)) * 64
    (tmp_path / DB_FILENAME).write_bytes(garbage)
    (tmp_path / f"{DB_FILENAME}-wal").write_bytes(b"junk wal")
    with caplog.at_level(logging.WARNING, logger="gravitex_mcp.store.sqlite_open"):
        j = Journal.open(tmp_path, now=clock)
    try:
        aside = tmp_path / f"{DB_FILENAME}.corrupt-20250102T030406Z"
        assert aside.read_bytes() == garbage
        # SQLite drops a WAL without valid frames itself; what is left never
        # sits next to the new journal.
        new_wal = tmp_path / f"{DB_FILENAME}-wal"
        assert not new_wal.exists() or b"junk wal" not in new_wal.read_bytes()
        warnings = [r for r in caplog.records if r.name == "gravitex_mcp.store.sqlite_open"]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert "corrupt" in warnings[0].getMessage()
        assert aside.name in warnings[0].getMessage()
        # the fresh journal works
        await _submitted(j, "fresh")
        assert [r.task_id for r in await j.list()] == ["fresh"]
    finally:
        j.close()


def _zero_page(path: Path, page: int) -> None:
    page_size = 4096
    data = bytearray(path.read_bytes())
    assert len(data) >= page * page_size
    data[(page - 1) * page_size : page * page_size] = bytes(page_size)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["wreck_all_but_header", "zero_index_root"])
async def test_damaged_pages_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    j = Journal.open(tmp_path)
    for i in range(30):
        await _submitted(j, f"t{i}")
    j.close()
    path = tmp_path / DB_FILENAME
    if damage == "wreck_all_but_header":
        # reading a table fails with "database disk image is malformed"
        data = bytearray(path.read_bytes())
        assert len(data) > 3 * 4096
        data[4096:] = b"\xa5" * (len(data) - 4096)
        path.write_bytes(bytes(data))
    else:
        # opening and writing still work; only PRAGMA quick_check notices
        conn = sqlite3.connect(path)
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_tasks_1'"
        ).fetchone()
        conn.close()
        _zero_page(path, root)
    # As a process killed with the journal open leaves it: the open checks the file.
    Path(f"{path}-wal").touch()
    with caplog.at_level(logging.WARNING, logger="gravitex_mcp.store.sqlite_open"):
        fresh = Journal.open(tmp_path)
    try:
        assert len(_corrupt_files(tmp_path)) == 1
        assert "corrupt" in caplog.text
        assert await fresh.list() == []
    finally:
        fresh.close()


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the journal's connections run."""
    seen: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(*args, **kwargs)
        conn.set_trace_callback(seen.append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)  # the module journal.py calls
    return seen


async def test_a_clean_open_does_not_scan_the_file(tmp_path: Path, statements: list[str]) -> None:
    j = Journal.open(tmp_path)
    await _submitted(j, "t-1")
    j.close()
    statements.clear()
    again = Journal.open(tmp_path)
    again.close()
    assert statements, "the trace sees the journal's statements"
    assert not [s for s in statements if "_check" in s.lower()], statements
    # after an unclean close (the -wal file left behind) the open does check
    Path(f"{tmp_path / DB_FILENAME}-wal").touch()
    Journal.open(tmp_path).close()
    assert [s for s in statements if "quick_check" in s.lower()]


async def test_damage_met_in_use_is_checked_at_the_next_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal.open(tmp_path)
    for i in range(30):
        await _submitted(j, f"t{i}")
    j.close()
    path = tmp_path / DB_FILENAME
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xa5" * (len(data) - 4096)
    path.write_bytes(bytes(data))
    damaged = Journal.open(tmp_path)  # a clean close: no scan, the damage is not seen yet
    try:
        with pytest.raises(JournalError, match="malformed"):
            await damaged.list()
    finally:
        damaged.close()
    with caplog.at_level(logging.WARNING, logger="gravitex_mcp.store.sqlite_open"):
        fresh = Journal.open(tmp_path)
    try:
        assert len(_corrupt_files(tmp_path)) == 1
        assert await fresh.list() == []
    finally:
        fresh.close()
    assert not (tmp_path / f"{DB_FILENAME}-check").exists()


def test_a_held_lock_ends_start_up_within_its_bound(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    with lock_held_elsewhere(tmp_path / sqlite_open.LOCK_FILENAME, "flock+pid") as holder:
        start = time.monotonic()
        with pytest.raises(JournalError) as caught:
            Journal.open(tmp_path, lock_timeout=0.3)
        took = time.monotonic() - start
    assert 0.3 <= took < 5
    message = str(caught.value)
    assert str(tmp_path) in message
    assert f"pid {holder.pid}" in message
    # once the holder is gone, start-up goes ahead
    Journal.open(tmp_path, lock_timeout=0.3).close()


def test_move_aside_takes_side_files(tmp_path: Path) -> None:
    path = tmp_path / DB_FILENAME
    for suffix, content in (("", b"db"), ("-wal", b"wal"), ("-shm", b"shm")):
        Path(f"{path}{suffix}").write_bytes(content)
    aside = sqlite_files.move_aside(path, START)
    assert aside.name == f"{DB_FILENAME}.corrupt-20250102T030405Z"
    assert aside.read_bytes() == b"db"
    assert Path(f"{aside}-wal").read_bytes() == b"wal"
    assert Path(f"{aside}-shm").read_bytes() == b"shm"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [aside.name, f"{aside.name}-wal", f"{aside.name}-shm"]
    )


def test_two_corrupt_files_in_the_same_second(tmp_path: Path) -> None:
    frozen = START
    for _ in range(2):
        (tmp_path / DB_FILENAME).write_bytes(b"x" * 1000)
        Journal.open(tmp_path, now=lambda: frozen).close()
    names = [p.name for p in _corrupt_files(tmp_path)]
    assert names == [
        f"{DB_FILENAME}.corrupt-20250102T030405Z",
        f"{DB_FILENAME}.corrupt-20250102T030405Z.1",
    ]


def test_busy_database_is_not_treated_as_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Journal.open(tmp_path).close()
    holder = sqlite3.connect(tmp_path / DB_FILENAME, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.WARNING), pytest.raises(JournalError, match="locked"):
            Journal.open(tmp_path, busy_timeout=0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _corrupt_files(tmp_path) == []
    assert "corrupt" not in caplog.text


def test_newer_schema_refused_and_kept(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(JournalError, match="newer"):
        Journal.open(tmp_path)
    assert _corrupt_files(tmp_path) == []


async def test_migration_hook_applies_new_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = Journal.open(tmp_path)
    await _submitted(old, "before-upgrade")
    old.close()

    def add_note_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE tasks ADD COLUMN note TEXT")

    monkeypatch.setattr(sqlite_schema, "_MIGRATIONS", [*sqlite_schema._MIGRATIONS, add_note_column])
    assert schema_version() == 6
    upgraded = Journal.open(tmp_path)
    try:
        assert await upgraded.get("before-upgrade") is not None
    finally:
        upgraded.close()
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 6
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tasks)")]
        assert "note" in columns
    finally:
        conn.close()


# --- No image data, no signatures --------------------------------------------------------


async def test_data_urls_replaced_everywhere(journal: Journal) -> None:
    pixels = b"\x89PNG\r\n\x1a\n" + b"SECRET-PIXELS" * 500
    jpeg = b"\xff\xd8\xff" + b"OTHER-PIXELS" * 300
    data_url = _png_data_url(pixels)
    jpeg_url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    arguments: dict[str, Any] = {
        "prompt": "data: the new oil, a documentary",
        "image": data_url,
        "reference_images": [
            "https://example.com/ref.png",
            jpeg_url,
            [{"deep": data_url}],
        ],
        "nested": {"inner": ("keep", data_url)},
        "caption": f"see {data_url} here",
        "seed": 7,
        "watermark": False,
    }
    local_id = await journal.begin_submission(model="m", family="seedance", arguments=arguments)
    record = await journal.get(local_id)
    assert record is not None
    png = _digest_of(pixels, "image/png")
    assert record.arguments == {
        "prompt": "data: the new oil, a documentary",
        "image": png,
        "reference_images": [
            "https://example.com/ref.png",
            _digest_of(jpeg, "image/jpeg"),
            [{"deep": png}],
        ],
        "nested": {"inner": ["keep", png]},
        "caption": f"see {png} here",
        "seed": 7,
        "watermark": False,
    }
    journal.close()
    stored = b"".join(
        p.read_bytes() for p in journal.path.parent.iterdir() if p.name.startswith(DB_FILENAME)
    )
    assert b"SECRET-PIXELS" not in stored
    assert base64.b64encode(pixels)[:200] not in stored
    assert base64.b64encode(jpeg)[:200] not in stored


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("data:image/webp;base64,AAEC", _digest_of(b"\x00\x01\x02", "image/webp")),
        ("DATA:IMAGE/PNG;BASE64,AAEC", _digest_of(b"\x00\x01\x02", "image/png")),
        ("data:image/png;base64,AA\nEC", _digest_of(b"\x00\x01\x02", "image/png")),
        ("data:image/png;base64,-_8=", _digest_of(b"\xfb\xff", "image/png")),
        ("data:,hello%20world", _digest_of(b"hello world", "text/plain")),
        (
            "data:image/png;base64,not*base64!",
            _digest_of(b"not*base64!", "image/png")[:-1] + ", not valid base64)",
        ),
        ("https://example.com/a.png", None),
        ("data: a prompt", None),
        ("sha256:abc (image/png, 3 bytes)", None),
    ],
)
def test_data_url_digest(value: str, expected: str | None) -> None:
    assert data_url_digest(value) == expected


def test_redact_data_urls_other_types() -> None:
    assert redact_data_urls({"raw": b"\x00\x01", "path": Path("/a/b"), "n": None}) == {
        "raw": _digest_of(b"\x00\x01", "application/octet-stream"),
        "path": "/a/b",
        "n": None,
    }
    assert redact_data_urls({TaskStatus.QUEUED: TaskStatus.QUEUED}) == {"queued": "queued"}


async def test_public_view_redacts_url(journal: Journal) -> None:
    await _submitted(journal, "t-url")
    await journal.record_status("t-url", status=TaskStatus.SUCCEEDED, url=SIGNED_URL)
    record = await journal.get("t-url")
    assert record is not None
    assert record.url == SIGNED_URL  # the downloads get the whole URL
    public = record.public_dict()
    assert public["url"] == "https://bucket.oss-cn-shanghai.aliyuncs.com/out/video.mp4"
    assert public["url_expires_at"] == "2025-01-04T03:06:40Z"
    for text in (json.dumps(public), record.model_dump_json(), repr(record), str(record)):
        assert "s3cr3tSig" not in text
        assert "Signature" not in text
        assert "OSSAccessKeyId" not in text
    assert json.loads(json.dumps(public))["task_id"] == "t-url"
    listed = (await journal.list())[0].public_dict()
    assert listed["url"] == public["url"]
    # the output schema a tool would publish is generated from the model
    assert "url" in TaskRecord.model_json_schema()["properties"]


SEEN = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (SIGNED_URL, datetime.fromtimestamp(1735960000, UTC)),
        (
            "https://x.volces.com/v.mp4?X-Tos-Algorithm=TOS4-HMAC-SHA256"
            "&X-Tos-Date=20250102T030405Z&X-Tos-Expires=86400&X-Tos-Signature=abc",
            datetime(2025, 1, 3, 3, 4, 5, tzinfo=UTC),
        ),
        (
            "https://s3.example/v.mp4?x-amz-date=20250301T100000Z&x-amz-expires=3600",
            datetime(2025, 3, 1, 11, 0, 0, tzinfo=UTC),
        ),
        (
            "https://storage.googleapis.com/b/v.mp4?X-Goog-Date=20250301T000000Z"
            "&X-Goog-Expires=604800",
            datetime(2025, 3, 8, 0, 0, 0, tzinfo=UTC),
        ),
        ("https://s3.example/v.mp4?X-Amz-Expires=600", SEEN + timedelta(seconds=600)),
        (
            "https://s3.example/v.mp4?X-Amz-Expires=600&X-Amz-Date=yesterday",
            SEEN + timedelta(seconds=600),
        ),
        ("https://h.example/v.mp4", SEEN + timedelta(hours=24)),
        ("https://h.example/v.mp4?Expires=soon", SEEN + timedelta(hours=24)),
        ("https://h.example/v.mp4?Expires=99999999999999999999", SEEN + timedelta(hours=24)),
    ],
)
def test_parse_url_expiry(url: str, expected: datetime) -> None:
    assert parse_url_expiry(url, seen_at=SEEN) == expected


async def test_expiry_kept_for_same_url_and_renewed_for_new(
    journal: Journal, clock: FakeClock
) -> None:
    await _submitted(journal, "t-exp")
    plain = "https://h.example/v.mp4?token=1"
    first = await journal.record_status("t-exp", status=TaskStatus.SUCCEEDED, url=plain)
    assert first is not None
    assert first.url_expires_at == clock.current + timedelta(hours=24)
    clock.current += timedelta(hours=3)
    same = await journal.record_status("t-exp", status=TaskStatus.SUCCEEDED, url=plain)
    assert same is not None
    assert same.url_expires_at == first.url_expires_at
    renewed = await journal.record_status(
        "t-exp", status=TaskStatus.SUCCEEDED, url="https://h.example/v.mp4?token=2"
    )
    assert renewed is not None
    assert renewed.url_expires_at == clock.current + timedelta(hours=24)
    assert renewed.updated_at == clock.current


async def test_naive_clock_is_taken_as_utc(tmp_path: Path) -> None:
    j = Journal.open(tmp_path, now=lambda: datetime(2025, 5, 6, 7, 8, 9))
    try:
        local_id = await j.begin_submission(model="m", family="veo", arguments={})
        record = await j.get(local_id)
        assert record is not None
        assert record.created_at == datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
        assert record.public_dict()["created_at"] == "2025-05-06T07:08:09Z"
    finally:
        j.close()


async def test_many_concurrent_calls_on_one_instance(journal: Journal) -> None:
    async def one(i: int) -> None:
        await _submitted(journal, f"c{i}")
        await journal.record_status(f"c{i}", status=TaskStatus.IN_PROGRESS)

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(one, i)
    records = await journal.list(limit=MAX_LIST_LIMIT)
    assert len(records) == 50
    assert {r.status for r in records} == {JournalStatus.IN_PROGRESS}


async def test_stale_submissions_become_outcome_unknown(journal: Journal, clock: FakeClock) -> None:
    stale = await journal.begin_submission(model="sora-2", family="sora", arguments={})
    clock.current += timedelta(minutes=30)
    fresh = await journal.begin_submission(model="sora-2", family="sora", arguments={})
    done = await _submitted(journal, "t-done")
    assert await journal.expire_stale_submissions(older_than=timedelta(minutes=10)) == 1
    stale_row = await journal.get(stale)
    fresh_row = await journal.get(fresh)
    done_row = await journal.get(done)
    assert stale_row is not None
    assert fresh_row is not None
    assert done_row is not None
    assert stale_row.status is JournalStatus.SUBMIT_UNKNOWN
    assert "a task may exist" in (stale_row.error_message or "")
    assert [e.status for e in stale_row.events][-1] is JournalStatus.SUBMIT_UNKNOWN
    assert fresh_row.status is JournalStatus.SUBMITTING  # another process may still be sending
    assert done_row.status is JournalStatus.SUBMITTED
    # nothing left to mark the second time
    assert await journal.expire_stale_submissions(older_than=timedelta(minutes=10)) == 0


@pytest.mark.slow
def test_a_held_lock_ends_server_start_up_within_its_bound(tmp_path: Path) -> None:
    """The server's own start-up (not only Journal.open) gives up on a held lock,
    saying which folder and which process, within the default bound."""
    state = tmp_path / "state"
    Journal.open(state).close()
    env = clean_env(
        tmp_path, GRAVITEX_STATE_DIR=str(state), GRAVITEX_OUTPUT_DIR=str(tmp_path / "videos")
    )
    with lock_held_elsewhere(state / sqlite_open.LOCK_FILENAME, "flock+pid") as holder:
        start = time.monotonic()
        # run_cli kills it after 60 s: a start-up that waits forever fails here.
        result = run_cli(["--simulate"], env, timeout=60)
        took = time.monotonic() - start
    assert result.returncode != 0
    assert sqlite_open.DEFAULT_LOCK_TIMEOUT <= took < sqlite_open.DEFAULT_LOCK_TIMEOUT + 30
    assert "waiting up to" in result.stderr  # why it waits, said before it gives up
    assert f"The state folder {state} is locked" in result.stderr
    assert f"pid {holder.pid}" in result.stderr
    assert "Traceback" not in result.stderr  # one line that names the fix, not a stack
    assert result.returncode == 1
    assert result.stdout == ""  # stdout is for MCP messages only


async def test_listings_do_not_queue_behind_the_reads_of_waiting_calls(journal: Journal) -> None:
    """Every reading token held (the waits of a few hundred calls read their tasks): a
    listing, a usage and a completion still answer, on the listings' own token."""
    local_id = await journal.begin_submission(model="sora-2", family="sora", arguments={})
    await journal.complete_submission(local_id, task_id="video_1", status=TaskStatus.SUBMITTED)
    release = threading.Event()
    holding = threading.Semaphore(0)

    def held(_: sqlite3.Connection) -> None:
        holding.release()
        release.wait()

    async with anyio.create_task_group() as group:
        for _ in range(sqlite_open.READERS):
            group.start_soon(journal._run_read, held)
        for _ in range(sqlite_open.READERS):  # each reading token is taken
            await anyio.to_thread.run_sync(holding.acquire)
        try:
            with anyio.fail_after(30):  # a bound, not a wait: it answers at once
                listed = await journal.list(limit=5)
                usage = await journal.usage()
                ids = await journal.task_ids_starting_with("video_", limit=5)
        finally:
            release.set()
    assert [r.task_id for r in listed] == ["video_1"]
    assert usage.tasks_today == 1
    assert ids == (["video_1"], 1)
