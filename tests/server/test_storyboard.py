"""The storyboard prompt: shots in order, chained through last frames, then joined."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gravitex_mcp.errors import InvalidArgumentsError
from gravitex_mcp.server.storyboard import parse_shots, storyboard_text
from tests.server_harness import connected, make_harness


def test_shots_as_a_json_list_or_one_per_line() -> None:
    assert parse_shots('["a", " b ", ""]') == ["a", "b"]
    assert parse_shots("a\n\n  b\n") == ["a", "b"]


@pytest.mark.parametrize("shots", ["only one", json.dumps(["x"] * 21), '["a", 3]', "[oops"])
def test_bad_shots_are_refused_naming_the_argument(shots: str) -> None:
    with pytest.raises(InvalidArgumentsError, match="shots"):
        parse_shots(shots)


def test_a_model_that_takes_a_first_frame_chains_the_shots() -> None:
    text = storyboard_text("a fox wakes\nthe fox runs", "sora-2", "8")
    assert text.index('1. "a fox wakes"') < text.index('2. "the fox runs"')
    assert "extract_frames" in text
    assert "last frame" in text
    assert '"duration": 8' in text
    assert "join_videos" in text


def test_a_text_only_model_generates_each_shot_from_its_prompt() -> None:
    text = storyboard_text('["a", "b"]', "wan2.5-t2v-preview")
    assert "extract_frames" not in text
    assert "does not start from an image" in text
    assert "join_videos" in text


def test_an_unknown_model_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(InvalidArgumentsError, match="sora-2"):
        storyboard_text("a\nb", "nope")


async def test_the_prompt_is_served(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        result = await client.get_prompt("storyboard", {"shots": "one\ntwo", "model": "sora-2"})
    assert "storyboard" in prompts
    args = {a.name: a for a in prompts["storyboard"].arguments or []}
    assert args["shots"].required is True
    text = result.messages[0].content
    assert getattr(text, "text", "").startswith("Make one video from these 2 shots")
