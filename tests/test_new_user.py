"""What a new user trying the server with the MCP Inspector ran into, each fixed."""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

from gravitex_mcp import simulator
from gravitex_mcp.cli import main as cli
from gravitex_mcp.cli.demo import _drive
from gravitex_mcp.cli.demo_inputs import png_data_url
from gravitex_mcp.server.app import build_server
from gravitex_mcp.server.media import (
    MEDIA_PORT_FILE,
    serve_loopback,
)
from gravitex_mcp.service.joins import join_files
from gravitex_mcp.store.media_links import MediaLinks, load_or_create_key
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.choose import simulated_upstream
from tests.clips import make_clip
from tests.conftest import TOOLS, FakeClock, simulator_settings
from tests.proc import SERVER_CMD, clean_env
from tests.server_harness import Harness, connected, make_harness, structured, text_of


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def test_check_on_a_saved_video_says_where_it_is_not_to_save_it_again(h: Harness) -> None:
    async with connected(h) as client:
        saved = structured(
            await client.call_tool(
                "generate_video",
                {
                    "model": "wan2.5-t2v-preview",
                    "prompt": "a fox",
                    "wait_seconds": 60,
                    "download": True,
                },
            )
        )
        checked = await client.call_tool("check_video_task", {"task_id": saved["task_id"]})
    data = structured(checked)
    assert data["status"] == "succeeded"
    assert saved["path"] in data["next_step"]
    assert "already saved" in data["next_step"]
    assert "to save it" not in text_of(checked)
    assert len(list(h.settings.output_dir.glob("*.mp4"))) == 1


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"shots": "only one shot"}, "shots"),
        ({"shots": "a\nb", "model": "sora-3"}, "valid values: sora-2"),
        ({"shots": "a\nb", "model": "sora-2", "duration": "5"}, "valid values: 4, 8, 12"),
        ({"shots": "a\nb", "model": "sora-2", "duration": "eight"}, "duration"),
    ],
)
async def test_a_bad_storyboard_argument_is_named_not_hidden(
    h: Harness, arguments: dict[str, str], named: str
) -> None:
    async with connected(h) as client:
        with pytest.raises(MCPError) as caught:
            await client.get_prompt("storyboard", arguments)
    assert caught.value.code == INVALID_PARAMS
    assert named in caught.value.message
    assert "Error rendering prompt" not in caught.value.message


async def test_a_storyboard_duration_the_model_takes_is_planned(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.get_prompt(
            "storyboard",
            {"shots": "a\nb", "model": "doubao-seedance-1-5-pro-251215", "duration": " 7 "},
        )
    text = getattr(result.messages[0].content, "text", "")
    assert '"duration": 7,' in text


async def test_dry_run_text_shows_an_image_by_digest_not_its_base64(h: Harness) -> None:
    data_url = png_data_url(640, 360)
    image = h.settings.input_dirs[0] / "first.png"
    image.write_bytes(base64.b64decode(data_url.split(",", 1)[1]))
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {
                "model": "veo-3.1-fast-generate-preview",
                "prompt": "a fox",
                "image": str(image),
                "dry_run": True,
            },
        )
    payload = structured(result)["payload"]
    assert payload["image"] == data_url  # the exact body stays in structuredContent
    text = text_of(result)
    assert data_url.split(",", 1)[1][:64] not in text
    assert f"sha256:{hashlib.sha256(image.read_bytes()).hexdigest()}" in text
    assert '"prompt": "a fox"' in text
    assert len(text) < 1_000
    assert h.sim.calls["submit"] == 0


