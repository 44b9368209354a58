"""Prompts (slash commands) and argument completion, through the official client."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mcp.types import PromptReference, ResourceTemplateReference, TextContent

from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.domain import JournalStatus
from gravitex_mcp.store.journal import Journal
from tests.server_harness import connected, make_harness, structured


async def test_prompts_list_shows_make_video_and_continue_video(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        listed = await client.list_prompts()
        capabilities = client.server_capabilities
    prompts = {p.name: p for p in listed.prompts}
    assert set(prompts) == {"make_video", "continue_video", "storyboard"}
    make = {a.name: a.required for a in prompts["make_video"].arguments or []}
    assert make == {"idea": True, "model": False, "seconds": False}
    cont = {a.name: a.required for a in prompts["continue_video"].arguments or []}
    assert cont == {"task_id": True, "idea": False}
    assert capabilities.completions is not None, "the server announces completions"
    assert capabilities.prompts is not None


async def test_make_video_tells_the_steps(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        got = await client.get_prompt(
            "make_video", {"idea": "a fox in the snow", "model": "sora-2", "seconds": "8"}
        )
        bare = await client.get_prompt("make_video", {"idea": "a fox in the snow"})
    (message,) = got.messages
    assert message.role == "user"
    assert isinstance(message.content, TextContent)
    text = message.content.text
    for needed in ("a fox in the snow", "sora-2", "8 seconds", "generate_video", "download: true"):
        assert needed in text, needed
    assert "contact sheet" in text
    assert "check_video_task" in text
    (bare_message,) = bare.messages
    assert isinstance(bare_message.content, TextContent)
    assert "Call list_models first" in bare_message.content.text


async def test_continue_video_starts_from_the_last_frame(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    async with connected(h) as client:
        got = await client.get_prompt(
            "continue_video", {"task_id": "video_abc", "idea": "it flies"}
        )
    (message,) = got.messages
    assert isinstance(message.content, TextContent)
    text = message.content.text
    assert 'extract_frames with task_id "video_abc" and at: ["last"]' in text
    assert "generate_video" in text
    assert "it flies" in text


async def test_completion_answers_task_ids_from_the_journal(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    template = ResourceTemplateReference(uri="gravitex://tasks/{task_id}")
    async with connected(h) as client:
        made = [
            structured(
                await client.call_tool(
                    "generate_video", {"model": model, "prompt": "a boat", "wait_seconds": 0}
                )
            )["task_id"]
            for model in ("sora-2", "sora-2", "wan2.5-t2v-preview")
        ]
        everything = await client.complete(template, {"name": "task_id", "value": ""})
        sora = await client.complete(template, {"name": "task_id", "value": "video_"})
        one = await client.complete(template, {"name": "task_id", "value": made[0][:14]})
        none = await client.complete(template, {"name": "task_id", "value": "nope"})
        prompt_ref = PromptReference(name="continue_video")
        via_prompt = await client.complete(prompt_ref, {"name": "task_id", "value": ""})
    assert sorted(everything.completion.values) == sorted(made)
    assert everything.completion.values[0] == made[-1], "newest first"
    assert sorted(sora.completion.values) == sorted(made[:2])
    assert one.completion.values == [made[0]]
    assert none.completion.values == []
    assert sorted(via_prompt.completion.values) == sorted(made)


async def test_completion_counts_every_match_and_reaches_the_oldest_task(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    minute = iter(range(1000))
    # 136 tasks, one a minute (created_at orders them); ids as upstream makes them.
    journal = Journal.open(
        h.settings.state_dir,
        now=lambda: datetime(2026, 12, 1, tzinfo=UTC) + timedelta(minutes=next(minute)),
    )
    made = [f"video_{hashlib.sha256(bytes([i])).hexdigest()[:24]}" for i in range(136)]
    try:
        for task_id in made:
            local_id = await journal.begin_submission(model="sora-2", family="sora", arguments={})
            await journal.complete_submission(
                local_id, task_id=task_id, status=JournalStatus.QUEUED
            )
    finally:
        journal.close()
    oldest = made[0]
    unique = next(
        oldest[:n]
        for n in range(1, len(oldest))
        if sum(t.startswith(oldest[:n]) for t in made) == 1
    )
    assert len(unique) < len(oldest)
    template = ResourceTemplateReference(uri="gravitex://tasks/{task_id}")
    async with connected(h) as client:
        every = (await client.complete(template, {"name": "task_id", "value": ""})).completion
        video = (await client.complete(template, {"name": "task_id", "value": "video_"})).completion
        full = (await client.complete(template, {"name": "task_id", "value": oldest})).completion
        short = (await client.complete(template, {"name": "task_id", "value": unique})).completion
        upper = (
            await client.complete(template, {"name": "task_id", "value": oldest.upper()})
        ).completion
    assert (len(every.values), every.total, every.has_more) == (100, 136, True)
    assert every.values == made[::-1][:100], "the newest 100, newest first"
    assert (len(video.values), video.total, video.has_more) == (100, 136, True)
    assert (full.values, full.total, full.has_more) == ([oldest], 1, False)
    assert (short.values, short.total, short.has_more) == ([oldest], 1, False)
    assert (upper.values, upper.total) == ([], 0), "ids are matched case-sensitively"


async def test_completion_answers_model_ids_for_the_prompts(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    ref = PromptReference(name="make_video")
    async with connected(h) as client:
        every = await client.complete(ref, {"name": "model", "value": ""})
        veo = await client.complete(ref, {"name": "model", "value": "veo-3.1"})
        other = await client.complete(ref, {"name": "idea", "value": "a"})
    assert every.completion.values == list(catalog.MODEL_IDS)
    assert veo.completion.values == [m for m in catalog.MODEL_IDS if m.startswith("veo-3.1")]
    assert len(veo.completion.values) == 2
    assert other.completion.values == []
