"""VideoService without MCP: journal failures around a submit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.domain import Delivery, Family, JournalStatus, TaskStatus
from gravitex_mcp.errors import JournalError
from gravitex_mcp.service.delivery import delivery_from_answer as _delivery_from_answer
from gravitex_mcp.service.videos import VideoService
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.records import TaskRecord
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.client import GravitexClient, TaskSnapshot
from tests.conftest import FakeClock
from tests.server_harness import API_KEY, make_settings


class BrokenAfterSubmit(Journal):
    async def complete_submission(
        self, local_id: str, *, task_id: str, status: TaskStatus | JournalStatus
    ) -> TaskRecord:
        raise JournalError("disk I/O error")

    async def record_status(self, task_id: str, **kwargs: Any) -> TaskRecord | None:
        raise JournalError("disk I/O error")


class BrokenBeforeSubmit(Journal):
    async def begin_submission(
        self,
        *,
        model: str,
        family: str,
        arguments: Mapping[str, Any],
        arguments_hash: str | None = None,
    ) -> str:
        raise JournalError("state dir is read-only")


def _sim(clock: FakeClock) -> Simulator:
    config = SimulatorConfig(api_keys=frozenset({API_KEY}), queued_seconds=1, processing_seconds=2)
    return Simulator(config, clock=clock.monotonic)


async def _service(
    tmp_path: Path, journal_cls: type[Journal], sim: Simulator, clock: FakeClock
) -> tuple[VideoService, GravitexClient, Journal]:
    settings = make_settings(tmp_path)
    journal = journal_cls.open(settings.state_dir)
    client = GravitexClient(
        api_key=API_KEY, base_url=settings.base_url, transport=simulator_transport(sim)
    )
    service = VideoService(
        settings=settings,
        client=client,
        journal=journal,
        output=OutputDir(settings.output_dir),
        clock=clock,
    )
    return service, client, journal


async def test_task_id_reaches_the_agent_when_the_journal_fails_after_submit(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    sim = _sim(clock)
    service, client, journal = await _service(tmp_path, BrokenAfterSubmit, sim, clock)
    try:
        request = dict(model="sora-2", prompt="a cat", wait_seconds=10)
        result = await service.generate(request)
    finally:
        await client.aclose()
        journal.close()
    assert result.task_id in sim.tasks
    assert result.status == TaskStatus.SUCCEEDED
    assert sim.calls["submit"] == 1


async def test_nothing_is_sent_when_the_journal_cannot_be_written(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = _sim(clock)
    service, client, journal = await _service(tmp_path, BrokenBeforeSubmit, sim, clock)
    try:
        with pytest.raises(JournalError, match="read-only"):
            await service.generate(dict(model="sora-2", prompt="a cat"))
    finally:
        await client.aclose()
        journal.close()
    assert sim.calls["submit"] == 0


def _answer(raw: dict[str, Any], url: str | None = None) -> TaskSnapshot:
    return TaskSnapshot(
        task_id="t1",
        status=TaskStatus.SUCCEEDED,
        raw_status="succeeded",
        url=url,
        error=None,
        raw=raw,
    )


@pytest.mark.parametrize(
    ("raw", "url", "expected"),
    [
        ({"model": "sora-2"}, None, Delivery.DOWNLOAD_ENDPOINT),
        ({"model": "sora-2"}, "https://cdn.test/v.mp4?sig=1", Delivery.DOWNLOAD_ENDPOINT),
        ({"model": "veo-3.0-generate-preview"}, None, Delivery.TASK_URL),
        ({"model": "not-a-model"}, "https://cdn.test/v.mp4?sig=1", Delivery.TASK_URL),
        ({}, None, Delivery.DOWNLOAD_ENDPOINT),
    ],
)
def test_a_task_not_in_the_journal_gets_its_delivery_from_the_answer(
    raw: dict[str, Any], url: str | None, expected: Delivery
) -> None:
    assert _delivery_from_answer(_answer(raw, url)) is expected


def test_only_the_sora_family_uses_the_download_endpoint() -> None:
    # download-video.txt: "This API is only supported for Sora 2 models."
    for spec in catalog.models():
        endpoint = spec.delivery is Delivery.DOWNLOAD_ENDPOINT
        assert endpoint == (spec.family is Family.SORA), spec.id
