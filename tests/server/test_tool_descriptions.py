"""What tools/list shows: descriptions without docstring indentation, filters from the enums."""

from __future__ import annotations

from pathlib import Path

import pytest

from gravitex_mcp.domain import JournalStatus, TaskStatus
from gravitex_mcp.server.tools import described
from tests.server_harness import Harness, connected, make_harness


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def test_descriptions_carry_no_docstring_indentation(h: Harness) -> None:
    async with connected(h) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        text = tool.description or ""
        assert text == text.strip(), tool.name
        for line in text.split("\n"):
            assert line == line.strip(), (tool.name, line)
        assert "  " not in text, tool.name
        assert "\n\n\n" not in text, tool.name


def test_described_keeps_paragraphs_and_joins_their_lines() -> None:
    doc = """First line
        goes on here.

        Second paragraph."""
    assert described(doc) == "First line goes on here.\n\nSecond paragraph."


async def test_status_filter_offers_every_journal_and_task_status(h: Harness) -> None:
    async with connected(h) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    schema = tools["list_video_tasks"].input_schema
    (choice,) = [c for c in schema["properties"]["status"]["anyOf"] if "$ref" in c]
    enum = schema["$defs"][choice["$ref"].rsplit("/", 1)[1]]["enum"]
    assert set(enum) == {s.value for s in JournalStatus}
    assert {s.value for s in TaskStatus} <= set(enum)
    assert len(enum) == len(set(enum))
