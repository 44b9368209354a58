"""Issue 15: what is on disk is checked, not trusted; one frame, one file.

A saved video is reused only once it is verified (its identity as saved, or its bytes
hashed again); a changed one is downloaded again or the reason is said. Nothing outside
the output folder is read through a swapped path, a media link binds the file's identity,
and the same frame asked for at once by several calls is one file.
"""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent

from gravitex_mcp.server.media import loopback_app
from gravitex_mcp.store.media_links import MediaLinks, load_or_create_key
from gravitex_mcp.video import seeing
from gravitex_mcp.video import work as video_work
from gravitex_mcp.video.frames import encode_png
from gravitex_mcp.video.work import VideoWork
from tests.server_harness import Harness, connected, make_harness, structured, text_of

VEO = "veo-3.1-generate-preview"


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def generate(client: Client, **arguments: Any) -> dict[str, Any]:
    given = {"model": VEO, "prompt": "a lighthouse", "wait_seconds": 60, "download": True}
    return structured(await client.call_tool("generate_video", {**given, **arguments}))


def overwrite_same_size(path: Path) -> None:
    """Other bytes of the same size, written in place (same inode, same name)."""
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.write(bytes(range(256)) * (size // 256) + b"\0" * (size % 256))


async def test_a_same_size_overwrite_is_downloaded_again_and_then_joins(h: Harness) -> None:
    async with connected(h) as client:
        first = await generate(client, duration=4)
        second = await generate(client, duration=4, prompt="a harbour")
        damaged = Path(first["path"])
        overwrite_same_size(damaged)
        checked = structured(
            await client.call_tool("check_video_task", {"task_id": first["task_id"]})
        )
        assert "already saved" not in checked["next_step"]
        assert str(damaged) in checked["next_step"]
        assert "download_video" in checked["next_step"]
        again = await client.call_tool("download_video", {"task_id": first["task_id"]})
        data = structured(again)
        joined = await client.call_tool(
            "join_videos", {"task_ids": [first["task_id"], second["task_id"]]}
        )
    # Not "already saved" with the old digest: a fresh copy beside the changed file.
    assert data["reused"] is False
    assert data["path"] != str(damaged)
    assert Path(data["path"]).parent == damaged.parent
    assert data["sha256"] == first["sha256"]
    assert "changed" in text_of(again)
    assert str(damaged) in text_of(again)
    assert damaged.read_bytes()[:4] == bytes(range(4)), "the changed file is left alone"
    assert not joined.is_error, text_of(joined)
    assert h.sim.calls["download"] + h.sim.calls["file"] >= 3


async def test_a_changed_video_that_cannot_be_fetched_again_says_what_happened(
    h: Harness,
) -> None:
    async with connected(h) as client:
        first = await generate(client, duration=4)
        damaged = Path(first["path"])
        overwrite_same_size(damaged)
        del h.sim.tasks[first["task_id"]]  # the upstream no longer knows the task
        frames = await client.call_tool("extract_frames", {"task_id": first["task_id"]})
        download = await client.call_tool("download_video", {"task_id": first["task_id"]})
    for result in (frames, download):
        assert result.is_error
        text = text_of(result)
        assert str(damaged) in text, text
        assert "changed" in text, text
        assert "Error executing tool" not in text


async def test_an_unchanged_video_is_reused_without_hashing_it_again(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connected(h) as client:
        first = await generate(client, duration=4)
        from gravitex_mcp.store import ondisk  # new with the fix: imported here, not for every test

        hashed: list[int] = []
        real = ondisk.sha256_of_fd

        def counted(fd: int) -> str:
            hashed.append(fd)
            return real(fd)

        monkeypatch.setattr(ondisk, "sha256_of_fd", counted)
        again = structured(await client.call_tool("download_video", {"task_id": first["task_id"]}))
        assert again["reused"] is True
        assert not hashed, "the identity matched: no re-hash"
        os.utime(first["path"])  # touched: identity differs, bytes the same
        touched = structured(
            await client.call_tool("download_video", {"task_id": first["task_id"]})
        )
        third = structured(await client.call_tool("download_video", {"task_id": first["task_id"]}))
    assert touched["reused"] is True
    assert touched["path"] == first["path"]
    assert third["reused"] is True
    assert len(hashed) == 1, "hashed once, then its new identity was journalled"


def padded_to(data: bytes, size: int) -> bytes:
    """``data`` (an mp4) grown to ``size`` bytes by a trailing ``free`` box."""
    gap = size - len(data)
    assert gap >= 8, "the stand-in must be smaller than the saved video"
    return data + gap.to_bytes(4, "big") + b"free" + bytes(gap - 8)


@pytest.mark.parametrize("tool", ["extract_frames", "join_videos"])
async def test_a_saved_path_swapped_for_a_symlink_reads_nothing_outside(
    h: Harness, tmp_path: Path, tool: str
) -> None:
    async with connected(h) as client:
        first = await generate(client, duration=8, aspect_ratio="16:9")
        second = await generate(client, duration=4, aspect_ratio="16:9", prompt="a harbour")
        # A real video outside the output folder, of another shape (9:16) and length,
        # padded to the saved one's size: reading it through the swapped path would
        # show in the frames' size or the join's length.
        other = await generate(client, duration=4, aspect_ratio="9:16", prompt="other")
        saved = Path(first["path"])
        secret = tmp_path / "outside.mp4"
        secret.write_bytes(padded_to(Path(other["path"]).read_bytes(), saved.stat().st_size))
        saved.unlink()
        saved.symlink_to(secret)
        if tool == "extract_frames":
            result = await client.call_tool(
                "extract_frames", {"task_id": first["task_id"], "at": ["first"]}
            )
        else:
            result = await client.call_tool(
                "join_videos", {"task_ids": [first["task_id"], second["task_id"]]}
            )
    assert not result.is_error, text_of(result)
    data = structured(result)
    assert saved.is_symlink(), "the swapped path is left as found"
    if tool == "extract_frames":
        assert data["video_path"] != str(saved)
        [frame] = data["frames"]
        assert (frame["width"], frame["height"]) == (284, 160)
    else:
        assert data["probe"]["duration_seconds"] == pytest.approx(12.0, abs=0.3)
        assert (data["probe"]["width"], data["probe"]["height"]) == (284, 160)


async def test_a_symlink_swap_that_cannot_be_fetched_again_is_refused(
    h: Harness, tmp_path: Path
) -> None:
    async with connected(h) as client:
        first = await generate(client, duration=4)
        secret = tmp_path / "outside.mp4"
        secret.write_bytes(Path(first["path"]).read_bytes())  # even the very same bytes
        saved = Path(first["path"])
        saved.unlink()
        saved.symlink_to(secret)
        del h.sim.tasks[first["task_id"]]
        result = await client.call_tool("extract_frames", {"task_id": first["task_id"]})
    assert result.is_error
    assert str(saved) in text_of(result)
    assert list(h.settings.output_dir.glob("*.png")) == [], "nothing was decoded from outside"


async def test_a_contact_sheet_swapped_for_a_symlink_out_is_not_shown(
    h: Harness, tmp_path: Path
) -> None:
    async with connected(h) as client:
        first = await generate(client, duration=4)
        other = await generate(client, duration=8, aspect_ratio="9:16", prompt="other")
        sheet = Path(first["preview"]["path"])
        secret = tmp_path / "outside.jpg"
        secret.write_bytes(Path(other["preview"]["path"]).read_bytes())
        sheet.unlink()
        sheet.symlink_to(secret)
        again = await client.call_tool("download_video", {"task_id": first["task_id"]})
    data = structured(again)
    assert data["preview"]["path"] != str(sheet)
    shown = [base64.b64decode(b.data) for b in again.content if isinstance(b, ImageContent)]
    assert shown, "the sheet is still shown, made again"
    assert secret.read_bytes() not in shown


# --- media links ------------------------------------------------------------------------


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "media-out"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(b"A" * 4096)
    return folder


@pytest.fixture
async def media(tmp_path: Path, out: Path) -> AsyncIterator[tuple[MediaLinks, httpx2.AsyncClient]]:
    links = MediaLinks(key=load_or_create_key(tmp_path / "state"), output_dir=out)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=loopback_app(links, 8765)),
        base_url="http://127.0.0.1:8765",
    ) as client:
        yield links, client


@pytest.mark.parametrize("how", ["in_place", "renamed_over"])
async def test_a_link_to_a_file_replaced_with_its_mtime_set_back_is_404(
    media: tuple[MediaLinks, httpx2.AsyncClient], out: Path, how: str
) -> None:
    links, client = media
    clip = out / "clip.mp4"
    route = links.path_for(clip)
    assert route is not None
    assert (await client.get(route)).status_code == 200
    before = clip.stat()
    if how == "in_place":
        clip.write_bytes(b"B" * 4096)
    else:
        (out / "other").write_bytes(b"B" * 4096)
        os.replace(out / "other", clip)
    os.utime(clip, ns=(before.st_atime_ns, before.st_mtime_ns))  # set back
    assert (clip.stat().st_size, clip.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    r = await client.get(route)
    assert r.status_code == 404
    assert b"B" * 16 not in r.content


async def test_a_link_to_a_name_swapped_for_a_symlink_inside_the_folder_is_404(
    media: tuple[MediaLinks, httpx2.AsyncClient], out: Path
) -> None:
    links, client = media
    clip = out / "clip.mp4"
    route = links.path_for(clip)
    assert route is not None
    before = clip.stat()
    # Other bytes of the same size and mtime, reached through a symlink under the name.
    (out / "real.mp4").write_bytes(b"C" * before.st_size)
    os.utime(out / "real.mp4", ns=(before.st_atime_ns, before.st_mtime_ns))
    clip.unlink()
    clip.symlink_to(out / "real.mp4")
    r = await client.get(route)
    assert r.status_code == 404
    assert b"C" * 16 not in r.content


# --- one frame, one file -----------------------------------------------------------------


async def test_concurrent_extract_frames_of_one_frame_make_one_file(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    callers = 4
    # Calls go on to save in pairs, each having encoded its frame: the moment two calls
    # both find the name free (a real sleep would only make it likely). Pairs, not all
    # four at once, so a bound of two or more on concurrent decodes still lets it run.
    gate = threading.Barrier(2, timeout=60)
    # Two decodes at once, whatever the machine's default (one core is left to the loop).
    monkeypatch.setattr(video_work, "_shared", VideoWork(2))

    def encode_together(frame: Any, **kwargs: Any) -> tuple[bytes, int, int]:
        done = encode_png(frame, **kwargs)
        if not kwargs:
            gate.wait()
        return done

    async with connected(h) as client:
        data = await generate(client, duration=4)
        monkeypatch.setattr(seeing, "encode_png", encode_together)
        results: list[CallToolResult] = []

        async def one() -> None:
            results.append(
                await client.call_tool("extract_frames", {"task_id": data["task_id"], "at": [1]})
            )

        async with anyio.create_task_group() as group:
            for _ in range(callers):
                group.start_soon(one)
    paths = {structured(r)["frames"][0]["path"] for r in results}
    assert len(paths) == 1
    folder = h.settings.output_dir
    assert [p.name for p in folder.glob("*.png")] == [Path(paths.pop()).name]
    assert [p for p in folder.iterdir() if p.name.startswith(".")] == []
