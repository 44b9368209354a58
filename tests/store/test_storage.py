"""Safe names, temp file + fsync + no-clobber publish, and clean failure (storage.py)."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import stat
import threading
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest

from gravitex_mcp.errors import StorageError
from gravitex_mcp.store.storage import (
    MAX_STEM_BYTES,
    LocalFile,
    OutputDir,
    safe_filename,
)
from gravitex_mcp.store.tempfiles import TEMP_SUFFIX

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
) -> LocalFile:
    target = out if isinstance(out, OutputDir) else OutputDir(out)
    async with target.reserve(name, default_stem=stem) as file:
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
    async with OutputDir(out).reserve("clip", default_stem="t") as file:
        await file.write(b"abc")
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
    results: list[LocalFile] = []

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

    target = OutputDir(out, write=full_disk)
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
        async with OutputDir(out).reserve("clip", default_stem="t") as file:
            await file.write(b"x" * 5000)
            raise RuntimeError("stream broke")

    with pytest.raises(RuntimeError, match="stream broke"):
        await broken_stream()
    assert tree(parent) == before


async def test_leaving_without_commit_removes_the_temp(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    async with OutputDir(out).reserve("clip", default_stem="t") as file:
        await file.write(b"x" * 5000)
    assert tree(parent) == before


async def test_cancellation_removes_the_temp(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    reached = False
    with anyio.CancelScope() as scope:
        async with OutputDir(out).reserve("clip", default_stem="t") as file:
            await file.write(b"x" * 500)
            scope.cancel()
            await file.write(b"y" * 500)  # a checkpoint: cancelled here
            reached = True
    assert scope.cancelled_caught
    assert not reached
    assert tree(parent) == before


async def test_write_after_close_is_refused(area: tuple[Path, Path]) -> None:
    _, out = area
    async with OutputDir(out).reserve("clip", default_stem="t") as file:
        await file.commit()
    with pytest.raises(StorageError, match="not open"):
        file.put(b"late")


# --- the writer thread ------------------------------------------------------------------


async def test_short_writes_are_finished_in_order(area: tuple[Path, Path]) -> None:
    _, out = area
    calls: list[int] = []

    def short_write(fd: int, data: bytes | bytearray | memoryview) -> int:
        calls.append(len(data))
        return os.write(fd, data[:10])  # far less than asked

    target = OutputDir(out, write=short_write)
    data = os.urandom(50_000)
    stored = await save(target, data, "short")
    assert stored.path.read_bytes() == data
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert max(calls) > 10  # spans of many bytes were asked for, and finished


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


@pytest.mark.parametrize(("seed", "size"), [(7, 5000), (4096, 200_000), (65536, 200_000)])
async def test_any_piece_sizes(area: tuple[Path, Path], seed: int, size: int) -> None:
    _, out = area
    rng = random.Random(seed)
    data = os.urandom(size)
    target = OutputDir(out)
    async with target.reserve("pieces", default_stem="t") as file:
        at = 0
        while at < len(data):
            step = rng.choice([1, 3, 100, 1000, 5000, 70_000])
            await file.write(data[at : at + step])
            at += step
        stored = await file.commit()
    assert stored.path.read_bytes() == data
    assert stored.size_bytes == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_temp_file_changed_behind_the_writer_is_refused(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)

    async def shrink_before_the_read_back() -> None:
        async with OutputDir(out).reserve("shrunk", default_stem="t") as file:
            await file.write(b"x" * 5000)
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

        async with OutputDir(out, open_file=open_then_cancel).reserve("c", default_stem="t") as f:
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
        async with OutputDir(out, write=broken).reserve("x", default_stem="t") as f:
            for _ in range(1000):  # bounded: the error arrives after the first batch
                await f.write(b"z" * 1000)
                await anyio.lowlevel.checkpoint()  # a real stream yields between chunks
            await f.commit()

    with pytest.raises(StorageError, match="Input/output error"):
        await stream()
    assert tree(parent) == before


async def test_output_dir_swapped_for_a_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    elsewhere = tmp_path / "elsewhere"
    real.mkdir()
    elsewhere.mkdir()

    async def swap_then_commit() -> None:
        async with OutputDir(real).reserve("clip", default_stem="t") as file:
            await file.write(b"data")
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


async def test_output_dir_swapped_for_a_symlink_after_start_up_is_refused(tmp_path: Path) -> None:
    """The folder is held from its first use: a later swap is refused, not followed."""
    real = tmp_path / "real"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = OutputDir(real)
    out.ensure()  # start-up
    parked = tmp_path / "parked"
    real.rename(parked)
    real.symlink_to(elsewhere)  # the configured path now leads elsewhere
    with pytest.raises(StorageError, match="changed while this server was running") as info:
        await save(out, b"data", "clip")
    assert str(elsewhere) in str(info.value)
    assert list(elsewhere.iterdir()) == []
    assert list(parked.iterdir()) == []


async def test_output_dir_removed_after_start_up_is_made_again(tmp_path: Path) -> None:
    real = tmp_path / "real"
    out = OutputDir(real)
    out.ensure()
    real.rmdir()
    stored = await save(out, b"data", "clip")
    assert stored.path == real.resolve() / "clip.mp4"


@pytest.mark.skipif(os.name == "nt", reason="fcntl.flock is POSIX only")
async def test_the_temp_file_is_locked_while_it_is_written(area: tuple[Path, Path]) -> None:
    import fcntl

    _, out = area
    async with OutputDir(out).reserve("clip", default_stem="t") as file:
        await file.write(b"abc")
        temp = file.temp_path
        assert temp is not None
        assert temp.name.endswith(TEMP_SUFFIX)
        assert TEMP_SUFFIX == ".part"
        fd = os.open(temp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # another open file description
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        await file.commit()


async def test_output_dir_made_again_elsewhere_is_refused(tmp_path: Path) -> None:
    """A removed folder is made again only where it was: a swapped parent is refused."""
    parent = tmp_path / "parent"
    real = parent / "videos"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = OutputDir(real)
    out.ensure()
    real.rmdir()
    parent.rename(tmp_path / "parked")
    parent.symlink_to(elsewhere)  # the folder's parent now leads elsewhere
    with pytest.raises(StorageError):
        await save(out, b"data", "clip")
    assert not any(p.is_file() for p in elsewhere.rglob("*"))
