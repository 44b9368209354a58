"""A burst of calls keeps to a few threads: the event loop is not one of forty
threads taking turns at the GIL (bench/RESULTS.md, the 200-job load)."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio

from gravitex_mcp.server.app import DEFAULT_THREADS
from gravitex_mcp.store.sqlite_open import LISTINGS, READERS
from tests.server_harness import connected, make_harness, structured

JOURNAL_WRITER = 1  # the journal writes one at a time, on a thread of its own turn


def anyio_workers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "AnyIO worker thread")


async def test_a_burst_of_submits_uses_a_bounded_number_of_threads(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    before = anyio_workers()  # idle workers of earlier tests' event loops, not this one's
    most = 0
    submitted: list[str] = []

    async def submit(index: int) -> None:
        nonlocal most
        result = await client.call_tool(
            "generate_video",
            {"model": "sora-2", "prompt": f"a cat, take {index}", "wait_seconds": 0},
        )
        submitted.append(structured(result)["task_id"])
        most = max(most, anyio_workers())

    async with connected(h) as client:
        async with anyio.create_task_group() as group:
            for index in range(80):
                group.start_soon(submit, index)
        most = max(most, anyio_workers())
    assert len(set(submitted)) == 80
    # anyio's own default would have started up to 40 for this burst.
    assert most - before <= DEFAULT_THREADS + READERS + LISTINGS + JOURNAL_WRITER, (before, most)
