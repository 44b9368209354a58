"""The five tools through an in-memory ``mcp.Client``, on the simulator, with a fake clock."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.types import ImageContent, ResourceLink, TextResourceContents

from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.catalog.describe import describe
from gravitex_mcp.request.arguments import DEFAULT_WAIT_SECONDS
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from tests.conftest import TOOLS, FakeClock
from tests.server_harness import API_KEY, Harness, connected, make_harness, structured, text_of


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


# --- the tool list -----------------------------------------------------------------


async def test_tools_are_typed_described_and_annotated(h: Harness) -> None:
    async with connected(h) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description is not None, tool.name
        assert len(tool.description) > 40, tool.name
        assert tool.output_schema is not None, tool.name
        assert tool.annotations is not None, tool.name
        assert "ctx" not in tool.input_schema.get("properties", {}), tool.name
    hints = {
        name: t.annotations.model_dump(exclude={"title"})
        for name, t in tools.items()
        if t.annotations is not None
    }
    assert hints == {name: ANNOTATIONS[name] for name in TOOLS}


def _hints(read_only: bool, idempotent: bool, open_world: bool) -> dict[str, bool | None]:
    # Nothing here replaces or deletes anything: destructive is false wherever it applies.
    return {
        "read_only_hint": read_only,
        "destructive_hint": None if read_only else False,
        "idempotent_hint": idempotent,
        "open_world_hint": open_world,
    }


#: What each tool may do. Saving a file is not read-only (check_video_task saves with
#: download: true); a call that reuses what an earlier one made is idempotent; reaching
#: the upstream (a download included) is the open world.
ANNOTATIONS = {
    "list_models": _hints(read_only=True, idempotent=True, open_world=False),
    "list_video_tasks": _hints(read_only=True, idempotent=True, open_world=False),
    "get_usage": _hints(read_only=True, idempotent=True, open_world=False),
    "generate_video": _hints(read_only=False, idempotent=False, open_world=True),
    "generate_videos": _hints(read_only=False, idempotent=False, open_world=True),
    "check_video_task": _hints(read_only=False, idempotent=True, open_world=True),
    "download_video": _hints(read_only=False, idempotent=True, open_world=True),
    "extract_frames": _hints(read_only=False, idempotent=True, open_world=True),
    "join_videos": _hints(read_only=False, idempotent=False, open_world=True),
}


async def test_generate_schema_has_enums_bounds_and_descriptions(h: Harness) -> None:
    async with connected(h) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools["generate_video"].input_schema
    props = schema["properties"]
    assert set(schema["required"]) == {"model", "prompt"}
    assert "sora-2" in json.dumps(props["model"])
    for model_id in catalog.MODEL_IDS:
        assert model_id in json.dumps(props["model"])
    for name in ("duration", "aspect_ratio", "seed", "wait_seconds", "dry_run", "download"):
        assert props[name].get("description"), name
    assert "2147483647" in json.dumps(props["seed"])
    check = tools["check_video_task"].input_schema["properties"]["wait_seconds"]
    assert check["maximum"] == 600
    assert check["default"] == DEFAULT_WAIT_SECONDS


# --- list_models -------------------------------------------------------------------


async def test_list_models_all_and_by_family(h: Harness) -> None:
    async with connected(h) as client:
        everything = structured(await client.call_tool("list_models", {}))
        veo = structured(await client.call_tool("list_models", {"family": "veo"}))
    ids = [m["id"] for m in everything["models"]]
    assert ids == list(catalog.MODEL_IDS)
    assert {m["family"] for m in veo["models"]} == {"veo"}
    assert len(veo["models"]) == 4
    assert all(m["modes"] for m in everything["models"])


async def test_list_models_text_is_a_compact_table_and_the_catalog_stays_structured(
    h: Harness,
) -> None:
    async with connected(h) as client:
        everything = await client.call_tool("list_models", {})
        veo = await client.call_tool("list_models", {"family": "veo"})
        resource = await client.read_resource("gravitex://models")
    text = text_of(everything)
    assert len(text) < 6000  # was ~59,000 characters of indented JSON
    for model_id in catalog.MODEL_IDS:
        assert f"`{model_id}`" in text
    assert "gravitex://models" in text
    # one row per model, with its family, modes and values
    assert "| `sora-2` | sora | text to video, first frame, remix | 4, 8, 12 |" in text
    veo_rows = [line for line in text_of(veo).splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in veo_rows] == [
        m for m in catalog.MODEL_IDS if m.startswith("veo")
    ]
    # the whole catalog, unchanged, in structuredContent and the resource
    catalog_json = json.loads(json.dumps([describe(s) for s in catalog.models()]))
    assert structured(everything) == {"models": catalog_json}
    [contents] = resource.contents
    assert isinstance(contents, TextResourceContents)
    assert json.loads(contents.text) == catalog_json


async def test_list_models_bad_family_is_an_error(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool("list_models", {"family": "pixar"})
    assert result.is_error
    assert "family" in text_of(result)
    assert "sora" in text_of(result)


# --- generate_video: refusals before anything is sent --------------------------------


async def test_bad_duration_is_refused_naming_valid_values(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {"model": "veo-3.1-fast-generate-preview", "prompt": "a cat", "duration": 7},
        )
    assert result.is_error
    message = text_of(result)
    assert "duration" in message
    assert "4, 6, 8" in message
    assert "Traceback" not in message
    assert h.sim.calls["submit"] == 0


async def test_unknown_argument_is_refused_naming_valid_arguments(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "a cat", "seconds": "4"}
        )
    assert result.is_error
    message = text_of(result)
    assert "seconds" in message
    assert "duration" in message  # the valid names are listed
    assert h.sim.calls["submit"] == 0


async def test_several_problems_are_reported_together(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {
                "model": "veo-3.0-fast-generate-001",
                "prompt": "a cat",
                "duration": 5,
                "last_frame": "https://example.com/end.png",
                "smart_rewrite": True,
            },
        )
    assert result.is_error
    message = text_of(result)
    for field in ("duration", "last_frame", "smart_rewrite"):
        assert field in message
    assert h.sim.calls["submit"] == 0


async def test_local_image_outside_input_dirs_is_refused(h: Harness, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {"model": "wan2.5-i2v-preview", "prompt": "a cat", "image": str(outside)},
        )
    assert result.is_error
    assert "GRAVITEX_INPUT_DIRS" in text_of(result) or "input" in text_of(result).lower()
    assert h.sim.calls["submit"] == 0


async def test_dry_run_returns_the_exact_body_and_sends_nothing(h: Harness) -> None:
    async with connected(h) as client:
        result = structured(
            await client.call_tool(
                "generate_video",
                {
                    "model": "sora-2",
                    "prompt": "A cute little cat playing in the garden, sunny and warm",
                    "duration": 8,
                    "aspect_ratio": "16:9",
                    "dry_run": True,
                },
            )
        )
    assert result["dry_run"] is True
    assert result["payload"] == {
        "model": "sora-2",
        "prompt": "A cute little cat playing in the garden, sunny and warm",
        "seconds": "8",
        "size": "1280x720",
    }
    assert h.sim.calls["submit"] == 0


# --- generate_video: waiting -----------------------------------------------------------


async def test_wait_hands_over_with_progress_and_next_step(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {"model": "wan2.5-t2v-preview", "prompt": "a kitten", "wait_seconds": 10},
            progress_callback=h.on_progress,
        )
    data = structured(result)
    assert data["status"] in ("queued", "in_progress")
    assert data["task_id"]
    assert "check_video_task" in data["next_step"]
    assert data["task_id"] in data["next_step"]
    assert "check_video_task" in text_of(result)
    assert data.get("path") is None
    # the wait stayed within its budget of fake time
    assert sum(h.clock.sleeps) <= 10 + 1e-9
    assert h.sim.calls["submit"] == 1
    # progress notifications: strictly increasing, with status and elapsed time
    values = [p for p, _, _ in h.progress]
    assert len(values) >= 3
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert all(total == 10 for _, total, _ in h.progress)
    assert all(m and "status:" in m and "waited" in m for _, _, m in h.progress)


async def test_generate_waits_and_downloads_within_one_call(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {
                "model": "veo-3.1-fast-generate-preview",
                "prompt": "aerial city at dawn",
                "duration": 8,
                "wait_seconds": 40,
                "download": True,
            },
            progress_callback=h.on_progress,
        )
    data = structured(result)
    assert data["status"] == "succeeded"
    path = Path(data["path"])
    assert path.is_file()
    assert path.parent == h.settings.output_dir
    assert data["size_bytes"] == path.stat().st_size
    assert data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.read_bytes()[4:8] == b"ftyp"
    links = [b for b in result.content if isinstance(b, ResourceLink)]
    assert len(links) == 1
    assert str(links[0].uri) == path.as_uri()
    assert links[0].mime_type == "video/mp4"
    # the video bytes never go into the context: only the contact sheet's small JPEG
    images = [b for b in result.content if isinstance(b, ImageContent)]
    assert [b.mime_type for b in images] == ["image/jpeg"]
    without_images = result.model_copy(
        update={"content": [b for b in result.content if not isinstance(b, ImageContent)]}
    )
    assert len(json.dumps(without_images.model_dump(mode="json"))) < 10_000


async def test_failed_task_is_an_error_result_with_the_reason(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {"model": "sora-2", "prompt": "something [fail]", "wait_seconds": 40},
        )
    assert result.is_error
    assert result.structured_content is not None
    assert result.structured_content["status"] == "failed"
    assert "inappropriate" in text_of(result)
    assert "generate_video again" in text_of(result)


# --- check_video_task and download_video --------------------------------------------


async def _submit(client: Any, model: str = "sora-2", prompt: str = "a cat") -> str:
    data = structured(
        await client.call_tool(
            "generate_video", {"model": model, "prompt": prompt, "wait_seconds": 0}
        )
    )
    assert data["status"] == "submitted"
    return str(data["task_id"])


async def test_check_keeps_waiting_then_downloads_sora(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client)
        first = structured(
            await client.call_tool("check_video_task", {"task_id": task_id, "wait_seconds": 0})
        )
        assert first["status"] == "queued"
        done = structured(
            await client.call_tool(
                "check_video_task",
                {"task_id": task_id, "wait_seconds": 60, "download": True},
                progress_callback=h.on_progress,
            )
        )
    assert done["status"] == "succeeded"
    assert done["model"] == "sora-2"
    assert Path(done["path"]).read_bytes()[4:8] == b"ftyp"
    assert h.sim.calls["download"] == 1


async def test_download_before_finished_says_how_to_wait(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client, model="wan2.5-t2v-preview")
        result = await client.call_tool("download_video", {"task_id": task_id})
    assert result.is_error
    assert "not finished" in text_of(result)
    assert "check_video_task" in text_of(result)
    assert list(h.settings.output_dir.glob("*")) == []


async def test_download_url_family_then_reuse_then_named_copy(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client, model="doubao-seedance-1-0-lite-t2v-250428")
        h.sim.advance(60)
        first = await client.call_tool("download_video", {"task_id": task_id})
        data = structured(first)
        assert data["reused"] is False
        assert any(isinstance(b, ResourceLink) for b in first.content)
        again = structured(await client.call_tool("download_video", {"task_id": task_id}))
        named = structured(
            await client.call_tool(
                "download_video", {"task_id": task_id, "filename": "../../escape/My Clip"}
            )
        )
    assert again["reused"] is True
    assert again["path"] == data["path"]
    assert h.sim.calls["file"] == 2
    named_path = Path(named["path"])
    assert named_path.parent == h.settings.output_dir
    assert named_path.name.endswith(".mp4")
    assert "escape" not in str(named_path.parent)
    assert named["sha256"] == data["sha256"]


async def test_output_folder_swapped_for_a_symlink_after_start_up_is_refused(
    h: Harness, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    async with connected(h) as client:  # start-up holds the output folder
        task_id = await _submit(client, model="doubao-seedance-1-0-lite-t2v-250428")
        h.sim.advance(60)
        out = h.settings.output_dir
        out.rename(tmp_path / "parked")
        out.symlink_to(elsewhere)
        result = await client.call_tool("download_video", {"task_id": task_id})
    assert result.is_error
    assert "changed while this server was running" in text_of(result)
    assert list(elsewhere.iterdir()) == []


async def test_download_of_failed_task_is_an_error(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client, prompt="[fail] please")
        h.sim.advance(60)
        result = await client.call_tool("download_video", {"task_id": task_id})
    assert result.is_error
    assert "failed" in text_of(result)


# --- journal: list_video_tasks and resources --------------------------------------------


async def test_list_tasks_newest_first_and_survives_restart(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        first = await _submit(client, model="sora-2")
        h.clock.now += 1
        second = await _submit(client, model="wan2.5-t2v-preview")
    restarted = make_harness(tmp_path, sim=h.sim, clock=h.clock)
    async with connected(restarted) as client:
        tasks = structured(await client.call_tool("list_video_tasks", {}))["tasks"]
        only_two = structured(await client.call_tool("list_video_tasks", {"limit": 1}))["tasks"]
    ids = [t["task_id"] for t in tasks]
    assert ids[:2] == [second, first] or set(ids[:2]) == {first, second}
    assert only_two[0]["task_id"] in (first, second)
    assert len(only_two) == 1
    assert {t["model"] for t in tasks} == {"sora-2", "wan2.5-t2v-preview"}


async def test_resources_models_and_task(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client)
        models = await client.read_resource("gravitex://models")
        task = await client.read_resource(f"gravitex://tasks/{task_id}")
        templates = await client.list_resource_templates()
    catalog_json = json.loads(models.contents[0].text)  # type: ignore[union-attr]
    assert [m["id"] for m in catalog_json] == list(catalog.MODEL_IDS)
    entry = json.loads(task.contents[0].text)  # type: ignore[union-attr]
    assert entry["task_id"] == task_id
    assert entry["model"] == "sora-2"
    assert any(t.uri_template == "gravitex://tasks/{task_id}" for t in templates.resource_templates)


async def test_unknown_task_resource_is_an_error(h: Harness) -> None:
    from mcp import MCPError

    async with connected(h) as client:
        with pytest.raises(MCPError, match="list_video_tasks"):
            await client.read_resource("gravitex://tasks/video_nope")


# --- upstream errors ---------------------------------------------------------------------


async def test_submit_500_means_one_post_and_a_clear_warning(h: Harness) -> None:
    h.sim.faults.add("submit", "accepted_but_lost", mode="status", status=500)
    async with connected(h) as client:
        result = await client.call_tool("generate_video", {"model": "sora-2", "prompt": "a cat"})
        tasks = structured(await client.call_tool("list_video_tasks", {}))["tasks"]
    assert result.is_error
    assert "list_video_tasks" in text_of(result)
    assert h.sim.calls["submit"] == 1
    assert len(h.sim.tasks) == 1  # the upstream did create it
    assert tasks[0]["status"] == "submit_unknown"


async def test_submit_429_then_success_makes_one_task(h: Harness) -> None:
    h.sim.faults.add("submit", "rate_limit", retry_after=2)
    async with connected(h) as client:
        data = structured(
            await client.call_tool(
                "generate_video", {"model": "sora-2", "prompt": "a cat", "wait_seconds": 0}
            )
        )
    assert h.sim.calls["submit"] == 2
    assert len(h.sim.tasks) == 1
    assert data["task_id"] in h.sim.tasks
    assert 2 in h.clock.sleeps  # Retry-After honoured on the fake clock


async def test_wrong_key_is_an_error_without_the_key(tmp_path: Path) -> None:
    h = make_harness(tmp_path, api_key="sk-wrong-key-999")
    async with connected(h) as client:
        result = await client.call_tool("generate_video", {"model": "sora-2", "prompt": "a cat"})
    assert result.is_error
    message = text_of(result)
    assert "sk-wrong-key-999" not in message
    assert API_KEY not in message
    assert "GRAVITEX_API_KEY" in message


async def test_query_failure_after_submit_names_the_task(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    h.sim.faults.add("query", "server_error", status=503, times=None)
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "a cat", "wait_seconds": 20}
        )
    assert result.is_error
    task_id = next(iter(h.sim.tasks))
    assert task_id in text_of(result)
    assert "check_video_task" in text_of(result)


# --- cancellation --------------------------------------------------------------------------


class GatedClock(FakeClock):
    """A fake clock whose sleeps wait for the test to open the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.parked = anyio.Event()
        self.queries_at_cancel = -1
        self.sim_calls: Callable[[], int] = lambda: -1

    async def sleep(self, seconds: float) -> None:
        self.parked.set()
        await self.gate.wait()
        await super().sleep(seconds)


