"""Listings stay small whatever was asked; echoed argument names are clipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp.types import TextResourceContents

from gravitex_mcp.domain import TaskStatus
from gravitex_mcp.store.journal import Journal
from tests.server_harness import Harness, connected, make_harness, structured, text_of


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def _journal_task(h: Harness, prompt: str) -> str:
    journal = Journal.open(h.settings.state_dir)
    try:
        local_id = await journal.begin_submission(
            model="sora-2", family="sora", arguments={"model": "sora-2", "prompt": prompt}
        )
        await journal.complete_submission(
            local_id, task_id="video_big", status=TaskStatus.SUBMITTED
        )
    finally:
        journal.close()
    return "video_big"


async def test_a_listing_after_a_5_mb_prompt_stays_under_100_kb(h: Harness) -> None:
    prompt = "a very long story " * (5 * 1024 * 1024 // 18)
    task_id = await _journal_task(h, prompt)
    async with connected(h) as client:
        listed = await client.call_tool("list_video_tasks", {})
        resource = await client.read_resource(f"gravitex://tasks/{task_id}")
    data = structured(listed)
    size = len(json.dumps(data)) + len(text_of(listed))
    assert size < 100 * 1024, size
    (task,) = data["tasks"]
    assert task["task_id"] == task_id
    assert task["arguments"]["prompt"].startswith("a very long story")
    assert task["arguments"]["prompt"].endswith("…")
    assert task_id in text_of(listed)
    # the whole prompt stays in the task's resource
    (contents,) = resource.contents
    assert isinstance(contents, TextResourceContents)
    assert json.loads(contents.text)["arguments"]["prompt"] == prompt


async def test_listing_text_is_short_and_does_not_repeat_the_json(h: Harness) -> None:
    async with connected(h) as client:
        await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "a cat", "wait_seconds": 0}
        )
        listed = await client.call_tool("list_video_tasks", {})
    text = text_of(listed)
    assert "a cat" in text
    assert "sora-2" in text
    assert '"tasks"' not in text  # the JSON is in structuredContent only
    assert len(text) < 300


async def test_an_unknown_argument_name_is_clipped_in_the_error(h: Harness) -> None:
    name = "x" * 100_000
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "a cat", name: 1}
        )
    assert result.is_error
    assert "is not an argument of generate_video" in text_of(result)
    assert len(text_of(result)) < 5_000
