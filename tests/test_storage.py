"""Safe names, temp file + fsync + no-clobber publish, and clean failure (storage.py)."""

from __future__ import annotations

import array
import errno
import hashlib
import os
import random
import stat
import threading
from pathlib import Path
from typing import Literal

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from gravitex_mcp.errors import StorageError
from gravitex_mcp.storage import (
    DEFAULT_SPAN_BYTES,
    MAX_SPAN_BYTES,
    MAX_STEM_BYTES,
    SPAN_HEADROOM_BYTES,
    OutputDir,
    StoredFile,
    safe_filename,
    span_for,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (relative), for before/after comparisons."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """(parent, out): the output dir lives in ``parent``, next to a bystander file."""
    parent = tmp_path / "area"
    out = parent / "out"
    out.mkdir(parents=True)
    (parent / "bystander.txt").write_text("keep me")
    return parent, out


async def save(
    out: OutputDir | Path, data: bytes, name: str | None, stem: str = "task"
) -> StoredFile:
    target = out if isinstance(out, OutputDir) else OutputDir(out)
    async with target.video(name, default_stem=stem) as file:
        for i in range(0, len(data), 1000):
            await file.write(data[i : i + 1000])
        return await file.commit()


# --- safe_filename ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (None, "task_1.mp4"),
        ("", "task_1.mp4"),
        ("clip", "clip.mp4"),
        ("clip.mp4", "clip.mp4"),
        ("Clip.MP4", "Clip.mp4"),
        ("clip.mov", "clip.mov.mp4"),
        ("../../etc/passwd", "passwd.mp4"),
        ("/abs/x.mp4", "x.mp4"),
        ("..", "task_1.mp4"),
        (".", "task_1.mp4"),
        ("../..", "task_1.mp4"),
        ("a/b\\c", "c.mp4"),
        ("C:\\Users\\me\\video.mp4", "video.mp4"),
        ("dir/", "dir.mp4"),
        ("nul\x00byte", "nulbyte.mp4"),
        ("tab\tand\nnewline", "tabandnewline.mp4"),
        (".hidden", "hidden.mp4"),
        ("...dots...", "dots.mp4"),
        ("  spaced  out  ", "spaced out.mp4"),
        ('what?<is>:this|"*', "what__is__this___.mp4"),
        ("CON", "_CON.mp4"),
        ("lpt1.txt", "_lpt1.txt.mp4"),
        ("\u202eevil\u202dmp4.exe", "evilmp4.exe.mp4"),  # bidi overrides dropped
        ("caf\u0065\u0301", "caf\u00e9.mp4"),  # NFC
        ("\ud800lone", "lone.mp4"),  # lone surrogate dropped
        ("\x00\x01\x02", "task_1.mp4"),
    ],
)
def test_safe_filename(name: str | None, expected: str) -> None:
    assert safe_filename(name, default_stem="task_1") == expected


def test_safe_filename_caps_length_on_character_boundaries() -> None:
    name = safe_filename("é" * 500, default_stem="t")
    assert name.endswith(".mp4")
    assert len(name[:-4].encode()) <= MAX_STEM_BYTES
    assert set(name[:-4]) == {"é"}


def test_safe_filename_bad_default_stem() -> None:
    assert safe_filename(None, default_stem="../..") == "video.mp4"
    assert safe_filename("..", default_stem="a/b") == "b.mp4"


# --- saving -------------------------------------------------------------------------------


async def test_save_writes_hash_and_size(area: tuple[Path, Path]) -> None:
    _, out = area
    data = os.urandom(123_457)
    stored = await save(out, data, "clip")
    assert stored.path == out.resolve() / "clip.mp4"
    assert stored.path.read_bytes() == data
    assert stored.size_bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert tree(out) == {"clip.mp4"}  # no temp file left


async def test_mode_is_0644_under_the_usual_umask(area: tuple[Path, Path]) -> None:
    _, out = area
    old = os.umask(0o022)
    try:
        stored = await save(out, b"x" * 10, "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o644


async def test_temp_file_is_inside_the_output_dir_and_hidden(area: tuple[Path, Path]) -> None:
    _, out = area
    async with OutputDir(out).video("clip", default_stem="t") as file:
        await file.write(b"abc")
        await file.flush()
        temp = file.temp_path
        assert temp is not None
        assert temp.parent == out.resolve()
        assert temp.name.startswith(".clip.")
        assert temp.name.endswith(".part")
        assert temp.read_bytes() == b"abc"
        assert not (out / "clip.mp4").exists()  # nothing under the final name yet
        await file.commit()
    assert tree(out) == {"clip.mp4"}


async def test_output_dir_is_created(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "videos"
    stored = await save(out, b"data", None)
    assert stored.path == out.resolve() / "task.mp4"


async def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="GRAVITEX_OUTPUT_DIR"):
        await save(blocker, b"data", None)
    with pytest.raises(StorageError, match="Could not create the output dir"):
        await save(blocker / "sub", b"data", None)
    assert blocker.read_text() == "x"


# --- never overwrite ----------------------------------------------------------------------


async def test_second_save_gets_a_unique_name(area: tuple[Path, Path]) -> None:
    _, out = area
    first = await save(out, b"first", "clip.mp4")
    second = await save(out, b"second", "clip.mp4")
    third = await save(out, b"third", "clip")
    assert first.path.name == "clip.mp4"
    assert second.path.name == "clip-1.mp4"
    assert third.path.name == "clip-2.mp4"
    assert first.path.read_bytes() == b"first"
    assert second.path.read_bytes() == b"second"


async def test_existing_foreign_file_is_untouched(area: tuple[Path, Path]) -> None:
    _, out = area
    (out / "clip.mp4").write_bytes(b"precious")
    stored = await save(out, b"new", "clip")
    assert stored.path.name == "clip-1.mp4"
    assert (out / "clip.mp4").read_bytes() == b"precious"


async def test_symlink_at_the_final_name_is_not_followed(area: tuple[Path, Path]) -> None:
    parent, out = area
    target = parent / "bystander.txt"
    (out / "clip.mp4").symlink_to(target)
    (out / "dangling.mp4").symlink_to(parent / "does-not-exist")
    before = tree(parent)
    a = await save(out, b"new", "clip")
    b = await save(out, b"new2", "dangling")
    assert a.path.name == "clip-1.mp4"
    assert b.path.name == "dangling-1.mp4"
    assert target.read_text() == "keep me"
    assert not (parent / "does-not-exist").exists()
    assert tree(parent) == before | {"out/clip-1.mp4", "out/dangling-1.mp4"}


async def test_concurrent_saves_of_one_name_get_distinct_files(area: tuple[Path, Path]) -> None:
    _, out = area
    results: list[StoredFile] = []

    async def one(i: int) -> None:
        results.append(await save(out, bytes([i]) * 5000, "same"))

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    names = sorted(r.path.name for r in results)
    assert len(set(names)) == 8
    assert tree(out) == set(names)
    for r in results:
        assert len(set(r.path.read_bytes())) == 1


async def test_without_hard_links_still_no_clobber(area: tuple[Path, Path]) -> None:
    _, out = area
    calls: list[tuple[str, str]] = []

    def no_links(src: str, dst: str) -> None:
        calls.append((src, dst))
        raise OSError(errno.EPERM, "Operation not permitted")

    target = OutputDir(out, link=no_links)
    (out / "clip.mp4").write_bytes(b"precious")
    first = await save(target, b"one", "clip")
    second = await save(target, b"two", "clip")
    assert (out / "clip.mp4").read_bytes() == b"precious"
    assert first.path.read_bytes() == b"one"
    assert second.path.read_bytes() == b"two"
    assert {first.path.name, second.path.name} == {"clip-1.mp4", "clip-2.mp4"}
    assert tree(out) == {"clip.mp4", "clip-1.mp4", "clip-2.mp4"}
    assert len(calls) == 1  # the filesystem's answer is remembered


# --- hostile names: nothing outside the output dir ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "../escape.mp4",
        "/abs/x.mp4",
        "..",
        "a/b\\c",
        "nul\x00name",
        "x" * 5000,
        ".hidden",
        "../.." + "/" * 10 + "..",
        "~/home.mp4",
        "\\\\server\\share\\v.mp4",
    ],
)
async def test_hostile_names_stay_inside(area: tuple[Path, Path], name: str) -> None:
    parent, out = area
    before = tree(parent)
    stored = await save(out, b"video", name)
    assert stored.path.parent == out.resolve()
    assert not stored.path.name.startswith(".")
    assert tree(parent) == before | {f"out/{stored.path.name}"}


# --- failures leave nothing behind ---------------------------------------------------------


async def test_disk_full_removes_the_temp_file(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    written = 0

    def full_disk(fd: int, data: bytes | bytearray | memoryview) -> int:
        nonlocal written
        if written >= 3000:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = os.write(fd, data[:1000])
        written += n
        return n

    target = OutputDir(out, write=full_disk, span_bytes=2000)
    with pytest.raises(StorageError, match=r"Disk full while saving clip\.mp4 to") as info:
        await save(target, os.urandom(20_000), "clip")
    assert str(out.resolve()) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert tree(parent) == before


async def test_disk_full_at_commit(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)

    def full_disk(fd: int, data: bytes | bytearray | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="Disk full"):
        await save(OutputDir(out, write=full_disk), b"small", "clip")  # flushed by commit
    assert tree(parent) == before


async def test_fsync_failure_publishes_nothing(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)

    def bad_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(StorageError, match="Input/output error"):
        await save(OutputDir(out, fsync=bad_fsync), b"data", "clip")
    assert tree(parent) == before


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
async def test_unwritable_dir_is_reported(area: tuple[Path, Path], code: int) -> None:
    parent, out = area
    before = tree(parent)

    def refuse(path: str, flags: int, mode: int) -> int:
        raise OSError(code, os.strerror(code))

    with pytest.raises(StorageError, match="is not writable") as info:
        await save(OutputDir(out, open_file=refuse), b"data", "clip")
    assert "set GRAVITEX_OUTPUT_DIR" in str(info.value)
    assert tree(parent) == before


@pytest.mark.skipif(
    IS_ROOT,
    reason="running as root: chmod 0o555 does not stop root from writing "
    "(the injected-failure test above covers this path)",
)
async def test_read_only_dir_for_real(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    out.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="is not writable"):
            await save(out, b"data", "clip")
    finally:
        out.chmod(0o755)
    assert tree(parent) == before


async def test_exception_inside_the_block_removes_the_temp(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)

    async def broken_stream() -> None:
        async with OutputDir(out).video("clip", default_stem="t") as file:
            await file.write(b"x" * 5000)
            await file.flush()
            raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        await broken_stream()
    assert tree(parent) == before


async def test_leaving_without_commit_removes_the_temp(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    async with OutputDir(out).video("clip", default_stem="t") as file:
        await file.write(b"x" * 5000)
        await file.flush()
    assert tree(parent) == before


async def test_cancellation_removes_the_temp(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    reached = False
    with anyio.CancelScope() as scope:
        async with OutputDir(out, span_bytes=100).video("clip", default_stem="t") as file:
            await file.write(b"x" * 500)
            scope.cancel()
            await file.write(b"y" * 500)  # a checkpoint: cancelled here
            reached = True
    assert scope.cancelled_caught
    assert not reached
    assert tree(parent) == before


async def test_write_after_close_is_refused(area: tuple[Path, Path]) -> None:
    _, out = area
    async with OutputDir(out).video("clip", default_stem="t") as file:
        await file.commit()
    with pytest.raises(StorageError, match="not open"):
        file.buffer(b"late")


# --- the writer thread ------------------------------------------------------------------


async def test_short_writes_are_finished_in_order(area: tuple[Path, Path]) -> None:
    _, out = area
    calls: list[int] = []

    def short_write(fd: int, data: bytes | bytearray | memoryview) -> int:
        calls.append(len(data))
        return os.write(fd, data[:10])  # far less than asked

    target = OutputDir(out, write=short_write, span_bytes=4096)
    data = os.urandom(50_000)
    stored = await save(target, data, "short")
    assert stored.path.read_bytes() == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert max(calls) > 10  # spans of many bytes were asked for, and finished


async def test_spans_start_at_the_configured_size(area: tuple[Path, Path]) -> None:
    _, out = area
    async with OutputDir(out).video("b", default_stem="t") as file:
        assert file.span_bytes == DEFAULT_SPAN_BYTES == 512 << 10
    async with OutputDir(out, span_bytes=1000, helpers=None).video("b", default_stem="t") as file:
        assert file.span_bytes == 1000


def test_span_for_keeps_a_download_under_a_tenth_of_the_video() -> None:
    mib = 1 << 20

    def span(size: int) -> int:
        return span_for(size, smallest=DEFAULT_SPAN_BYTES, largest=MAX_SPAN_BYTES)

    assert span(0) == span(16 * mib) == span(19 * mib) == DEFAULT_SPAN_BYTES
    assert span(20 * mib) == mib
    assert span(32 * mib) == 2 * mib
    assert span(64 * mib) == span(256 * mib) == span(1 << 40) == MAX_SPAN_BYTES == 4 * mib
    for size in range(15 * mib, 300 * mib, mib // 4):
        assert span(size) + SPAN_HEADROOM_BYTES <= size // 10
    assert span_for(1 << 40, smallest=1000, largest=7999) == 4000  # doubles, never past


async def test_the_span_grows_with_the_announced_size(area: tuple[Path, Path]) -> None:
    _, out = area
    data = os.urandom(300_000)
    target = OutputDir(out, span_bytes=1000, max_span_bytes=16_000, helpers=None)
    async with target.video("big", default_stem="t") as file:
        assert file.span_bytes == 1000
        file.expect(1 << 30)  # a 1 GiB video: room for the largest span
        for i in range(0, len(data), 5000):
            await file.write(data[i : i + 5000])
        stored = await file.commit()
        assert file.span_bytes == 16_000
    assert stored.path.read_bytes() == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


async def test_the_span_grows_as_the_file_does(area: tuple[Path, Path]) -> None:
    _, out = area
    data = os.urandom(12 << 20)  # a tenth of it leaves room for spans above 4 KiB
    target = OutputDir(out, span_bytes=4096, max_span_bytes=65536, helpers=None)
    async with target.video("grows", default_stem="t") as file:
        for i in range(0, len(data), 1 << 16):
            await file.write(data[i : i + (1 << 16)])
        stored = await file.commit()
        assert file.span_bytes == 65536
    assert stored.size_bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("first", [0, 3], ids=["at once", "after a short write"])
async def test_a_write_that_makes_no_progress_is_an_error(
    area: tuple[Path, Path], first: int
) -> None:
    parent, out = area
    before = tree(parent)
    calls: list[int] = []

    def stuck(fd: int, data: bytes | bytearray | memoryview) -> int:
        calls.append(len(data))
        return first if len(calls) == 1 else 0

    with pytest.raises(StorageError, match="no progress"):
        await save(OutputDir(out, write=stuck), b"data", "clip")
    assert tree(parent) == before
    assert len(calls) == (1 if first == 0 else 2)


async def test_many_small_spans_and_a_short_lag(area: tuple[Path, Path]) -> None:
    _, out = area
    data = os.urandom(300_000)
    stored = await save(
        OutputDir(out, span_bytes=1500, max_hash_lag=2000, helpers=None), data, "order"
    )
    assert stored.path.read_bytes() == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("span", "lag", "size"), [(7, 0, 5000), (4096, 10_000, 200_000), (65536, 1 << 20, 200_000)]
)
async def test_any_piece_sizes_spans_and_lags(
    area: tuple[Path, Path], span: int, lag: int, size: int
) -> None:
    _, out = area
    rng = random.Random(span)
    data = os.urandom(size)
    target = OutputDir(out, span_bytes=span, max_hash_lag=lag, helpers=None)
    async with target.video("pieces", default_stem="t") as file:
        at = 0
        while at < len(data):
            step = rng.choice([1, 3, 100, 1000, 5000, 70_000])
            await file.write(data[at : at + step])
            at += step
        stored = await file.commit()
    assert stored.path.read_bytes() == data
    assert stored.size_bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


class SlowDisk:
    """A clock and a ``write`` for which the first write takes a (fake) second."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.now = 0.0
        self.calls: list[int] = []
        self.threads: list[str] = []
        self.gate = gate
        self.timed_out: list[bool] = []

    def clock(self) -> float:
        return self.now

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        self.calls.append(len(data))
        self.threads.append(threading.current_thread().name)
        if len(self.calls) == 1:
            self.now += 1.0  # the first write looks slow
        elif self.gate is not None:
            # Stuck until the test lets go; if the event loop were blocked, only the
            # time-out would.
            self.timed_out.append(not self.gate.wait(timeout=30))
        return os.write(fd, data)


async def test_a_slow_write_sends_the_rest_to_a_worker_thread(area: tuple[Path, Path]) -> None:
    _, out = area
    disk = SlowDisk()
    words = array.array("I", range(1000))  # a memoryview of it counts 4-byte items
    expected = b"a" * 10 + words.tobytes() + b"b" * 5000
    target = OutputDir(out, write=disk.write, clock=disk.clock)
    async with target.video("slow", default_stem="t") as file:
        file.buffer(b"a" * 10)  # written at once, but slowly
        file.buffer(memoryview(words))  # kept for a worker thread
        large = bytearray(b"b" * 5000)
        file.buffer(large)  # kept as a copy
        backlogged = [file.backlogged]
        large[:] = b"z" * 5000  # the caller reuses its buffer
        await file.flush_if_full()
        backlogged.append(file.backlogged)
        stored = await file.commit()
    assert backlogged == [True, False]
    assert stored.path.read_bytes() == expected
    assert stored.sha256 == hashlib.sha256(expected).hexdigest()
    main = threading.current_thread().name
    assert disk.threads[0] == main
    assert all(name != main for name in disk.threads[1:])


async def test_the_loop_waits_for_a_slow_disk_without_blocking(area: tuple[Path, Path]) -> None:
    _, out = area
    disk = SlowDisk(gate=threading.Event())
    calls_when_released: list[int] = []

    async def ticker() -> None:
        while len(disk.calls) < 2:  # until a worker thread is stuck in a write
            await anyio.lowlevel.checkpoint()
        for _ in range(50):  # meanwhile the event loop stays free
            await anyio.lowlevel.checkpoint()
        calls_when_released.append(len(disk.calls))
        assert disk.gate is not None
        disk.gate.set()

    data = os.urandom(50_000)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        target = OutputDir(out, write=disk.write, clock=disk.clock)
        stored = await save(target, data, "slow")
    assert calls_when_released == [2]  # the second write was stuck all along
    assert not any(disk.timed_out)
    assert stored.path.read_bytes() == data


@pytest.mark.parametrize("helpers", ["shared", None], ids=["helper", "thread"])
async def test_the_hash_is_read_back_from_the_file(
    area: tuple[Path, Path], helpers: Literal["shared"] | None
) -> None:
    parent, out = area
    before = tree(parent)

    async def shrink_before_the_read_back() -> None:
        async with OutputDir(out, helpers=helpers).video("shrunk", default_stem="t") as file:
            await file.write(b"x" * 5000)  # less than a span: not read back yet
            assert file.temp_path is not None
            os.truncate(file.temp_path, 1000)  # something else cuts the temp file
            await file.commit()

    with pytest.raises(StorageError, match="shrank"):
        await shrink_before_the_read_back()
    assert tree(parent) == before


async def test_cancelled_while_opening_leaves_nothing(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    token = anyio.lowlevel.current_token()
    reached = False

    with anyio.CancelScope() as scope:

        def open_then_cancel(path: str, flags: int, mode: int) -> int:
            fd = os.open(path, flags, mode)
            anyio.from_thread.run_sync(scope.cancel, token=token)  # while the file is new
            return fd

        async with OutputDir(out, open_file=open_then_cancel).video("c", default_stem="t") as f:
            await f.write(b"data")  # the first checkpoint: cancelled here at the latest
            await anyio.lowlevel.checkpoint()
            reached = True
    assert scope.cancelled_caught
    assert not reached
    assert tree(parent) == before | {"out"}
    assert not [t for t in threading.enumerate() if t.name.startswith("gravitex-writer")]


async def test_writer_failure_surfaces_on_the_next_write(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)

    def broken(fd: int, data: bytes | bytearray | memoryview) -> int:
        raise OSError(errno.EIO, "Input/output error")

    async def stream() -> None:
        async with OutputDir(out, write=broken, span_bytes=1000).video("x", default_stem="t") as f:
            for _ in range(1000):  # bounded: the error arrives after the first batch
                await f.write(b"z" * 1000)
                await anyio.lowlevel.checkpoint()  # a real stream yields between chunks
            await f.commit()

    with pytest.raises(StorageError, match="Input/output error"):
        await stream()
    assert tree(parent) == before


async def test_without_early_writeback(area: tuple[Path, Path]) -> None:
    _, out = area
    data = os.urandom(100_000)
    stored = await save(OutputDir(out, early_writeback=False, helpers=None), data, "plain")
    assert stored.path.read_bytes() == data


async def test_output_dir_swapped_for_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    elsewhere = tmp_path / "elsewhere"
    real.mkdir()
    elsewhere.mkdir()

    async def swap_then_commit() -> None:
        async with OutputDir(real).video("clip", default_stem="t") as file:
            await file.write(b"data")
            await file.flush()
            temp = file.temp_path
            assert temp is not None
            parked = tmp_path / "parked"
            real.rename(parked)
            real.symlink_to(elsewhere)  # the same path now leads elsewhere
            try:
                await file.commit()
            finally:
                real.unlink()
                parked.rename(real)

    with pytest.raises(StorageError, match="changed while"):
        await swap_then_commit()
    assert list(elsewhere.iterdir()) == []
    assert list(real.iterdir()) == []
