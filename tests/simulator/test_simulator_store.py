"""The simulator keeps its tasks in the state folder, so the next process finds them.

Claude Desktop restarts the server, the Inspector starts one process per call and
SSE runs the lifespan per connection: a task made by one ``--simulate`` server must
be checked and downloaded by the next, finishing on the (shared) clock.
"""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from gravitex_mcp.domain import Family
from gravitex_mcp.server.app import build_server
from gravitex_mcp.simulator import STORE_FILENAME, Simulator, SimulatorConfig, TaskStore
from gravitex_mcp.simulator.store import task_from_json, task_to_json
from gravitex_mcp.simulator.tasks import SimTask
from gravitex_mcp.upstream.choose import simulated_upstream
from tests.conftest import FakeClock, simulator_settings
from tests.proc import SERVER_CMD, STARTUP_TIMEOUT, clean_env, free_port, stop
from tests.server_harness import structured as _structured

SESSION_TIMEOUT = 60.0


def _task(task_id: str = "video_0123456789abcdef") -> SimTask:
    return SimTask(
        task_id=task_id,
        model="veo-3.1-generate-preview",
        family=Family.VEO,
        prompt="a boat",
        created_at=1000.0,
        queued_seconds=1.0,
        processing_seconds=4.0,
        video_size=20000,
        fails=False,
        error_code=400,
        error_message="nope",
        body={"model": "veo-3.1-generate-preview", "prompt": "a boat"},
    )


def test_a_task_round_trips_through_json() -> None:
    task = _task()
    assert task_from_json(task_to_json(task)) == task


def test_a_task_with_its_own_clip_round_trips_through_json() -> None:
    # The simulator renders each task's mp4 at submit time: the next process serves it.
    task = dataclasses.replace(_task(), clip=b"\x00\x00\x00\x18ftypisom" + bytes(range(256)))
    assert task_from_json(task_to_json(task)) == task


def test_inline_images_of_a_body_are_stored_by_digest_only() -> None:
    image = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" * 4096).decode()
    task = dataclasses.replace(_task(), body={"model": "veo", "image": image})
    text = task_to_json(task)
    assert image not in text
    stored = task_from_json(text).body
    assert stored["model"] == "veo"
    assert str(stored["image"]).startswith("sha256:")


def test_two_stores_on_one_file_see_each_others_tasks(tmp_path: Path) -> None:
    first = TaskStore.in_folder(tmp_path)
    second = TaskStore.in_folder(tmp_path)
    try:
        assert (tmp_path / STORE_FILENAME).is_file()
        first["video_0123456789abcdef"] = _task()
        assert "video_0123456789abcdef" in second
        assert second["video_0123456789abcdef"] == _task()
        assert list(second) == ["video_0123456789abcdef"]
        assert "video_ffffffffffffffff" not in second
        # One signing key for both, so a URL signed by one process verifies in the other.
        assert first.signing_key() == second.signing_key()
        second.clear()
        assert len(first) == 0
    finally:
        first.close()
        second.close()


def test_a_memory_store_keeps_nothing_on_disk(tmp_path: Path) -> None:
    store = TaskStore()
    store["video_0123456789abcdef"] = _task()
    assert list(tmp_path.iterdir()) == []
    del store["video_0123456789abcdef"]
    assert store == {}
    with pytest.raises(KeyError):
        del store["video_0123456789abcdef"]


async def test_a_second_simulator_serves_the_first_ones_task_on_the_shared_clock(
    tmp_path: Path,
) -> None:
    now = [1_800_000_000.0]
    config = SimulatorConfig(queued_seconds=1, processing_seconds=4)
    key = {"Authorization": "Bearer sk-test"}
    one = Simulator(config, clock=lambda: now[0], store=TaskStore.in_folder(tmp_path))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=one.app), base_url="http://sim"
    ) as client:
        made = await client.post(
            "/v1/video/generations",
            json={"model": "veo-3.1-generate-preview", "prompt": "a boat"},
            headers=key,
        )
    assert made.status_code == 200, made.text
    task_id = made.json()["task_id"]
    one.close()

    two = Simulator(config, clock=lambda: now[0], store=TaskStore.in_folder(tmp_path))
    try:
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=two.app), base_url="http://sim"
        ) as client:
            early = await client.get(f"/v1/video/generations/{task_id}", headers=key)
            assert early.json()["status"] == "queued"
            now[0] += 5
            done = (await client.get(f"/v1/video/generations/{task_id}", headers=key)).json()
            assert done["status"] == "succeeded"
            video = await client.get(done["url"])
            assert video.status_code == 200
            assert video.content[4:8] == b"ftyp"
    finally:
        two.close()


