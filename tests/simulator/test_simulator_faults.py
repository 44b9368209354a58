"""Every fault knob of the simulator, seen from an httpx2 client in-process."""

from __future__ import annotations

import base64
import binascii
import json
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from gravitex_mcp.simulator import (
    ANSWER_KINDS,
    ARRIVAL_KINDS,
    FAULT_ENDPOINTS,
    FAULT_PARAMS,
    Endpoint,
    FaultKind,
    Simulator,
    SimulatorTransport,
    media,
    simulator_transport,
)
from tests.simulator.test_simulator import (
    AUTH,
    BASE,
    finish,
    frozen_sim,
    make_client,
    query,
    submit,
)

SORA = {"model": "sora-2", "prompt": "a cat"}
WAN = {"model": "wan2.5-t2v-preview", "prompt": "a cat"}


@pytest.fixture
def sim() -> Simulator:
    return frozen_sim()


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_client(sim) as c:
        yield c


@pytest.fixture
async def streaming(sim: Simulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_client(sim, streaming=True) as c:
        yield c


class Ready:
    """A Sora task and a Wan task, both finished, and the Wan task's file URL."""

    def __init__(self, sora: str, wan: str, url: str) -> None:
        self.sora = sora
        self.wan = wan
        self.url = url


async def ready(sim: Simulator, client: httpx2.AsyncClient) -> Ready:
    sora = await submit(client, SORA)
    wan = await submit(client, WAN)
    finish(sim)
    url = (await query(client, wan))["url"]
    return Ready(sora, wan, url)


def request_for(endpoint: Endpoint, r: Ready) -> tuple[str, str, dict[str, Any]]:
    """(method, url, extra request kwargs) for one call of ``endpoint``."""
    if endpoint is Endpoint.SUBMIT:
        return "POST", "/v1/video/generations", {"json": SORA, "headers": AUTH}
    if endpoint is Endpoint.QUERY:
        return "GET", f"/v1/video/generations/{r.wan}", {"headers": AUTH}
    if endpoint is Endpoint.DOWNLOAD:
        return "GET", f"/v1/video/generations/download?id={r.sora}", {"headers": AUTH}
    return "GET", r.url, {}


async def drain(response: httpx2.Response, into: bytearray) -> None:
    """Read the raw body into ``into`` (what arrived stays there if reading fails)."""
    async for chunk in response.aiter_raw():
        into += chunk


async def call(client: httpx2.AsyncClient, endpoint: Endpoint, r: Ready) -> httpx2.Response:
    method, url, kwargs = request_for(endpoint, r)
    return await client.request(method, url, **kwargs)


# --- the fault plan itself --------------------------------------------------------------


def test_every_kind_has_endpoints_and_params() -> None:
    assert set(FAULT_ENDPOINTS) == set(FaultKind) == set(FAULT_PARAMS)
    assert set(FaultKind) == ARRIVAL_KINDS | ANSWER_KINDS
    assert not ARRIVAL_KINDS & ANSWER_KINDS


@pytest.mark.parametrize(
    ("args", "params", "match"),
    [
        (("nowhere", "truncated"), {}, "nowhere"),
        (("submit", "explode"), {}, "explode"),
        (("file", "bad_base64"), {}, "applies to: download"),
        (("query", "accepted_but_lost"), {}, "applies to: submit"),
        (("submit", "expired_url"), {}, "applies to: file"),
        (("download", "truncated"), {"bytes": 3}, "does not take"),
        (("download", "server_error"), {"status": 501}, "500, 502, 503, 504"),
        (("download", "html_page"), {"status": 42}, "status code"),
        (("submit", "accepted_but_lost"), {"mode": "vanish"}, "mode"),
        (("submit", "accepted_but_lost"), {"status": 200}, "4xx/5xx"),
        (("download", "truncated"), {"at": -1}, "non-negative"),
        (("download", "wrong_size"), {"size": "big"}, "non-negative"),
        (("query", "rate_limit"), {"retry_after": [1]}, "retry_after"),
    ],
)
def test_bad_fault_specs_are_refused(
    sim: Simulator, args: tuple[str, str], params: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        sim.faults.add(*args, **params)
    assert len(sim.faults) == 0


@pytest.mark.parametrize("times", [0, -1, True, 1.5])
def test_times_must_be_a_positive_int(sim: Simulator, times: Any) -> None:
    with pytest.raises(ValueError, match="times"):
        sim.faults.add("query", "server_error", times=times)


async def test_a_fault_fires_n_times_then_is_used_up(
    sim: Simulator, client: httpx2.AsyncClient
) -> None:
    r = await ready(sim, client)
    fault = sim.faults.add(Endpoint.QUERY, FaultKind.SERVER_ERROR, times=2, status=502)
    codes = [(await call(client, Endpoint.QUERY, r)).status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    assert fault.fired == 2
    assert sim.faults.pending() == []


async def test_times_none_fires_until_cleared(sim: Simulator, client: httpx2.AsyncClient) -> None:
    r = await ready(sim, client)
    sim.faults.add("query", "request_timeout", times=None)
    sim.faults.add("download", "rate_limit", times=None)
    for _ in range(5):
        assert (await call(client, Endpoint.QUERY, r)).status_code == 408
    sim.faults.clear("query")
    assert (await call(client, Endpoint.QUERY, r)).status_code == 200
    assert [f.endpoint for f in sim.faults] == [Endpoint.DOWNLOAD]
    sim.faults.clear()
    assert (await call(client, Endpoint.DOWNLOAD, r)).status_code == 200


async def test_faults_fire_in_order_and_per_endpoint(
    sim: Simulator, client: httpx2.AsyncClient
) -> None:
    r = await ready(sim, client)
    sim.faults.add("query", "rate_limit")
    sim.faults.add("download", "server_error", status=503)
    sim.faults.add("query", "html_page", status=502)
    assert (await call(client, Endpoint.QUERY, r)).status_code == 429
    assert (await call(client, Endpoint.QUERY, r)).headers["content-type"].startswith("text/html")
    assert (await call(client, Endpoint.QUERY, r)).status_code == 200
    assert (await call(client, Endpoint.DOWNLOAD, r)).status_code == 503


async def test_authentication_comes_before_arrival_faults(
    sim: Simulator, client: httpx2.AsyncClient
) -> None:
    sim.faults.add("submit", "server_error")
    response = await client.post("/v1/video/generations", json=SORA)
    assert response.status_code == 401
    assert len(sim.faults) == 1
    assert (await client.post("/v1/video/generations", json=SORA, headers=AUTH)).status_code == 500
    assert sim.tasks == {}  # an arrival fault creates nothing


# --- arrival faults on every endpoint ---------------------------------------------------


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_rate_limit_with_and_without_retry_after(
    sim: Simulator, client: httpx2.AsyncClient, endpoint: Endpoint
) -> None:
    r = await ready(sim, client)
    sim.faults.add(endpoint, "rate_limit", retry_after=7)
    sim.faults.add(endpoint, "rate_limit")
    first = await call(client, endpoint, r)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "7"
    second = await call(client, endpoint, r)
    assert second.status_code == 429
    assert "retry-after" not in second.headers
    if endpoint is Endpoint.FILE:
        assert "<Code>SlowDown</Code>" in first.text
    else:
        assert first.json()["error"]["code"] == "rate_limit_exceeded"
    assert (await call(client, endpoint, r)).status_code == 200


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors(
    sim: Simulator, client: httpx2.AsyncClient, endpoint: Endpoint, status: int
) -> None:
    r = await ready(sim, client)
    sim.faults.add(
        endpoint, "server_error", status=status, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"
    )
    response = await call(client, endpoint, r)
    assert response.status_code == status
    assert response.headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    if endpoint is not Endpoint.FILE:
        assert response.json()["error"]["type"] == "server_error"


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_request_timeout(
    sim: Simulator, client: httpx2.AsyncClient, endpoint: Endpoint
) -> None:
    r = await ready(sim, client)
    sim.faults.add(endpoint, "request_timeout")
    assert (await call(client, endpoint, r)).status_code == 408


@pytest.mark.parametrize("endpoint", [Endpoint.SUBMIT, Endpoint.QUERY, Endpoint.DOWNLOAD])
@pytest.mark.parametrize("status", [200, 502])
async def test_malformed_json(
    sim: Simulator, client: httpx2.AsyncClient, endpoint: Endpoint, status: int
) -> None:
    r = await ready(sim, client)
    sim.faults.add(endpoint, "malformed_json", status=status)
    sim.faults.add(endpoint, "malformed_json", body="<<not json>>")
    response = await call(client, endpoint, r)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)  # complete, just bad
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert (await call(client, endpoint, r)).text == "<<not json>>"


@pytest.mark.parametrize("endpoint", list(Endpoint))
@pytest.mark.parametrize("status", [200, 502])
async def test_html_page(
    sim: Simulator, client: httpx2.AsyncClient, endpoint: Endpoint, status: int
) -> None:
    r = await ready(sim, client)
    sim.faults.add(endpoint, "html_page", status=status)
    response = await call(client, endpoint, r)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")
    if status == 502:
        assert "502 Bad Gateway" in response.text


async def test_expired_url_fault_ignores_a_good_signature(
    sim: Simulator, client: httpx2.AsyncClient
) -> None:
    r = await ready(sim, client)
    sim.faults.add("file", "expired_url")
    response = await client.get(r.url)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/xml")
    assert "Request has expired" in response.text
    assert (await client.get(r.url)).status_code == 200


# --- answer faults ------------------------------------------------------------------------


async def test_answer_faults_wait_for_an_answer_that_would_succeed(
    sim: Simulator, client: httpx2.AsyncClient
) -> None:
    sim.faults.add("download", "bad_base64")
    sim.faults.add("submit", "accepted_but_lost")
    sim.faults.add("file", "html_instead_of_video")
    early = await client.get("/v1/video/generations/download?id=video_x", headers=AUTH)
    assert early.status_code == 404
    refused = await client.post("/v1/video/generations", json={"model": "sora-2"}, headers=AUTH)
    assert refused.status_code == 400
    assert len(sim.faults) == 3
    sora = (await client.post("/v1/video/generations", json=SORA, headers=AUTH)).json()
    assert "task_id" not in sora  # the accepted_but_lost fault fired here
    (task_id,) = sim.tasks
    not_ready = await client.get(f"/v1/video/generations/download?id={task_id}", headers=AUTH)
    assert not_ready.status_code == 400
    assert [f.kind for f in sim.faults] == ["bad_base64", "html_instead_of_video"]
    finish(sim)
    spoiled = await client.get(f"/v1/video/generations/download?id={task_id}", headers=AUTH)
    with pytest.raises(binascii.Error):
        base64.b64decode(spoiled.json()["base64"], validate=True)
    assert [f.kind for f in sim.faults] == ["html_instead_of_video"]


@pytest.mark.parametrize("offset", [None, 0, 5, 10**9])
async def test_bad_base64(sim: Simulator, client: httpx2.AsyncClient, offset: int | None) -> None:
    r = await ready(sim, client)
    sim.faults.add("download", "bad_base64", offset=offset)
    response = await call(client, Endpoint.DOWNLOAD, r)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    payload = response.json()  # still valid JSON
    text = payload["base64"]
    assert len(text) == media.base64_length(payload["size"])  # same length, bad characters
    with pytest.raises(binascii.Error):
        base64.b64decode(text, validate=True)
    assert payload["data_url"] == "data:video/mp4;base64," + text
    good = (await call(client, Endpoint.DOWNLOAD, r)).json()
    assert base64.b64decode(good["base64"], validate=True) == media.sample_mp4()


@pytest.mark.parametrize("size", [None, 12])
async def test_wrong_size(sim: Simulator, client: httpx2.AsyncClient, size: int | None) -> None:
    r = await ready(sim, client)
    sim.faults.add("download", "wrong_size", size=size)
    payload = (await call(client, Endpoint.DOWNLOAD, r)).json()
    video = base64.b64decode(payload["base64"], validate=True)
    assert video == media.sample_mp4()
    assert payload["size"] == (len(video) + 1 if size is None else size)


async def test_html_instead_of_video(sim: Simulator, client: httpx2.AsyncClient) -> None:
    r = await ready(sim, client)
    sim.faults.add("file", "html_instead_of_video")
    response = await client.get(r.url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert not response.content.startswith(media.sample_mp4()[:8])
    assert (await client.get(r.url)).content == media.sample_mp4()


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_accepted_but_lost_status(
    sim: Simulator, client: httpx2.AsyncClient, status: int
) -> None:
    sim.faults.add("submit", "accepted_but_lost", status=status)
    response = await client.post("/v1/video/generations", json=SORA, headers=AUTH)
    assert response.status_code == status
    assert "task_id" not in response.text
    assert sim.calls["submit"] == 1
    (task,) = sim.tasks.values()  # the task exists all the same
    assert task.body == SORA
    assert (await query(client, task.task_id))["status"] == "queued"


@pytest.mark.parametrize("streaming_transport", [False, True])
async def test_accepted_but_lost_drop(sim: Simulator, streaming_transport: bool) -> None:
    sim.faults.add("submit", "accepted_but_lost", mode="drop")
    async with make_client(sim, streaming=streaming_transport) as c:
        with pytest.raises(httpx2.RemoteProtocolError, match="received 0 bytes"):
            await c.post("/v1/video/generations", json=SORA, headers=AUTH)
    assert sim.calls["submit"] == 1
    assert len(sim.tasks) == 1


# --- truncated bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_truncated_body_raises_with_plain_asgi_transport(
    sim: Simulator, client: httpx2.AsyncClient, endpoint: Endpoint
) -> None:
    r = await ready(sim, client)
    tasks_before = len(sim.tasks)
    sim.faults.add(endpoint, "truncated")
    with pytest.raises(httpx2.RemoteProtocolError, match="without sending complete message body"):
        await call(client, endpoint, r)
    if endpoint is Endpoint.SUBMIT:
        assert len(sim.tasks) == tasks_before + 1  # created, answer lost
    assert (await call(client, endpoint, r)).status_code == 200


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_truncated_body_with_streaming_transport_fails_while_reading(
    sim: Simulator, streaming: httpx2.AsyncClient, endpoint: Endpoint
) -> None:
    r = await ready(sim, streaming)
    sim.faults.add(endpoint, "truncated")
    method, url, kwargs = request_for(endpoint, r)
    received = bytearray()
    async with streaming.stream(method, url, **kwargs) as response:
        assert response.status_code == 200  # the head arrived intact
        declared = int(response.headers["content-length"])
        with pytest.raises(httpx2.RemoteProtocolError) as caught:
            await drain(response, received)
    assert 0 < len(received) < declared
    assert f"received {len(received)} bytes, expected {declared}" in str(caught.value)


async def test_truncated_download_is_cut_inside_the_base64_text(
    sim: Simulator, streaming: httpx2.AsyncClient
) -> None:
    r = await ready(sim, streaming)
    sim.faults.add("download", "truncated")
    received = bytearray()
    async with streaming.stream(
        "GET", f"/v1/video/generations/download?id={r.sora}", headers=AUTH
    ) as resp:
        with pytest.raises(httpx2.RemoteProtocolError):
            await drain(resp, received)
    text = bytes(received).decode()
    head, _, b64 = text.partition('"base64": "')
    assert head.startswith('{"success": true')
    assert b64
    assert '"' not in b64  # ends in the middle of the base64 string
    assert len(b64) == media.base64_length(media.sample_size()) // 2


@pytest.mark.parametrize("at", [0, 1, 100])
async def test_truncated_at_a_chosen_byte(
    sim: Simulator, streaming: httpx2.AsyncClient, at: int
) -> None:
    r = await ready(sim, streaming)
    sim.faults.add("file", "truncated", at=at)
    received = bytearray()
    async with streaming.stream("GET", r.url) as resp:
        with pytest.raises(httpx2.RemoteProtocolError):
            await drain(resp, received)
    assert bytes(received) == media.sample_mp4()[:at]


async def test_truncation_past_the_end_still_loses_the_last_byte(
    sim: Simulator, streaming: httpx2.AsyncClient
) -> None:
    r = await ready(sim, streaming)
    sim.faults.add("query", "truncated", at=10**6)
    async with streaming.stream("GET", f"/v1/video/generations/{r.wan}", headers=AUTH) as resp:
        with pytest.raises(httpx2.RemoteProtocolError):
            await resp.aread()


# --- large bodies stream in chunks ----------------------------------------------------------


async def test_large_download_streams_in_bounded_chunks() -> None:
    size = 24 * 1024 * 1024
    sim = frozen_sim(video_size_bytes=size)
    async with make_client(sim, streaming=True) as c:
        sora = await submit(c, SORA)
        finish(sim)
        count = 0
        total = 0
        largest = 0
        tracemalloc.start()
        try:
            async with c.stream(
                "GET", f"/v1/video/generations/download?id={sora}", headers=AUTH
            ) as resp:
                declared = int(resp.headers["content-length"])
                async for chunk in resp.aiter_raw():
                    count += 1
                    total += len(chunk)
                    largest = max(largest, len(chunk))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert total == declared > 2 * media.base64_length(size)
    chunk_text = media.base64_length(sim.config.chunk_bytes)
    assert largest <= chunk_text
    assert count >= 2 * (media.base64_length(size) // chunk_text)
    assert peak < 8 * 1024 * 1024  # ~67 MB went through; never more than a few chunks at once


async def test_large_file_streams_and_matches_the_generator() -> None:
    size = 5 * 1024 * 1024 + 7
    sim = frozen_sim(video_size_bytes=size, chunk_bytes=3 * 20_000)
    async with make_client(sim, streaming=True) as c:
        wan = await submit(c, WAN)
        finish(sim)
        url = (await query(c, wan))["url"]
        chunks: list[bytes] = []
        async with c.stream("GET", url) as resp:
            assert resp.headers["content-length"] == str(size)
            async for chunk in resp.aiter_raw():
                chunks.append(chunk)
    assert [len(ch) for ch in chunks] == [len(ch) for ch in media.iter_mp4(size, 60_000)]
    assert b"".join(chunks) == media.build_mp4(size)


# --- the streaming transport on its own -------------------------------------------------------


async def test_streaming_transport_is_an_asgi_transport(sim: Simulator) -> None:
    transport = simulator_transport(sim)
    assert isinstance(transport, httpx2.ASGITransport)
    assert isinstance(transport, SimulatorTransport)
    with pytest.raises(ValueError, match="buffer_chunks"):
        SimulatorTransport(sim.app, buffer_chunks=0)


async def test_streaming_transport_closing_early_stops_the_app() -> None:
    sim = frozen_sim(video_size_bytes=64 * 1024 * 1024)
    async with make_client(sim, streaming=True) as c:
        sora = await submit(c, SORA)
        finish(sim)
        async with c.stream(
            "GET", f"/v1/video/generations/download?id={sora}", headers=AUTH
        ) as resp:
            first = await resp.aiter_raw().__anext__()
            assert first.startswith(b'{"success": true')
        # closed after one chunk: the next request still works
        assert (await query(c, sora))["status"] == "succeeded"


async def _raising_app(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("boom")


async def _silent_app(scope: Any, receive: Any, send: Any) -> None:
    return None


async def _short_app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}
    )
    await send({"type": "http.response.body", "body": b"12345", "more_body": False})


async def _failing_mid_body_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"12345", "more_body": True})
    raise RuntimeError("mid-body")


