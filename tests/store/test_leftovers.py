"""Temporary files of dead writers swept at start-up; live ones left alone."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.store.tempfiles import is_temp_name, sweep_temp_files
from tests.conftest import lock_held_elsewhere
from tests.server_harness import connected, make_harness, structured


def test_stale_temp_file_removed_live_one_left(tmp_path: Path) -> None:
    stale = tmp_path / ".clip.0123456789ab.part"
    live = tmp_path / ".other.ba9876543210.part"
    keep = [tmp_path / "clip.mp4", tmp_path / "notes.part", tmp_path / ".hidden"]
    for path in (stale, live, *keep):
        path.write_bytes(b"x" * 10)
    (tmp_path / ".dir.0123.part").mkdir()
    with lock_held_elsewhere(live):
        removed = sweep_temp_files(tmp_path)
        assert removed == [stale]
        assert not stale.exists()
        assert live.exists()
    assert all(path.exists() for path in keep)
    assert (tmp_path / ".dir.0123.part").is_dir()


def test_a_symlink_named_like_a_temp_file_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "precious.mp4"
    target.write_bytes(b"keep me")
    link = tmp_path / ".x.0123456789ab.part"
    link.symlink_to(target)
    assert sweep_temp_files(tmp_path) == []
    assert target.read_bytes() == b"keep me"


def test_temp_name_pattern() -> None:
    assert is_temp_name(".clip.0123456789ab.part")
    assert is_temp_name(".my clip.v2.abcdef.part")
    assert not is_temp_name("clip.0123.part")
    assert not is_temp_name(".clip.part")
    assert not is_temp_name(".clip.0123.part.mp4")


async def test_writer_holds_its_temp_file_locked(tmp_path: Path) -> None:
    async with OutputDir(tmp_path).reserve("clip", default_stem="t") as file:
        await file.write(b"abc")
        temp = file.temp_path
        assert temp is not None
        fd = os.open(temp, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = True
            else:
                held = False
        finally:
            os.close(fd)
        assert held, "the writer must hold its temp file while writing"
        assert sweep_temp_files(tmp_path) == []
        await file.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


async def test_server_start_up_sweeps_the_output_folder(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.settings.output_dir.mkdir(parents=True)
    stale = h.settings.output_dir / ".video_1.00ff00ff00ff.part"
    stale.write_bytes(b"half a video")
    async with connected(h) as client:
        structured(await client.call_tool("list_video_tasks", {}))
    assert not stale.exists()