async def test_cancel_ends_the_wait_and_keeps_the_task(tmp_path: Path) -> None:
    clock = GatedClock()
    h = make_harness(tmp_path, clock=clock)
    clock.sim_calls = lambda: h.sim.calls["query"]
    async with connected(h) as client:
        task_id = await _submit(client)
        # A real-time bound only so that a broken cancel fails instead of hanging.
        with anyio.fail_after(10):
            await _call_then_cancel(client, clock, task_id)
        queries_before_cancel = clock.queries_at_cancel
        for _ in range(100):
            await anyio.lowlevel.checkpoint()
        assert h.sim.calls["query"] == queries_before_cancel
        tasks = structured(await client.call_tool("list_video_tasks", {}))["tasks"]
    assert tasks[0]["task_id"] == task_id
    assert tasks[0]["status"] == "queued"


async def _call_then_cancel(client: Any, clock: GatedClock, task_id: str) -> None:
    async with anyio.create_task_group() as tg:

        async def call() -> None:
            await client.call_tool("check_video_task", {"task_id": task_id, "wait_seconds": 600})

        tg.start_soon(call)
        await clock.parked.wait()  # the server is waiting between polls
        clock.queries_at_cancel = clock.sim_calls()
        tg.cancel_scope.cancel()


async def test_simulated_failure_style_metadata_is_read(tmp_path: Path) -> None:
    config = SimulatorConfig(
        api_keys=frozenset({API_KEY}),
        queued_seconds=1,
        processing_seconds=2,
        failure_style="metadata",
    )
    h = make_harness(tmp_path, sim_config=config)
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "[fail]", "wait_seconds": 30}
        )
    assert result.is_error
    assert "inappropriate" in text_of(result)


