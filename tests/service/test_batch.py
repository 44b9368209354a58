"""generate_videos: every job checked first, submitted at once, waited for together."""

from __future__ import annotations

import base64
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.types import ImageContent

from gravitex_mcp.simulator import simulator_transport
from gravitex_mcp.video.preview import MAX_SHEET_BYTES
from tests.server_harness import Harness, connected, make_harness, structured, text_of


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


def _job(prompt: str, **extra: object) -> dict[str, object]:
    return {"model": "sora-2", "prompt": prompt, **extra}


async def test_one_bad_job_sends_nothing_and_names_its_index(h: Harness) -> None:
    jobs = [_job("a cat"), _job("a dog", duration=7), _job("a cow", resolution="4k")]
    async with connected(h) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs})
    assert result.is_error
    text = text_of(result)
    assert "jobs[1].duration" in text
    assert "jobs[2].resolution" in text
    assert "jobs[0]" not in text
    assert h.sim.calls["submit"] == 0


async def test_type_and_model_problems_of_different_jobs_come_back_together(
    h: Harness,
) -> None:
    jobs = [_job("a cat", duration="long"), _job("a dog", duration=7), {"prompt": "no model"}]
    async with connected(h) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs})
    text = text_of(result)
    assert result.is_error
    assert text.index("jobs[0].duration") < text.index("jobs[1].duration")
    assert text.index("jobs[1].duration") < text.index("jobs[2].model")
    assert h.sim.calls["submit"] == 0


async def test_batch_shape_problems_are_named(h: Harness) -> None:
    async with connected(h) as client:
        empty = await client.call_tool("generate_videos", {"jobs": []})
        too_many = await client.call_tool("generate_videos", {"jobs": [_job("x")] * 9})
        inner = await client.call_tool(
            "generate_videos", {"jobs": [_job("x", wait_seconds=3)], "wait_secs": 1}
        )
    assert empty.is_error
    assert "1 to 8 jobs" in text_of(empty)
    assert too_many.is_error
    assert "got 9 jobs" in text_of(too_many)
    assert inner.is_error
    assert "jobs[0].wait_seconds" in text_of(inner)
    assert "wait_secs" in text_of(inner)
    assert h.sim.calls["submit"] == 0


async def test_every_server_side_argument_of_a_job_is_named(h: Harness) -> None:
    # A job's preview used to pass unnoticed (and then did nothing): every argument the
    # server acts on itself is refused inside a job, by its name.
    jobs = [_job("x", preview=False), _job("y", dry_run=True), _job("z", idempotency_key="k")]
    async with connected(h) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs})
    assert result.is_error
    text = text_of(result)
    for field in ("jobs[0].preview", "jobs[1].dry_run", "jobs[2].idempotency_key"):
        assert field in text
    assert h.sim.calls["submit"] == 0


async def test_a_batch_of_three_ends_with_three_saved_videos(h: Harness) -> None:
    jobs = [
        _job("a cat"),
        _job("a cat", duration=8),
        {"model": "wan2.5-t2v-preview", "prompt": "a dog"},
    ]
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_videos",
            {"jobs": jobs, "download": True},
            progress_callback=h.on_progress,
        )
    data = structured(result)
    assert h.sim.calls["submit"] == 3
    assert [j["index"] for j in data["jobs"]] == [0, 1, 2]
    assert [j["status"] for j in data["jobs"]] == ["succeeded"] * 3
    paths = {j["path"] for j in data["jobs"]}
    assert len(paths) == 3
    assert all(Path(p).is_file() for p in paths)
    assert {j["task_id"] for j in data["jobs"]} == set(h.sim.tasks)
    assert data["retry_jobs"] == []
    # One progress stream for all the jobs, strictly increasing.
    values = [p for p, _, _ in h.progress]
    assert len(values) >= 3
    assert values == sorted(set(values))
    assert {m.split(" ")[0] for _, _, m in h.progress if m and m.startswith("jobs[")} == {
        "jobs[0]",
        "jobs[1]",
        "jobs[2]",
    }


