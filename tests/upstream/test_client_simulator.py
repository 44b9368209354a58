"""GravitexClient against the in-process simulator (gravitex_mcp.simulator).

The simulator keeps its own books (tasks created, calls per endpoint), so these
tests check what really matters upstream: how many submits arrived, how many
tasks exist, that signed files never see the API key (the simulator's file
route refuses a request carrying one), and that streamed bodies arrive intact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest

from gravitex_mcp.domain import TaskStatus
from gravitex_mcp.errors import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    MalformedSubmitResponseError,
    NotFoundError,
    RateLimitError,
    SubmitOutcomeUnknownError,
    URLExpiredError,
)
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.upstream.client import GravitexClient, TaskError, Timeouts, read_error
from gravitex_mcp.upstream.retry import RetryPolicy

KEY = "sk-sim-SECRET0123456789"
BASE = "http://simulator.test"
VEO = {"model": "veo-3.0-fast-generate-001", "prompt": "a lighthouse at dusk"}
SORA = {"model": "sora-2", "prompt": "a cat in a garden", "seconds": "4", "size": "720x1280"}
DONE = 10.0  # seconds of simulated time after which a default task has finished


@dataclass
class Rig:
    sim: Simulator
    client: GravitexClient
    sleeps: list[float] = field(default_factory=list)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as made:
        yield made


class make_rig:  # noqa: N801 - used like a function
    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        api_key: str = KEY,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.sim = Simulator(config or SimulatorConfig(), clock=lambda: 0.0)
        sleeps: list[float] = []

        async def fake_sleep(delay: float) -> None:
            sleeps.append(delay)

        client = GravitexClient(
            api_key=api_key,
            base_url=BASE,
            transport=simulator_transport(self.sim),
            retry=retry or RetryPolicy(),
            timeouts=Timeouts(read=30.0),
            sleep=fake_sleep,
            rand=lambda: 0.0,
        )
        self.rig = Rig(self.sim, client, sleeps)

    async def __aenter__(self) -> Rig:
        return self.rig

    async def __aexit__(self, *exc: object) -> None:
        await self.rig.client.aclose()


def assert_mp4(data: bytes) -> None:
    assert data[4:8] == b"ftyp"


# --- the happy paths ----------------------------------------------------------------------


async def test_veo_submit_query_and_signed_download(rig: Rig) -> None:
    submitted = await rig.client.submit(VEO)
    assert submitted.status is TaskStatus.SUBMITTED
    assert rig.sim.calls["submit"] == 1
    assert len(rig.sim.tasks) == 1

    early = await rig.client.query(submitted.task_id)
    assert early.status in (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS)
    assert early.url is None

    rig.sim.advance(DONE)
    done = await rig.client.query(submitted.task_id)
    assert done.status is TaskStatus.SUCCEEDED
    assert done.url is not None
    assert "Signature=" in done.url

    # The simulator's file route answers 400 to a request carrying Authorization.
    async with rig.client.stream_url(done.url) as response:
        data = b"".join([c async for c in response.aiter_bytes()])
    assert_mp4(data)
    assert rig.sim.calls["file"] == 1
    assert rig.sleeps == []


async def test_sora_download_streams_the_json(rig: Rig) -> None:
    submitted = await rig.client.submit(SORA)
    rig.sim.advance(DONE)
    assert (await rig.client.query(submitted.task_id)).status is TaskStatus.SUCCEEDED
    chunks: list[bytes] = []
    async with rig.client.stream_sora_download(submitted.task_id) as response:
        assert response.headers["content-type"].startswith("application/json")
        chunks = [c async for c in response.aiter_bytes(4096)]
    assert len(chunks) > 1
    assert all(len(c) <= 4096 for c in chunks)
    body: dict[str, Any] = json.loads(b"".join(chunks))
    video = base64.b64decode(body["base64"], validate=True)
    assert len(video) == body["size"]
    assert_mp4(video)


async def test_failed_task_reports_the_error_from_metadata() -> None:
    config = SimulatorConfig(failure_style="metadata", failure_code="E_POLICY")
    async with make_rig(config) as rig:
        task = await rig.client.submit({**VEO, "prompt": "a lighthouse [fail]"})
        rig.sim.advance(DONE)
        snap = await rig.client.query(task.task_id)
    assert snap.status is TaskStatus.FAILED
    assert snap.error == TaskError(code="E_POLICY", message="Prompt contains inappropriate content")


# --- submit is never blindly retried ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("accepted_but_lost", {"mode": "status", "status": 502}),
        ("accepted_but_lost", {"mode": "drop"}),
        ("truncated", {}),
    ],
)
async def test_accepted_but_lost_submit_is_sent_once(
    rig: Rig, kind: str, params: dict[str, Any]
) -> None:
    rig.sim.faults.add("submit", kind, **params)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await rig.client.submit(VEO)
    assert "list_video_tasks" in str(info.value)
    assert rig.sim.calls["submit"] == 1
    assert len(rig.sim.tasks) == 1  # the task exists; a retry would have made two
    assert rig.sleeps == []


@pytest.mark.parametrize(
    ("kind", "params"),
    [("server_error", {"status": 503}), ("request_timeout", {}), ("html_page", {"status": 502})],
)
async def test_submit_server_failures_are_not_retried(
    rig: Rig, kind: str, params: dict[str, Any]
) -> None:
    rig.sim.faults.add("submit", kind, **params)
    with pytest.raises(SubmitOutcomeUnknownError):
        await rig.client.submit(VEO)
    assert rig.sim.calls["submit"] == 1


async def test_submit_malformed_answer_is_not_retried(rig: Rig) -> None:
    rig.sim.faults.add("submit", "malformed_json")
    with pytest.raises(MalformedSubmitResponseError):
        await rig.client.submit(VEO)
    assert rig.sim.calls["submit"] == 1


async def test_submit_rate_limited_then_accepted_makes_one_task(rig: Rig) -> None:
    rig.sim.faults.add("submit", "rate_limit", times=2, retry_after=3)
    task = await rig.client.submit(VEO)
    assert rig.sim.calls["submit"] == 3
    assert list(rig.sim.tasks) == [task.task_id]
    assert rig.sleeps == [3.0, 3.0]


async def test_submit_refused_body_is_bad_request(rig: Rig) -> None:
    with pytest.raises(BadRequestError) as info:
        await rig.client.submit({"model": "no-such-model", "prompt": "x"})
    assert info.value.upstream_message is not None
    assert "no-such-model" in info.value.upstream_message
    assert rig.sim.calls["submit"] == 1


async def test_wrong_key_is_authentication_error_without_the_key() -> None:
    config = SimulatorConfig(api_keys=frozenset({"sk-the-right-one"}))
    async with make_rig(config) as rig:
        with pytest.raises(AuthenticationError) as info:
            await rig.client.query("video_x")
    assert "GRAVITEX_API_KEY" in str(info.value)
    assert KEY not in str(info.value)
    assert rig.sim.calls["query"] == 1


# --- query and downloads retry -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("server_error", {"status": 503}),
        ("server_error", {"status": 502, "retry_after": 2}),
        ("rate_limit", {}),
        ("request_timeout", {}),
        ("malformed_json", {}),
        ("html_page", {"status": 200}),
        ("html_page", {"status": 502}),
        ("truncated", {}),
    ],
)
async def test_query_recovers_from_transient_faults(
    rig: Rig, kind: str, params: dict[str, Any]
) -> None:
    task = await rig.client.submit(VEO)
    rig.sim.faults.add("query", kind, times=2, **params)
    snap = await rig.client.query(task.task_id)
    assert snap.task_id == task.task_id
    assert rig.sim.calls["query"] == 3
    expected = [2.0, 2.0] if "retry_after" in params else [0.5, 1.0]
    assert rig.sleeps == expected


async def test_query_gives_up_after_max_attempts(rig: Rig) -> None:
    task = await rig.client.submit(VEO)
    rig.sim.faults.add("query", "server_error", times=None, status=500)
    with pytest.raises(InternalServerError, match="Gave up after 5 attempts"):
        await rig.client.query(task.task_id)
    assert rig.sim.calls["query"] == 5


async def test_query_rate_limit_beyond_the_cap_gives_up(rig: Rig) -> None:
    rig.sim.faults.add("query", "rate_limit", retry_after=900)
    with pytest.raises(RateLimitError, match="900 s"):
        await rig.client.query("video_whatever")
    assert rig.sim.calls["query"] == 1


async def test_query_unknown_task_is_not_found(rig: Rig) -> None:
    with pytest.raises(NotFoundError) as info:
        await rig.client.query("video_nope")
    assert info.value.upstream_message == "Task 'video_nope' not found."
    assert rig.sim.calls["query"] == 1


async def test_sora_download_before_it_is_ready_is_refused(rig: Rig) -> None:
    task = await rig.client.submit(SORA)
    with pytest.raises(BadRequestError, match="not ready"):
        async with rig.client.stream_sora_download(task.task_id):
            pass


async def test_sora_download_retries_before_yielding(rig: Rig) -> None:
    task = await rig.client.submit(SORA)
    rig.sim.advance(DONE)
    rig.sim.faults.add("download", "server_error", status=504)
    rig.sim.faults.add("download", "html_page", status=200)
    async with rig.client.stream_sora_download(task.task_id) as response:
        body = json.loads(b"".join([c async for c in response.aiter_bytes()]))
    assert body["task_id"] == task.task_id
    assert rig.sim.calls["download"] == 3
    assert rig.sleeps == [0.5, 1.0]


async def test_download_cut_mid_body_is_a_connection_error(rig: Rig) -> None:
    task = await rig.client.submit(SORA)
    rig.sim.advance(DONE)
    rig.sim.faults.add("download", "truncated")
    received: list[bytes] = []

    async def drain() -> None:
        async with rig.client.stream_sora_download(task.task_id) as response:
            try:
                async for chunk in response.aiter_bytes():
                    received.append(chunk)
            except httpx2.RequestError as exc:
                raise read_error(response, exc) from exc

    with pytest.raises(APIConnectionError) as info:
        await drain()
    assert received
    assert "broke during the download" in str(info.value)


async def _video_url(rig: Rig) -> str:
    task = await rig.client.submit(VEO)
    rig.sim.advance(DONE)
    snap = await rig.client.query(task.task_id)
    assert snap.url is not None
    return snap.url


async def test_expired_signed_url_is_url_expired(rig: Rig) -> None:
    url = await _video_url(rig)
    rig.sim.advance(rig.sim.config.url_ttl_seconds + 60)
    with pytest.raises(URLExpiredError) as info:
        async with rig.client.stream_url(url):
            pass
    assert "Signature" not in str(info.value)
    assert rig.sim.calls["file"] == 1


async def test_expired_url_fault_is_not_retried(rig: Rig) -> None:
    url = await _video_url(rig)
    rig.sim.faults.add("file", "expired_url")
    with pytest.raises(URLExpiredError):
        async with rig.client.stream_url(url):
            pass
    assert rig.sim.calls["file"] == 1


async def test_file_html_and_5xx_are_retried(rig: Rig) -> None:
    url = await _video_url(rig)
    rig.sim.faults.add("file", "server_error", status=503)
    rig.sim.faults.add("file", "html_instead_of_video")
    async with rig.client.stream_url(url) as response:
        data = b"".join([c async for c in response.aiter_bytes()])
    assert_mp4(data)
    assert rig.sim.calls["file"] == 3
