"""What a new user trying the server with the MCP Inspector ran into, each fixed."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS

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
