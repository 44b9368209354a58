"""join_videos: stream copy or re-encode with PyAV; atomic and no-clobber like every save."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from gravitex_mcp.errors import StorageError
from gravitex_mcp.service import joins as join_module
from gravitex_mcp.service.joins import join_files
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.store.tempfiles import is_temp_name, sweep_temp_files
from gravitex_mcp.video.join import JoinError, write_joined
from gravitex_mcp.video.probe import ProbeError, probe_video
from tests.clips import make_clip
from tests.server_harness import Harness, connected, make_harness, structured, text_of

pytest.importorskip("av", reason="PyAV (av) is a dependency of gravitex-mcp: pip install -e .")


def _out(tmp_path: Path, **kwargs: object) -> OutputDir:
    return OutputDir(tmp_path / "videos", **kwargs)  # type: ignore[arg-type]


async def test_a_4s_and_an_8s_clip_make_a_12s_video_by_stream_copy(tmp_path: Path) -> None:
    four = make_clip(tmp_path / "four.mp4", 4)
    eight = make_clip(tmp_path / "eight.mp4", 8)
    joined = await join_files([four, eight], _out(tmp_path), filename=None, default_stem="j")
    assert joined.plan.method == "stream_copy"
    assert joined.probe.duration_seconds == pytest.approx(12.0, abs=0.1)
    assert joined.probe.has_audio is True
    assert (joined.probe.width, joined.probe.height) == (64, 48)
    assert joined.plan.notes == ()
    # The probe describes the published file, whose name is final and complete.
    assert joined.stored.path is not None
    assert probe_video(joined.stored.path) == joined.probe
    assert joined.stored.path.name == "j.mp4"
    assert joined.stored.size_bytes == joined.stored.path.stat().st_size


async def test_clips_of_different_sizes_are_re_encoded_to_the_first(tmp_path: Path) -> None:
    big = make_clip(tmp_path / "big.mp4", 2, size=(64, 48), fps=10)
    small = make_clip(tmp_path / "small.mp4", 3, size=(32, 24), fps=5)
    joined = await join_files([big, small], _out(tmp_path), filename="mix", default_stem="j")
    assert joined.plan.method == "re_encode"
    assert (joined.probe.width, joined.probe.height) == (64, 48)
    assert joined.probe.fps == pytest.approx(10.0)
    # Audio is cut or padded to each clip's video: the streams end together.
    assert joined.probe.duration_seconds == pytest.approx(5.0, abs=0.1)
    assert joined.probe.has_audio is True
    assert any("64x48" in note for note in joined.plan.notes)
    assert joined.stored.path is not None
    assert joined.stored.path.name == "mix.mp4"

    reverse = await join_files([small, big], _out(tmp_path), filename="mix", default_stem="j")
    assert (reverse.probe.width, reverse.probe.height) == (32, 24)
    assert reverse.probe.fps == pytest.approx(5.0)
    assert reverse.stored.path is not None
    assert reverse.stored.path.name == "mix-1.mp4"  # no clobber: the first is kept
    assert joined.stored.path.is_file()


async def test_re_encoded_audio_is_padded_to_each_clips_video(tmp_path: Path) -> None:
    import av

    short_sound = make_clip(tmp_path / "short.mp4", 2, audio_seconds=1)
    other_size = make_clip(tmp_path / "other.mp4", 2, size=(32, 24))
    joined = await join_files(
        [short_sound, other_size], _out(tmp_path), filename=None, default_stem="j"
    )
    assert joined.plan.method == "re_encode"
    with av.open(str(joined.stored.path)) as container:
        sound = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(sound))
    # 4 s of sound (1 s of it silence) under 4 s of video: the second clip's sound
    # starts with its picture. AAC adds at most a frame of padding.
    assert 4 * 8000 <= samples <= 4 * 8000 + 2 * 1024


async def test_same_size_but_other_codec_or_encoder_setup_is_re_encoded(tmp_path: Path) -> None:
    h264 = make_clip(tmp_path / "h264.mp4", 2)
    mpeg4 = make_clip(tmp_path / "mpeg4.mp4", 2, codec="mpeg4")
    baseline = make_clip(tmp_path / "base.mp4", 2, options={"x264-params": "ref=3"})
    out = _out(tmp_path)
    codecs = await join_files([h264, mpeg4], out, filename=None, default_stem="j")
    setups = await join_files([h264, baseline], out, filename=None, default_stem="j")
    for joined in (codecs, setups):
        assert joined.plan.method == "re_encode"
        assert joined.probe.video_codec == "h264"
        assert joined.probe.duration_seconds == pytest.approx(4.0, abs=0.25)


async def test_audio_is_dropped_with_a_note_when_a_clip_has_none(tmp_path: Path) -> None:
    sound = make_clip(tmp_path / "sound.mp4", 2)
    silent = make_clip(tmp_path / "silent.mp4", 2, audio=False)
    joined = await join_files([sound, silent], _out(tmp_path), filename=None, default_stem="j")
    assert joined.plan.method == "stream_copy"
    assert joined.probe.has_audio is False
    assert joined.probe.duration_seconds == pytest.approx(4.0, abs=0.1)
    assert any("Audio was dropped" in note and "[1]" in note for note in joined.plan.notes)


async def test_a_full_disk_leaves_no_file_under_the_final_name(tmp_path: Path) -> None:
    clips = [make_clip(tmp_path / f"{i}.mp4", 2) for i in range(2)]

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    out = _out(tmp_path, write=full)
    with pytest.raises(StorageError, match="Disk full"):
        await join_files(clips, out, filename="final", default_stem="j")
    assert list((tmp_path / "videos").iterdir()) == []  # no final name, no temp file


async def test_a_file_that_is_not_a_video_is_refused(tmp_path: Path) -> None:
    good = make_clip(tmp_path / "good.mp4", 1)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"<html>not a video</html>")
    with pytest.raises(JoinError, match=r"bad\.mp4"):
        await join_files([good, bad], _out(tmp_path), filename=None, default_stem="j")
    assert list((tmp_path / "videos").iterdir()) == []


# --- the tool, on the simulator -----------------------------------------------------------


async def _finished_task(client: Any, h: Harness, prompt: str) -> str:
    data = structured(
        await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": prompt, "wait_seconds": 40}
        )
    )
    assert data["status"] == "succeeded"
    return str(data["task_id"])


async def test_join_videos_downloads_then_joins_the_simulator_clips(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        first = await _finished_task(client, h, "shot one")
        second = await _finished_task(client, h, "shot two")
        result = await client.call_tool(
            "join_videos",
            {"task_ids": [first, second, first], "filename": "story"},
            progress_callback=h.on_progress,
        )
    data = structured(result)
    sample = probe_video(Path(next(iter(h.settings.output_dir.glob("video_*.mp4")))))
    assert data["method"] == "stream_copy"
    assert data["task_ids"] == [first, second, first]
    assert data["probe"]["duration_seconds"] == pytest.approx(3 * sample.duration_seconds, abs=0.1)
    assert Path(data["path"]).name == "story.mp4"
    assert Path(data["path"]).stat().st_size == data["size_bytes"]
    assert h.sim.calls["download"] == 2  # each clip downloaded once, before the join
    assert any(block.type == "resource_link" for block in result.content)
    messages = [m for _, _, m in h.progress if m]
    joining = [p for p, _, m in h.progress if m and ("clips saved" in m or "joined" in m)]
    assert "2 of 2 clips saved" in messages
    assert "joined 3 of 3 clips" in " ".join(messages)
    assert joining == sorted(set(joining))  # strictly increasing


async def test_join_of_an_unfinished_task_names_it_and_saves_nothing(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        done = await _finished_task(client, h, "shot one")
        pending = structured(
            await client.call_tool(
                "generate_video", {"model": "sora-2", "prompt": "later", "wait_seconds": 0}
            )
        )["task_id"]
        result = await client.call_tool("join_videos", {"task_ids": [done, pending]})
    assert result.is_error
    assert pending in text_of(result)
    assert "check_video_task" in text_of(result)
    assert not list(h.settings.output_dir.glob("joined-*"))


async def test_join_videos_of_a_4s_and_an_8s_simulator_clip_is_12s_by_stream_copy(
    tmp_path: Path,
) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        ids = []
        for seconds in (4, 8):
            made = structured(
                await client.call_tool(
                    "generate_video",
                    {
                        "model": "veo-3.1-generate-preview",
                        "prompt": f"a {seconds} s shot",
                        "duration": seconds,
                        "aspect_ratio": "16:9",
                        "wait_seconds": 60,
                        "download": True,
                    },
                )
            )
            assert made["probe"]["duration_seconds"] == pytest.approx(seconds, abs=0.01)
            ids.append(made["task_id"])
        data = structured(await client.call_tool("join_videos", {"task_ids": ids}))
    assert data["method"] == "stream_copy"
    assert data["probe"]["duration_seconds"] == pytest.approx(12.0, abs=0.1)
    assert probe_video(Path(data["path"])).duration_seconds == pytest.approx(12.0, abs=0.1)


async def test_the_joins_temp_file_is_swept_after_a_crash_and_spared_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = [make_clip(tmp_path / f"{i}.mp4", 1) for i in range(2)]
    real_write = write_joined
    seen: dict[str, object] = {}

    def spying_write(paths: Any, dest: Path, report: Any) -> Any:
        seen["named"] = is_temp_name(dest.name)
        seen["swept"] = sweep_temp_files(dest.parent)  # another server starting up
        return real_write(paths, dest, report)

    monkeypatch.setattr(join_module, "write_joined", spying_write)
    await join_files(clips, _out(tmp_path), filename=None, default_stem="j")
    assert seen == {"named": True, "swept": []}


async def test_a_join_that_cannot_be_read_back_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clips = [make_clip(tmp_path / f"{i}.mp4", 1) for i in range(2)]

    def unreadable(path: Path) -> Any:
        raise ProbeError(f"{path.name} is not a video FFmpeg can read")

    monkeypatch.setattr(join_module, "probe_video", unreadable)
    with pytest.raises(JoinError, match="cannot be read back"):
        await join_files(clips, _out(tmp_path), filename="final", default_stem="j")
    assert list((tmp_path / "videos").iterdir()) == []


async def test_join_videos_does_not_look_again_at_clips_already_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gravitex_mcp.service import looks as seeing

    h = make_harness(tmp_path)
    async with connected(h) as client:
        tasks = [await _finished_task(client, h, f"shot {i}") for i in range(2)]
        for task_id in tasks:
            structured(await client.call_tool("download_video", {"task_id": task_id}))
        looked: list[Path] = []
        real_look_at = seeing.look_at

        def counting_look_at(video: Path, asked: Any, **options: Any) -> Any:
            looked.append(video)
            return real_look_at(video, asked, **options)

        monkeypatch.setattr(seeing, "look_at", counting_look_at)
        structured(await client.call_tool("join_videos", {"task_ids": tasks}))
    # Each clip was probed and given its sheet when it was saved; the join needs their
    # files only.
    assert looked == []


@pytest.mark.parametrize("bad", ["", "   "], ids=["empty", "blank"])
async def test_join_names_a_bad_id_by_its_position_in_plain_words(tmp_path: Path, bad: str) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        done = await _finished_task(client, h, "shot one")
        result = await client.call_tool("join_videos", {"task_ids": [done, bad, "video_nope"]})
    assert result.is_error
    text = text_of(result)
    lines = text.splitlines()
    assert lines[0] == "Nothing was joined: 2 of 3 clips could not be had."
    assert (
        f"- task_ids[1] ({json.dumps(bad)}): must be a non-empty task id, as returned by "
        "generate_video" in lines
    )
    assert any(line.startswith('- task_ids[2] ("video_nope"): Task ') for line in lines)
    assert "Invalid arguments" not in text  # no message nested in another
    assert "task_ids[0]" not in text  # the good clip is not blamed
    assert not list(h.settings.output_dir.glob("joined-*"))
