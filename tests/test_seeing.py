"""Issue 8 "Show": probe, contact sheet image, preview flag, notes, extract_frames,
on the simulator's real clips through the MCP tools."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent

from gravitex_mcp.images import JPEG, image_dimensions, sniff_image_type
from gravitex_mcp.video.preview import MAX_SHEET_BYTES, MAX_SHEET_SIDE

from .server_harness import Harness, connected, make_harness, structured, text_of

VEO = "veo-3.1-generate-preview"


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def generate(client: Client, **arguments: Any) -> CallToolResult:
    given = {"model": VEO, "prompt": "a lighthouse at dusk", "wait_seconds": 60, "download": True}
    return await client.call_tool("generate_video", {**given, **arguments})


def images(result: CallToolResult) -> list[ImageContent]:
    return [b for b in result.content if isinstance(b, ImageContent)]


@pytest.mark.parametrize(
    ("arguments", "duration", "size"),
    [
        ({"model": VEO, "duration": 4, "aspect_ratio": "16:9"}, 4.0, (284, 160)),
        ({"model": VEO, "duration": 8, "aspect_ratio": "9:16"}, 8.0, (160, 284)),
        ({"model": "sora-2", "duration": 8, "aspect_ratio": "16:9"}, 8.0, (284, 160)),
        ({"model": "sora-2", "duration": 4, "aspect_ratio": "9:16"}, 4.0, (160, 284)),
        ({"model": "wan2.5-t2v-preview", "duration": 10}, 10.0, (284, 160)),
        ({"model": "doubao-seedance-1-0-pro-250528", "aspect_ratio": "9:16"}, 5.0, (160, 284)),
    ],
)
async def test_probe_reads_the_saved_clip(
    h: Harness, arguments: dict[str, Any], duration: float, size: tuple[int, int]
) -> None:
    async with connected(h) as client:
        data = structured(await generate(client, **arguments))
    probe = data["probe"]
    assert probe["duration_seconds"] == pytest.approx(duration, abs=0.01)
    assert (probe["width"], probe["height"]) == size
    assert probe["video_codec"] == "h264"
    assert probe["fps"] == pytest.approx(8.0)
    assert probe["has_audio"] is False
    assert data["notes"] == []
    assert "video" not in data, "the saved video appears once, at the top level"


async def test_contact_sheet_is_one_small_jpeg_image_block(h: Harness) -> None:
    async with connected(h) as client:
        result = await generate(client, duration=8, aspect_ratio="16:9")
    data = structured(result)
    [block] = images(result)
    assert block.mime_type == "image/jpeg"
    jpeg = base64.b64decode(block.data, validate=True)
    assert jpeg.startswith(b"\xff\xd8")
    assert jpeg.endswith(b"\xff\xd9")
    assert len(jpeg) <= MAX_SHEET_BYTES
    preview = data["preview"]
    sheet = Path(preview["path"])
    assert sheet.read_bytes() == jpeg
    assert sheet.parent == Path(data["path"]).parent
    assert sheet.name == Path(data["path"]).stem + ".contact.jpg"
    assert preview["uri"] == sheet.as_uri()
    assert sniff_image_type(jpeg) == JPEG
    assert image_dimensions(jpeg) == (preview["width"], preview["height"])
    assert max(preview["width"], preview["height"]) <= MAX_SHEET_SIDE
    # 9 tiles of 284x160 in 3 columns: the frame's shape is kept
    assert (preview["width"], preview["height"]) == (3 * 284, 3 * 160)
    times = preview["at_seconds"]
    assert len(times) == 9
    assert times == sorted(times)
    assert times[0] > 0
    assert times[-1] < 8
    text = text_of(result)
    assert "Probe: 8.0 s, 284x160, 8 fps, h264, no audio." in text
    assert f"Contact sheet: {sheet}" in text


async def test_preview_false_leaves_the_image_out_on_every_saving_tool(h: Harness) -> None:
    async with connected(h) as client:
        first = await generate(client, duration=4, preview=False)
        data = structured(first)
        task_id = data["task_id"]
        check = await client.call_tool(
            "check_video_task",
            {"task_id": task_id, "wait_seconds": 0, "download": True, "preview": False},
        )
        download = await client.call_tool("download_video", {"task_id": task_id, "preview": False})
        shown = await client.call_tool("download_video", {"task_id": task_id})
    for result in (first, check, download):
        assert images(result) == [], text_of(result)
        assert structured(result)["preview"]["path"] == data["preview"]["path"]
    # the default still shows it, and a reused video reuses its sheet
    assert [b.mime_type for b in images(shown)] == ["image/jpeg"]
    assert structured(shown)["reused"] is True
    sheets = sorted(p.name for p in h.settings.output_dir.glob("*.jpg"))
    assert sheets == [f"{task_id}.contact.jpg"]


async def test_a_shorter_clip_than_asked_gets_a_note(h: Harness) -> None:
    async with connected(h) as client:
        result = await generate(client, prompt="a lighthouse [short]", duration=8)
    data = structured(result)
    assert data["probe"]["duration_seconds"] == pytest.approx(4.0)
    assert data["notes"] == ["asked 8 s, got 4.0 s"]
    assert "video" not in data
    assert "Note: asked 8 s, got 4.0 s" in text_of(result)


SIMULATORS_DOING = (
    " (the simulator's doing: its clips are 160 px on the short side and silent; "
    "a real model returns what was asked)"
)


async def test_the_simulators_size_and_silence_are_noted_as_the_simulators(h: Harness) -> None:
    async with connected(h) as client:
        result = await generate(
            client, duration=4, aspect_ratio="16:9", resolution="1080p", generate_audio=True
        )
    data = structured(result)
    assert data["notes"] == [
        "asked 1080p, got 160p (284x160)" + SIMULATORS_DOING,
        "asked generate_audio true, got a video with no audio track" + SIMULATORS_DOING,
    ]
    text = text_of(result)
    assert all(f"Note: {note}" in text for note in data["notes"])


def test_audio_asked_and_not_found_is_noted() -> None:
    from gravitex_mcp.results import Probe
    from gravitex_mcp.video.seeing import mismatch_notes

    silent = Probe(
        duration_seconds=4.0, width=1280, height=720, fps=24.0, video_codec="h264", has_audio=False
    )
    loud = silent.model_copy(update={"has_audio": True})
    asked = {"generate_audio": True, "resolution": "720p"}
    note = "asked generate_audio true, got a video with no audio track"
    assert mismatch_notes(asked, silent) == [note]
    assert mismatch_notes(asked, loud) == []
    assert mismatch_notes({"generate_audio": False}, silent) == []
    assert mismatch_notes({}, silent) == []  # not asked: nothing to compare


async def test_a_duration_written_in_a_seedance_prompt_is_compared_too(h: Harness) -> None:
    async with connected(h) as client:
        result = await generate(
            client, model="doubao-seedance-1-0-pro-250528", prompt="a lighthouse --dur 10 [short]"
        )
    data = structured(result)
    assert data["probe"]["duration_seconds"] == pytest.approx(5.0)
    assert "asked 10 s, got 5.0 s" in data["notes"]


async def test_extract_frames_last_frame_starts_the_next_video(h: Harness) -> None:
    async with connected(h) as client:
        data = structured(await generate(client, duration=4, aspect_ratio="16:9"))
        result = await client.call_tool("extract_frames", {"task_id": data["task_id"]})
        frames = structured(result)["frames"]
        assert [round(f["at_seconds"], 3) for f in frames] == [0.0, 2.0, 3.875]
        blocks = images(result)
        assert [b.mime_type for b in blocks] == ["image/png"] * 3
        last = Path(frames[-1]["path"])
        png = last.read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert base64.b64decode(blocks[-1].data) == png
        assert last.parent == h.settings.output_dir
        assert (frames[-1]["width"], frames[-1]["height"]) == (284, 160)
        assert len({Path(f["path"]).read_bytes() for f in frames}) == 3  # motion
        # the frame's path is accepted as the next video's first frame
        dry = await client.call_tool(
            "generate_video",
            {"model": VEO, "prompt": "continue", "image": str(last), "dry_run": True},
        )
    payload = structured(dry)["payload"]
    assert payload["image"] == "data:image/png;base64," + base64.b64encode(png).decode()


async def test_extract_frames_at_given_seconds_never_clobbers(h: Harness) -> None:
    async with connected(h) as client:
        data = structured(await generate(client, duration=4))
        task_id = data["task_id"]
        one = structured(
            await client.call_tool("extract_frames", {"task_id": task_id, "at": [1, 2.5, 4]})
        )
        two = structured(await client.call_tool("extract_frames", {"task_id": task_id, "at": [1]}))
    assert [f["at_seconds"] for f in one["frames"]] == [1.0, 2.5, 3.875]
    # The same frame again is the same file (identical bytes, nothing overwritten);
    # a different file under that name is never touched (tests/test_new_user.py).
    assert one["frames"][0]["path"] == two["frames"][0]["path"]
    assert len(list(Path(one["frames"][0]["path"]).parent.glob("*.frame-1.000s*.png"))) == 1


async def test_extract_frames_downloads_a_finished_video_first(h: Harness) -> None:
    async with connected(h) as client:
        data = structured(await generate(client, duration=4, download=False))
        assert data["path"] is None
        result = structured(
            await client.call_tool("extract_frames", {"task_id": data["task_id"], "at": ["first"]})
        )
    assert Path(result["video_path"]).is_file()
    assert len(result["frames"]) == 1


async def test_extract_frames_of_an_unfinished_task_says_what_to_do(h: Harness) -> None:
    async with connected(h) as client:
        data = structured(await generate(client, wait_seconds=0, download=False))
        result = await client.call_tool("extract_frames", {"task_id": data["task_id"]})
    assert result.is_error
    assert "check_video_task" in text_of(result)


async def test_extract_frames_refuses_a_time_past_the_end_and_saves_nothing(h: Harness) -> None:
    async with connected(h) as client:
        data = structured(await generate(client, duration=4))
        before = sorted(h.settings.output_dir.iterdir())
        result = await client.call_tool(
            "extract_frames", {"task_id": data["task_id"], "at": [1, 999]}
        )
    assert result.is_error
    name = Path(data["path"]).name
    assert text_of(result) == (
        f"at[1]: 999 s is past the end of {name}, which is 4 s long. Valid times: 0 to 4 s, "
        'or "first", "middle", "last". No frame was saved.'
    )
    assert sorted(h.settings.output_dir.iterdir()) == before  # not even at[0]'s frame


async def test_extract_frames_refuses_a_boolean_as_its_schema_does(h: Harness) -> None:
    async with connected(h) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("extract_frames", {"task_id": "video_x", "at": [True]})
    item = tools["extract_frames"].input_schema["properties"]["at"]["anyOf"][0]["items"]
    assert {"boolean"}.isdisjoint(member.get("type") for member in item["anyOf"])
    assert result.is_error
    assert "at[0]" in text_of(result)
    assert "(given: true, a boolean)" in text_of(result)
    assert h.sim.calls["query"] == 0  # nothing sent upstream


@pytest.mark.parametrize(
    "at",
    [[], ["last", "end"], [-1], list(range(13)), [True], ["1"]],
    ids=["empty", "word", "neg", "many", "bool", "string"],
)
async def test_extract_frames_refuses_bad_positions(h: Harness, at: list[Any]) -> None:
    async with connected(h) as client:
        result = await client.call_tool("extract_frames", {"task_id": "video_x", "at": at})
    assert result.is_error
    assert h.sim.calls["query"] == 0  # nothing sent upstream


#: A well-formed mp4 box structure with nothing FFmpeg can decode in it.
NOT_A_VIDEO = b"\x00\x00\x00\x14ftypisom\x00\x00\x02\x00isom"


async def test_a_video_that_cannot_be_read_is_still_saved_with_a_note(h: Harness) -> None:
    async with connected(h) as client:
        data = structured(await generate(client, wait_seconds=0, download=False))
        h.sim.tasks[data["task_id"]].clip = NOT_A_VIDEO  # what the upstream will serve
        result = await client.call_tool(
            "check_video_task", {"task_id": data["task_id"], "wait_seconds": 60, "download": True}
        )
        saved = structured(result)
        assert Path(saved["path"]).read_bytes().startswith(NOT_A_VIDEO)
        assert saved["probe"] is None
        assert saved["preview"] is None
        [note] = saved["notes"]
        assert note.startswith("Could not look at the saved video: ")
        assert images(result) == []
        frames = await client.call_tool("extract_frames", {"task_id": data["task_id"]})
    assert frames.is_error
    assert f"Could not take frames from the saved video of task {data['task_id']!r}" in text_of(
        frames
    )


async def test_looking_and_extracting_run_off_the_event_loop(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from gravitex_mcp.service import looks as seeing

    loop_thread = threading.current_thread()
    threads: list[threading.Thread] = []

    def spy(real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread())
            return real(*args, **kwargs)

        return wrapper

    # The service imports them at their first use, from gravitex_mcp.service.looks.
    monkeypatch.setattr("gravitex_mcp.service.looks.look_at", spy(seeing.look_at))
    monkeypatch.setattr("gravitex_mcp.service.looks.extract", spy(seeing.extract))
    async with connected(h) as client:
        data = structured(await generate(client, duration=4))
        structured(await client.call_tool("extract_frames", {"task_id": data["task_id"]}))
    assert len(threads) == 2
    assert all(t is not loop_thread for t in threads)