# --- the call's time budget, failed saves, cancelled submits --------------------------


async def test_rate_limited_polls_never_hold_the_call_past_its_budget(h: Harness) -> None:
    from gravitex_mcp.service.videos import FOLLOW_GRACE_SECONDS

    async with connected(h) as client:
        task_id = await _submit(client)
        h.sim.faults.add("query", "rate_limit", retry_after=55, times=None)
        start = h.clock.now
        result = await client.call_tool("check_video_task", {"task_id": task_id, "wait_seconds": 5})
        generate_start = h.clock.now
        generated = await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "a dog", "wait_seconds": 5}
        )
    assert generate_start - start <= 5 + FOLLOW_GRACE_SECONDS
    assert h.clock.now - generate_start <= 5 + FOLLOW_GRACE_SECONDS
    # no status arrived in time: an error that names the task and how to go on
    assert result.is_error
    assert task_id in text_of(result)
    assert "check_video_task" in text_of(result)
    # the submit itself worked: its id and status come back, with the next step
    data = structured(generated)
    assert data["status"] == "submitted"
    assert "check_video_task" in data["next_step"]


async def test_failed_save_keeps_the_task_id_and_says_how_to_retry(h: Harness) -> None:
    h.sim.faults.add("file", "html_instead_of_video", times=None)
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {
                "model": "veo-3.1-fast-generate-preview",
                "prompt": "a city",
                "wait_seconds": 60,
                "download": True,
            },
        )
    assert result.is_error
    assert result.structured_content is not None
    data = result.structured_content
    task_id = data["task_id"]
    assert task_id in h.sim.tasks
    assert data["status"] == "succeeded"
    assert data["download_error"]
    assert "download_video" in data["next_step"]
    assert task_id in text_of(result)
    assert list(h.settings.output_dir.glob("*.mp4")) == []