async def test_two_server_instances_over_one_state_dir_share_the_simulator(
    tmp_path: Path,
) -> None:
    settings = simulator_settings(tmp_path, simulator_seconds=20)
    clock = FakeClock()

    first_upstream = simulated_upstream(settings, clock=clock.monotonic)
    try:
        first = build_server(settings, upstream=first_upstream, clock=clock)
        async with Client(first, raise_exceptions=False) as client:
            made = _structured(
                await client.call_tool(
                    "generate_video",
                    {"model": "sora-2", "prompt": "a paper boat", "wait_seconds": 0},
                )
            )
    finally:
        assert first_upstream.simulator is not None
        first_upstream.simulator.close()
    assert made["status"] in ("submitted", "queued", "in_progress"), made

    second_upstream = simulated_upstream(settings, clock=clock.monotonic)
    try:
        second = build_server(settings, upstream=second_upstream, clock=clock)
        async with Client(second, raise_exceptions=False) as client:
            done = _structured(
                await client.call_tool(
                    "check_video_task",
                    {"task_id": made["task_id"], "wait_seconds": 60, "download": True},
                )
            )
    finally:
        assert second_upstream.simulator is not None
        second_upstream.simulator.close()
    assert done["status"] == "succeeded", done
    path = Path(done["path"])
    assert path.read_bytes()[4:8] == b"ftyp"
    assert clock.now >= 1000.0 + 20, "completion followed the clock, not the restart"


@pytest.mark.slow
async def test_a_task_made_by_one_process_is_checked_and_downloaded_by_the_next(
    tmp_path: Path,
) -> None:
    env = {
        "HOME": str(tmp_path),
        "GRAVITEX_OUTPUT_DIR": str(tmp_path / "videos"),
        "GRAVITEX_STATE_DIR": str(tmp_path / "state"),
        "GRAVITEX_SIMULATOR_SECONDS": "1",
        "GRAVITEX_LOG_LEVEL": "WARNING",
    }
    params = StdioServerParameters(
        command=SERVER_CMD[0], args=[*SERVER_CMD[1:], "--simulate"], env=env
    )

    async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        with anyio.fail_after(SESSION_TIMEOUT), (tmp_path / "stderr").open("a") as err:
            async with Client(stdio_client(params, errlog=err), read_timeout_seconds=30) as c:
                return _structured(await c.call_tool(name, arguments))

    made = await call("generate_video", {"model": "sora-2", "prompt": "a boat", "wait_seconds": 0})
    done = await call(
        "check_video_task", {"task_id": made["task_id"], "wait_seconds": 30, "download": True}
    )
    assert done["status"] == "succeeded", done
    assert Path(done["path"]).read_bytes()[4:8] == b"ftyp"


@pytest.mark.slow
def test_the_simulator_command_honours_simulator_seconds(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, GRAVITEX_SIMULATOR_SECONDS="40")
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "sim.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [*SERVER_CMD, "simulator", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx2.Client(base_url=base, timeout=5.0) as client:
            while True:
                assert proc.poll() is None, (tmp_path / "sim.stderr").read_text()
                try:
                    if client.get("/_simulator/state").status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.1)  # waiting for a real process to listen, not simulated time
            made = client.post(
                "/v1/video/generations",
                json={"model": "veo-3.1-generate-preview", "prompt": "a boat"},
                headers={"Authorization": "Bearer sk-anything"},
            )
            assert made.status_code == 200, made.text
            (task,) = client.get("/_simulator/state").json()["tasks"]
    finally:
        stop(proc)
    assert task["finished_at"] - task["created_at"] == pytest.approx(40.0)
