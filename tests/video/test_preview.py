"""probe / preview / frames / stills / seeing as plain functions, on real clips."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gravitex_mcp.catalog.models import derived_size, get_model
from gravitex_mcp.errors import StorageError
from gravitex_mcp.images import JPEG, image_dimensions, sniff_image_type
from gravitex_mcp.results import Probe
from gravitex_mcp.service.looks import extract, look_at, sheet_path
from gravitex_mcp.simulator.clips import ClipShape, render_clip
from gravitex_mcp.store import stills as stills_module
from gravitex_mcp.store.stills import save_new
from gravitex_mcp.store.tempfiles import is_temp_name, link_or_reserve, sweep_temp_files
from gravitex_mcp.video.frames import fit_within, frames_at, seconds_of
from gravitex_mcp.video.preview import MAX_SHEET_BYTES, MAX_SHEET_SIDE, contact_sheet, sample_times
from gravitex_mcp.video.probe import ProbeError, probe_video
from gravitex_mcp.video.seeing import mismatch_notes


def clip(tmp_path: Path, seconds: float, width: int, height: int, fps: int = 8) -> Path:
    path = tmp_path / f"clip-{seconds:g}-{width}x{height}.mp4"
    path.write_bytes(render_clip(ClipShape(seconds=seconds, width=width, height=height, fps=fps)))
    return path


def probe(duration: float = 8.0, width: int = 1280, height: int = 720) -> Probe:
    return Probe(
        duration_seconds=duration,
        width=width,
        height=height,
        fps=24.0,
        video_codec="h264",
        has_audio=False,
    )


def test_probe_reads_duration_size_rate_codec(tmp_path: Path) -> None:
    found = probe_video(clip(tmp_path, 6, 160, 284, fps=12))
    assert found == Probe(
        duration_seconds=6.0, width=160, height=284, fps=12.0, video_codec="h264", has_audio=False
    )


def test_probe_sees_the_audio_of_the_shipped_sample() -> None:
    sample = Path(__file__).resolve().parents[2] / "gravitex_mcp/simulator/assets/sample.mp4"
    found = probe_video(sample)
    assert found.has_audio is True
    assert (found.width, found.height) == (320, 180)


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100, b"\x00\x00\x00\x18ftypmp42"])
def test_an_unreadable_file_is_a_probe_error_and_a_note(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(ProbeError, match=r"bad\.mp4"):
        probe_video(bad)
    seen = look_at(bad, {"duration": 8})
    assert seen.probe is None
    assert seen.preview is None
    assert len(seen.notes) == 1
    assert seen.notes[0].startswith("Could not look at the saved video: ")
    assert sorted(os.listdir(tmp_path)) == ["bad.mp4"]  # no sheet, no temp file left


def test_a_1080p_sheet_fits_the_limits(tmp_path: Path) -> None:
    video = clip(tmp_path, 3, 1920, 1080, fps=4)
    sheet = contact_sheet(video, 3.0)
    assert len(sheet.jpeg) <= MAX_SHEET_BYTES
    assert max(sheet.width, sheet.height) <= MAX_SHEET_SIDE
    assert sniff_image_type(sheet.jpeg) == JPEG
    assert image_dimensions(sheet.jpeg) == (sheet.width, sheet.height)
    # 6 tiles, 3 columns x 2 rows, each 16:9
    assert sheet.width * 9 * 2 == pytest.approx(sheet.height * 16 * 3, rel=0.02)
    assert sheet.at_seconds == [round(t, 3) for t in sample_times(3.0, 6)]


def test_tiles_show_different_frames(tmp_path: Path) -> None:
    video = clip(tmp_path, 4, 284, 160)
    picked = frames_at(video, sample_times(4.0, 6))
    assert [p.at_seconds for p in picked] == [0.25, 1.0, 1.625, 2.25, 3.0, 3.625]
    planes = {bytes(p.frame.planes[0]) for p in picked}
    assert len(planes) == 6


def test_look_at_makes_the_sheet_once_and_reuses_it(tmp_path: Path) -> None:
    video = clip(tmp_path, 4, 284, 160)
    first = look_at(video, {})
    assert first.preview is not None
    assert Path(first.preview.path) == sheet_path(video)
    stamp = sheet_path(video).stat().st_mtime_ns
    again = look_at(video, {})
    assert again.preview == first.preview
    assert sheet_path(video).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [video.name, sheet_path(video).name]
    )


def test_a_sheet_of_an_earlier_file_of_the_same_name_is_not_reused(tmp_path: Path) -> None:
    video = clip(tmp_path, 4, 284, 160)
    old = look_at(video, {}).preview
    assert old is not None
    # the video is deleted and another one is saved under its name
    video.unlink()
    os.utime(sheet_path(video), ns=(1, 1))
    video.write_bytes(render_clip(ClipShape(seconds=8, width=160, height=284)))
    new = look_at(video, {}).preview
    assert new is not None
    assert Path(new.path).name == "clip-4-284x160.contact-1.jpg"
    assert (new.width, new.height) == (3 * 160, 3 * 284)
    assert Path(old.path).is_file()  # nothing clobbered
    # and from now on the new sheet is the one reused
    assert look_at(video, {}).preview == new


def test_a_sheet_that_cannot_be_saved_is_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = clip(tmp_path, 4, 284, 160)

    def disk_full(directory: Path, name: str, data: bytes) -> Path:
        raise StorageError(f"Could not save {name} in {directory}: No space left on device")

    monkeypatch.setattr("gravitex_mcp.service.looks.save_new", disk_full)
    seen = look_at(video, {"duration": 8})
    assert seen.probe is not None
    assert seen.preview is None
    assert seen.notes[0] == "asked 8 s, got 4.0 s"
    assert seen.notes[1].startswith("No contact sheet: Could not save clip-4-284x160.contact.jpg")


@pytest.mark.parametrize(
    ("asked", "found", "notes"),
    [
        ({"duration": 8}, probe(8.2), []),
        ({"duration": 8}, probe(4.0), ["asked 8 s, got 4.0 s"]),
        ({"aspect_ratio": "16:9"}, probe(width=1280, height=720), []),
        (
            {"aspect_ratio": "9:16"},
            probe(width=1280, height=720),
            ["asked aspect ratio 9:16, got 16:9 (1280x720)"],
        ),
        ({"resolution": "720p"}, probe(width=720, height=1280), []),
        ({"resolution": "1080p"}, probe(), ["asked 1080p, got 720p (1280x720)"]),
        ({"size": "1280*720"}, probe(), []),
        ({"size": "720x1280"}, probe(), ["asked size 720x1280, got 1280x720"]),
        ({"aspect_ratio": "adaptive", "prompt": "x", "seed": 3}, probe(), []),
    ],
)
def test_mismatch_notes(asked: dict[str, object], found: Probe, notes: list[str]) -> None:
    assert mismatch_notes(asked, found) == notes


WAN_T2V = get_model("wan2.5-t2v-preview")


@pytest.mark.parametrize(
    ("asked", "found", "notes"),
    [
        # Wan's table: 720p 1:1 is 960x960, whose short side is not 720.
        ({"resolution": "720p", "aspect_ratio": "1:1"}, probe(width=960, height=960), []),
        (
            {"resolution": "720p", "aspect_ratio": "1:1"},
            probe(width=1280, height=720),
            ["asked aspect ratio 1:1, got 16:9 (1280x720)", "asked 720p (960x960), got 1280x720"],
        ),
        # An exact size given beside the resolution is what the file is judged by.
        ({"resolution": "720p", "size": "960*960"}, probe(width=960, height=960), []),
    ],
)
def test_mismatch_notes_follow_the_models_size_table(
    asked: dict[str, object], found: Probe, notes: list[str]
) -> None:
    picked = derived_size(WAN_T2V, asked)
    assert mismatch_notes(asked, found, picked_size=picked) == notes


def test_extracted_frames_keep_their_size_and_show_a_smaller_copy(tmp_path: Path) -> None:
    video = clip(tmp_path, 2, 1280, 720, fps=4)
    [first, last] = extract(video, ["first", "last"])
    assert (first.frame.width, first.frame.height) == (1280, 720)
    assert first.frame.at_seconds == 0.0
    assert last.frame.at_seconds == 1.75
    png = Path(first.frame.path).read_bytes()
    assert png.startswith(b"\x89PNG")
    assert first.shown_png != png
    # PNG IHDR: width and height right after the signature and the chunk header
    shown = first.shown_png
    size = (int.from_bytes(shown[16:20], "big"), int.from_bytes(shown[20:24], "big"))
    assert size == (1024, 576)


def test_positions_and_fitting() -> None:
    assert [seconds_of(a, 8.0) for a in ("first", "middle", "last", 2.5)] == [0, 4, 8, 2.5]
    assert fit_within(1920, 1080, 1024) == (1024, 576)
    assert fit_within(284, 160, 1024) == (284, 160)  # never scaled up


def test_save_new_never_clobbers_and_leaves_no_temp(tmp_path: Path) -> None:
    first = save_new(tmp_path, "a.frame.png", b"one")
    second = save_new(tmp_path, "a.frame.png", b"two")
    assert (first.name, second.name) == ("a.frame.png", "a.frame-1.png")
    assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
    assert sorted(os.listdir(tmp_path)) == ["a.frame-1.png", "a.frame.png"]


def test_save_new_into_a_missing_folder_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="missing"):
        save_new(tmp_path / "missing", "x.png", b"data")


@pytest.mark.slow
def test_starting_the_server_does_not_load_pyav() -> None:
    code = (
        "import sys, gravitex_mcp.cli.main, gravitex_mcp.server.app, gravitex_mcp.server.tools, "
        "gravitex_mcp.simulator; print('av' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_a_sheet_too_big_at_the_best_quality_is_re_encoded_to_fit() -> None:
    """Noise does not compress: at the best JPEG quality this sheet is far over the
    byte limit, so only the step down through the qualities brings it under."""
    from fractions import Fraction

    from av.video.frame import VideoFrame

    from gravitex_mcp.video.frames import DecodedFrame
    from gravitex_mcp.video.preview import compose

    decoded = []
    for i in range(9):
        frame = VideoFrame(1920, 1080, "yuv420p")
        for plane in frame.planes:
            plane.update(os.urandom(plane.buffer_size))
        frame.pts, frame.time_base = i, Fraction(1, 8)
        decoded.append(DecodedFrame(at_seconds=i / 8, frame=frame))
    sheet = compose(decoded, [d.at_seconds for d in decoded])
    assert len(sheet.jpeg) <= MAX_SHEET_BYTES
    assert max(sheet.width, sheet.height) <= MAX_SHEET_SIDE
    assert sniff_image_type(sheet.jpeg) == JPEG
    assert image_dimensions(sheet.jpeg) == (sheet.width, sheet.height)
    assert sheet.jpeg.startswith(b"\xff\xd8")
    assert sheet.jpeg.endswith(b"\xff\xd9")


def test_a_sheet_leaves_no_ffmpeg_buffers_to_the_garbage_collector(tmp_path: Path) -> None:
    """FFmpeg's buffers go when the sheet is made: nothing of PyAV's waits in a reference
    cycle for a full collection (a filter graph did, see ``compose``)."""
    video = clip(tmp_path, 4, 284, 160)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable, kept to look at
    try:
        contact_sheet(video, 4.0)
        gc.collect()
        left = {type(o).__module__ for o in gc.garbage if type(o).__module__.startswith("av.")}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == set()


def test_a_stills_temp_file_is_one_the_start_up_sweep_knows_and_spares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_link = link_or_reserve
    seen: dict[str, object] = {}

    def spying_link(tmp: Path, final: Path) -> bool:
        seen["named"] = is_temp_name(tmp.name)
        seen["swept"] = sweep_temp_files(tmp.parent)  # another server starting up
        return real_link(tmp, final)

    monkeypatch.setattr(stills_module, "link_or_reserve", spying_link)
    save_new(tmp_path, "a.frame.png", b"one")
    assert seen == {"named": True, "swept": []}


def test_a_sheet_over_the_size_limit_is_still_reused_not_made_again(tmp_path: Path) -> None:
    # The encoder's last quality step may still be over the limit: such a sheet is this
    # video's all the same, and a new copy at every look would pile up.
    video = clip(tmp_path, 4, 284, 160)
    first = look_at(video, {}).preview
    assert first is not None
    sheet = Path(first.path)
    sheet.write_bytes(sheet.read_bytes() + bytes(MAX_SHEET_BYTES))  # past the JPEG's end
    again = look_at(video, {}).preview
    assert again is not None
    assert again.path == first.path
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == [sheet.name]