async def test_check_with_download_twice_saves_once(h: Harness) -> None:
    async with connected(h) as client:
        task_id = await _submit(client, model="wan2.5-t2v-preview")
        args = {"task_id": task_id, "wait_seconds": 60, "download": True}
        first = structured(await client.call_tool("check_video_task", args))
        second = structured(await client.call_tool("check_video_task", args))
    assert first["path"] == second["path"]
    assert len(list(h.settings.output_dir.glob("*.mp4"))) == 1
    assert h.sim.calls["file"] == 1


class GatedSubmits(httpx2.AsyncBaseTransport):
    """Holds every POST until the test opens the gate."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.in_flight = anyio.Event()
        self.gate = anyio.Event()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method == "POST":
            self.in_flight.set()
            await self.gate.wait()
        return await self.inner.handle_async_request(request)


async def test_cancel_during_submit_still_records_the_task(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = Simulator(
        SimulatorConfig(api_keys=frozenset({API_KEY}), queued_seconds=5, processing_seconds=5),
        clock=clock.monotonic,
    )
    gated = GatedSubmits(simulator_transport(sim))
    h = make_harness(tmp_path, sim=sim, clock=clock, transport=gated)
    async with connected(h) as client:
        with anyio.fail_after(10):  # real-time bound: a broken shield fails, never hangs
            async with anyio.create_task_group() as tg:

                async def call() -> None:
                    await client.call_tool("generate_video", {"model": "sora-2", "prompt": "x"})

                tg.start_soon(call)
                await gated.in_flight.wait()
                tg.cancel_scope.cancel()
                gated.gate.set()  # the POST goes through after the agent gave up
        tasks = structured(await client.call_tool("list_video_tasks", {}))["tasks"]
    assert len(sim.tasks) == 1
    assert tasks[0]["task_id"] == next(iter(sim.tasks))
    assert tasks[0]["status"] == "submitted"


async def test_type_and_model_problems_come_back_together(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video",
            {"model": "sora-2", "prompt": "a cat", "aspect_ratio": "2:1", "duration": 5},
        )
    assert result.is_error
    message = text_of(result)
    assert "aspect_ratio" in message
    assert "16:9, 9:16" in message
    assert "4, 8, 12" in message
    assert "sora-2" in message
    assert h.sim.calls["submit"] == 0


@pytest.mark.parametrize(
    ("tool", "arguments", "problem"),
    [
        ("check_video_task", {"task_id": "video_x", "wait_seconds": "30"}, "wait_seconds"),
        ("check_video_task", {"task_id": "video_x", "download": "true"}, "download"),
        ("check_video_task", {"task_id": "video_x", "preview": 1}, "preview"),
        ("list_video_tasks", {"limit": 2.0}, "limit"),
        ("download_video", {"task_id": 42}, "task_id"),
        ("join_videos", {"task_ids": ["video_a", 7]}, "task_ids[1]"),
    ],
    ids=["str-int", "str-bool", "int-bool", "float-int", "int-str", "int-item"],
)
async def test_every_tool_takes_each_argument_as_its_json_type_only(
    h: Harness, tool: str, arguments: dict[str, Any], problem: str
) -> None:
    """As generate_video does: "30" is not 30 and 1 is not true, in every tool."""
    async with connected(h) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    value = json.dumps(arguments[problem.split("[")[0]])
    if "[" in problem:
        value = json.dumps(arguments["task_ids"][1])
    assert f"{problem}: " in text_of(result)
    assert f"(given: {value}, " in text_of(result)
    assert h.sim.calls["query"] == 0


async def test_enum_arguments_still_take_their_words(h: Harness) -> None:
    async with connected(h) as client:
        veo = await client.call_tool("list_models", {"family": "veo"})
        done = await client.call_tool("list_video_tasks", {"status": "succeeded"})
    assert not veo.is_error, text_of(veo)
    assert not done.is_error, text_of(done)