def _luma_at(path: Path, seconds: float, xs: tuple[int, ...]) -> list[int]:
    """The Y values of the middle row at columns ``xs``, in the frame shown at ``seconds``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            assert frame.pts is not None
            assert frame.time_base is not None
            if float(frame.pts * frame.time_base) >= seconds:
                plane = frame.planes[0]
                row = bytes(plane)[frame.height // 2 * plane.line_size :]
                return [row[x] for x in xs]
    raise AssertionError(f"no frame at {seconds} s in {path}")


async def test_a_clip_of_another_shape_is_joined_on_black_bars_not_stretched(
    tmp_path: Path,
) -> None:
    pytest.importorskip("av", reason="PyAV (av) is a dependency: pip install -e .[dev]")
    wide = make_clip(tmp_path / "wide.mp4", 2, size=(64, 48), fps=10, audio=False)
    tall = make_clip(tmp_path / "tall.mp4", 3, size=(48, 64), fps=10, audio=False)
    out = OutputDir(tmp_path / "videos")
    joined = await join_files([wide, tall], out, filename="mix", default_stem="j")
    assert joined.plan.method == "re_encode"
    assert (joined.probe.width, joined.probe.height) == (64, 48)
    assert any("black bars" in note for note in joined.plan.notes)
    # 1.5 s into the tall clip: its frame 15, luma 15 * 7 = 105, scaled to 36x48 and
    # centred, so columns 0-13 and 50-63 are black (Y 16) and the middle is the clip.
    assert joined.stored.path is not None
    left, middle, right = _luma_at(joined.stored.path, 2 + 1.5, (3, 32, 60))
    assert abs(middle - 105) <= 12
    assert left <= 24
    assert right <= 24


@pytest.mark.parametrize(
    ("tool", "arguments", "named"),
    [
        ("join_videos", {"task_ids": ["video_1"]}, "task_ids: List should have at least 2 items"),
        ("list_video_tasks", {"status": "done"}, "status: Input should be 'submitting'"),
        ("check_video_task", {"task_id": "video_1", "wait_seconds": 900}, "wait_seconds:"),
        ("extract_frames", {"task_id": "video_1", "at": ["end"]}, "at[0]"),
        ("download_video", {}, "task_id: is required"),
    ],
)
async def test_a_schema_refusal_names_the_argument_without_pydantic_noise(
    h: Harness, tool: str, arguments: dict[str, object], named: str
) -> None:
    async with connected(h) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    message = text_of(result)
    assert message.startswith(f"Invalid arguments for {tool}")
    assert named in message
    assert "errors.pydantic.dev" not in message
    assert "Arguments" not in message  # the SDK's internal model name
    assert sum(h.sim.calls.values()) == 0


async def test_a_replayed_key_of_a_saved_video_says_where_it_is(h: Harness) -> None:
    job = {"model": "sora-2", "prompt": "a fox", "idempotency_key": "fox-1"}
    async with connected(h) as client:
        first = structured(
            await client.call_tool("generate_video", {**job, "wait_seconds": 60, "download": True})
        )
        again = structured(await client.call_tool("generate_video", {**job, "wait_seconds": 0}))
    assert again["replayed"] is True
    assert again["task_id"] == first["task_id"]
    assert f"already saved at {first['path']}" in again["next_step"]
    assert h.sim.calls["submit"] == 1


def test_the_simulator_command_says_how_to_point_the_server_at_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    served: dict[str, object] = {}

    def fake_serve(**kwargs: object) -> None:
        served.update(kwargs)

    monkeypatch.setattr(simulator, "serve", fake_serve)
    monkeypatch.setattr(cli, "configure_logging", lambda *a, **k: None)
    caplog.set_level(logging.INFO, logger="gravitex_mcp.cli.main")
    env = {"GRAVITEX_SIMULATOR_SECONDS": "3"}
    assert cli.run(["simulator", "--port", "8790"], env) == 0
    assert served["port"] == 8790
    said = caplog.text
    assert "GRAVITEX_BASE_URL=http://127.0.0.1:8790" in said
    assert "GRAVITEX_API_KEY=" in said
    assert "3 s" in said


async def test_a_stdio_media_link_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    port_file = state / MEDIA_PORT_FILE

    async def fetch_after_start(url: str | None) -> tuple[str, str]:
        links = MediaLinks(key=load_or_create_key(state), output_dir=videos)
        async with serve_loopback(links, port_file) as base:
            links.base_url = base
            minted = links.url_for(videos / "clip.mp4")
            assert minted is not None
            if url is None:
                await links.ready()  # as the tools do before handing out a link
            # After a restart nothing here calls ready(): the old link must answer anyway.
            async with httpx2.AsyncClient(timeout=10) as client:
                # The link from before the restart still answers.
                assert (await client.get(url or minted)).status_code == 200
            return base, minted

    # A run that hands out no link remembers no port: the next start stays lazy.
    async with serve_loopback(
        MediaLinks(key=load_or_create_key(state), output_dir=videos), port_file
    ):
        pass
    assert not port_file.exists()

    first_base, link = await fetch_after_start(None)
    second_base, again = await fetch_after_start(link)
    assert second_base == first_base
    assert again == link

    # Its port taken by someone else: another port, remembered for next time.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", int(first_base.rsplit(":", 1)[1])))
        squatter.listen(1)
        links = MediaLinks(key=load_or_create_key(state), output_dir=videos)
        async with serve_loopback(links, port_file) as third_base:
            assert third_base != first_base
            await links.ready()  # its first link is handed out
    assert port_file.read_text().strip() == third_base.rsplit(":", 1)[1]


async def test_asking_for_the_same_frame_again_gives_the_same_file(h: Harness) -> None:
    async with connected(h) as client:
        saved = structured(
            await client.call_tool(
                "generate_video",
                {"model": "veo-3.1-fast-generate-preview", "prompt": "a fox", "duration": 4}
                | {"wait_seconds": 60, "download": True},
            )
        )
        stem = Path(saved["path"]).stem
        # Someone's own file where the first frame would go: kept, ours goes beside it.
        theirs = h.settings.output_dir / f"{stem}.frame-0.000s.png"
        theirs.write_bytes(b"not ours")
        calls = [{"task_id": saved["task_id"], "at": ["first", "last"]}] * 3
        paths = [
            [f["path"] for f in structured(await client.call_tool("extract_frames", c))["frames"]]
            for c in calls
        ]
    assert paths[0] == paths[1] == paths[2]
    assert paths[0][0].endswith(".frame-0.000s-1.png")
    assert theirs.read_bytes() == b"not ours"
    assert len(list(h.settings.output_dir.glob("*.png"))) == 3  # theirs + two frames


@pytest.mark.parametrize(
    ("model", "noted"), [("sora-2", True), ("veo-3.1-fast-generate-preview", False)]
)
async def test_the_demo_says_a_size_note_is_the_simulators_doing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, noted: bool
) -> None:
    settings = simulator_settings(tmp_path, simulator_seconds=6)
    clock = FakeClock()
    upstream = simulated_upstream(settings, clock=clock.monotonic)
    try:
        await _drive(build_server(settings, upstream=upstream, clock=clock), model)
    finally:
        assert upstream.simulator is not None
        upstream.simulator.close()
    notes = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("Notes:"))
    if noted:
        assert "asked size 1280x720" in notes
        assert "the simulator draws small clips" in notes
    else:
        assert notes == "Notes: none (the clip is what was asked)"


async def test_a_local_image_without_input_folders_says_how_to_allow_it(tmp_path: Path) -> None:
    # The output folder is read from too (extract_frames' frames), but a user who set no
    # GRAVITEX_INPUT_DIRS must still hear that setting it is the fix, not only where
    # the output folder is.
    h = make_harness(tmp_path, input_dirs=())
    elsewhere = tmp_path / "photos" / "cat.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(base64.b64decode(png_data_url(64, 64).split(",", 1)[1]))
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {"model": "veo-3.1-generate-preview", "prompt": "a cat", "image": str(elsewhere)},
        )
    assert result.is_error
    text = text_of(result)
    assert "GRAVITEX_INPUT_DIRS is not set" in text
    assert "Set GRAVITEX_INPUT_DIRS" in text
    assert str(h.settings.output_dir) in text
    assert h.sim.calls["submit"] == 0


# --- no key: the server starts, and a call that needs the API says what to set ---------


@pytest.mark.slow
async def test_without_a_key_the_server_starts_and_a_call_needing_it_says_what_to_set(
    tmp_path: Path,
) -> None:
    # The upstream is a loopback listener nothing should ever connect to: any request
    # would wait in its backlog, where a non-blocking accept finds it afterwards.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as upstream:
        upstream.bind(("127.0.0.1", 0))
        upstream.listen(8)
        upstream.setblocking(False)
        env = clean_env(
            tmp_path,
            GRAVITEX_OUTPUT_DIR=str(tmp_path / "videos"),
            GRAVITEX_STATE_DIR=str(tmp_path / "state"),
            GRAVITEX_BASE_URL=f"http://127.0.0.1:{upstream.getsockname()[1]}",
        )
        params = StdioServerParameters(command=SERVER_CMD[0], args=[*SERVER_CMD[1:]], env=env)
        errlog = tmp_path / "server.stderr"
        with anyio.fail_after(60), errlog.open("w") as err:
            async with Client(stdio_client(params, errlog=err), read_timeout_seconds=30) as client:
                assert {t.name for t in (await client.list_tools()).tools} == TOOLS
                models = await client.call_tool("list_models", {})
                assert not models.is_error, text_of(models)
                job = {"model": "sora-2", "prompt": "a fox", "duration": 4}
                dry = await client.call_tool("generate_video", {**job, "dry_run": True})
                assert not dry.is_error, text_of(dry)
                assert "Dry run, nothing sent" in text_of(dry)
                refused = [
                    await client.call_tool("generate_video", job),
                    await client.call_tool("check_video_task", {"task_id": "video_abc123"}),
                    await client.call_tool("generate_videos", {"jobs": [job]}),
                ]
                listed = await client.call_tool("list_video_tasks", {})
        with pytest.raises(BlockingIOError):
            upstream.accept()  # nothing was sent upstream
    assert not listed.is_error, text_of(listed)
    for result in refused:
        assert result.is_error, text_of(result)
        text = text_of(result)
        for fix in ("GRAVITEX_API_KEY", "env", "Claude Desktop", "--simulate", "nothing was sent"):
            assert fix in text, (fix, text)
        assert "Error executing tool" not in text
    assert "GRAVITEX_API_KEY is not set" in errlog.read_text()