async def test_streaming_transport_edge_cases() -> None:
    async with httpx2.AsyncClient(transport=SimulatorTransport(_raising_app), base_url=BASE) as c:
        with pytest.raises(RuntimeError, match="boom"):
            await c.get("/")
    lenient = SimulatorTransport(_raising_app, raise_app_exceptions=False, buffer_chunks=1)
    async with httpx2.AsyncClient(transport=lenient, base_url=BASE) as c:
        assert (await c.get("/")).status_code == 500
    async with httpx2.AsyncClient(transport=SimulatorTransport(_silent_app), base_url=BASE) as c:
        response = await c.get("/")
        assert (response.status_code, response.text) == (500, "Internal Server Error")
    async with httpx2.AsyncClient(transport=SimulatorTransport(_short_app), base_url=BASE) as c:
        with pytest.raises(httpx2.RemoteProtocolError, match="received 5 bytes, expected 10"):
            await c.get("/")
    mid = SimulatorTransport(_failing_mid_body_app)
    async with httpx2.AsyncClient(transport=mid, base_url=BASE) as c:
        with pytest.raises(RuntimeError, match="mid-body"):
            await c.get("/")
    mid = SimulatorTransport(_failing_mid_body_app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=mid, base_url=BASE) as c:
        with pytest.raises(httpx2.RemoteProtocolError, match="received 5 bytes"):
            await c.get("/")
