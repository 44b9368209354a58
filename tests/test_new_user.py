"""What a new user trying the server with the MCP Inspector ran into, each fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from .server_harness import Harness, connected, make_harness, structured, text_of


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