async def test_each_saved_job_shows_its_contact_sheet_as_generate_video_does(h: Harness) -> None:
    jobs = [_job("a cat"), _job("a cat", duration=8)]
    async with connected(h) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs, "download": True})
        kept = await client.call_tool("generate_videos", {"jobs": jobs[:1]})  # not saved
    data = structured(result)
    kinds = [block.type for block in result.content]
    # text, then each saved video's link followed by its sheet, in job order
    assert kinds == ["text", "resource_link", "image", "resource_link", "image"]
    sheets = [block for block in result.content if isinstance(block, ImageContent)]
    for job, sheet in zip(data["jobs"], sheets, strict=True):
        assert sheet.mime_type == "image/jpeg"
        jpeg = base64.b64decode(sheet.data, validate=True)
        assert jpeg == Path(job["preview"]["path"]).read_bytes()
        assert len(jpeg) <= MAX_SHEET_BYTES
    assert [block.type for block in kept.content] == ["text"]


async def test_batch_settings_are_strict_and_echoed_as_json(h: Harness) -> None:
    async with connected(h) as client:
        result = await client.call_tool(
            "generate_videos", {"jobs": [_job("x")], "download": "true"}
        )
    assert result.is_error
    assert 'download: "true" (a string) is not valid' in text_of(result)
    assert h.sim.calls["submit"] == 0


async def test_a_failed_submit_leaves_the_others_saved_and_says_what_to_resend(
    h: Harness,
) -> None:
    h.sim.faults.add("submit", "html_page", status=400)  # one submit refused
    jobs = [_job("take one"), _job("take two"), _job("take three")]
    async with connected(h) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs, "download": True})
    data = structured(result)
    failed = [j for j in data["jobs"] if j["status"] == "submit_failed"]
    saved = [j for j in data["jobs"] if j["status"] == "succeeded"]
    assert len(failed) == 1
    assert len(saved) == 2
    assert all(Path(j["path"]).is_file() for j in saved)
    assert data["retry_jobs"] == [failed[0]["index"]]
    assert failed[0]["submit_error"]
    assert f"[{failed[0]['index']}]" in data["next_step"]
    assert len(h.sim.tasks) == 2


async def test_a_short_wait_returns_task_ids_to_keep_checking(h: Harness) -> None:
    async with connected(h) as client:
        data = structured(
            await client.call_tool(
                "generate_videos", {"jobs": [_job("a"), _job("b")], "wait_seconds": 0}
            )
        )
    assert [j["status"] for j in data["jobs"]] == ["submitted", "submitted"]
    assert "check_video_task" in data["next_step"]
    for job in data["jobs"]:
        assert job["task_id"] in data["next_step"]


class CountingSubmits(httpx2.AsyncBaseTransport):
    """The simulator, noting how many submits are on their way at once."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, expected: int) -> None:
        self.inner = inner
        self.expected = expected
        self.all_in = anyio.Event()
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.method != "POST":
            return await self.inner.handle_async_request(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight == self.expected:
            self.all_in.set()
        try:
            # Each submit is held until all are on their way; one sent after another
            # never gets there, and goes on after a few real seconds.
            with anyio.move_on_after(3):
                await self.all_in.wait()
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1


async def test_the_jobs_are_submitted_concurrently(tmp_path: Path) -> None:
    base = make_harness(tmp_path)
    counting = CountingSubmits(simulator_transport(base.sim), expected=3)
    h = make_harness(tmp_path, sim=base.sim, clock=base.clock, transport=counting)
    jobs = [_job("a cat"), _job("a dog"), _job("a cow")]
    async with connected(h) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs, "wait_seconds": 0})
    assert not result.is_error, text_of(result)
    assert h.sim.calls["submit"] == 3
    assert counting.most_in_flight == 3
