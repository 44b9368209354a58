"""Bring your own key (issue 18), on both backends (``backend``): a caller's
``X-Gravitex-Api-Key`` (or their tokens-file ``upstream_key``) pays for everything their
call causes, polls and saves after it returns included, and the simulator sees it; it is
nowhere else: not in a result, a log, a file, a database row or a bucket's object
(:meth:`tests.backends.Backend.stored` reads them all back)."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from gravitex_mcp.server.callers import TokensFileVerifier
from gravitex_mcp.service.videos import VideoService
from gravitex_mcp.simulator import simulator_transport
from gravitex_mcp.upstream.client import GravitexClient
from tests.backends import Backend
from tests.conftest import FakeClock
from tests.proc import SERVER_CMD, HttpServer, clean_env, free_port, http_server, stop
from tests.server.test_team_ops import ACCEPT, INITIALIZE, VERSION, answer, rpc, running
from tests.server.test_users import (
    GENERATE,
    USER_KEY,
    Recording,
    _http_app,
    _session,
    _sim,
    _tokens_file,
)
from tests.server_harness import API_KEY, make_settings, text_of


def _kept_nowhere(backend: Backend, secret: str, *folders: Path) -> list[str]:
    """Where ``backend`` keeps anything (files under ``folders``, rows, objects, logs),
    having checked that none of it holds ``secret``."""
    places = []
    for where, data in backend.stored(*folders):
        assert secret.encode() not in data, f"the key is kept in {where}"
        places.append(where)
    if backend.database is not None:  # the scan read the task's row
        assert any(where.startswith("public.tasks row") for where in places), places
    return places


async def test_tokens_file_callers_and_their_own_key_over_http(
    tmp_path: Path, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recording = Recording(simulator_transport(_sim(FakeClock())))
    verifier = TokensFileVerifier(_tokens_file(tmp_path))
    app = _http_app(tmp_path, verifier, recording, **backend.settings)
    async with running(app) as client:
        assert (await client.post("/mcp", json=INITIALIZE, headers=ACCEPT)).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert (
            await client.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **wrong})
        ).status_code == 401
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code in (200, 503)
        headers = {"Authorization": "Bearer alice-token-1", "X-Gravitex-Api-Key": USER_KEY}
        async with _session(client, headers) as session:
            call = rpc(
                "tools/call",
                {
                    "name": "generate_video",
                    "arguments": {**GENERATE, "wait_seconds": 30, "download": True},
                },
                ident=2,
            )
            response = await client.post(
                "/mcp",
                json=call,
                headers={**ACCEPT, **VERSION, **headers, "mcp-session-id": session},
            )
            result = answer(response)
    assert not result["result"].get("isError"), result
    auths = {a for _, _, a in recording.seen if a is not None}
    assert auths == {f"Bearer {USER_KEY}"}, recording.seen
    assert any(m == "GET" for m, _, _ in recording.seen)  # polls went with the same key
    assert USER_KEY not in json.dumps(result)
    assert USER_KEY not in caplog.text
    places = _kept_nowhere(backend, USER_KEY, tmp_path / "state", tmp_path / "videos")
    made = result["result"]["structuredContent"]
    assert (made["path"] or made["uri"]) in places  # the saved video was read too


async def test_without_the_header_the_server_key_pays(tmp_path: Path) -> None:
    recording = Recording(simulator_transport(_sim(FakeClock())))
    app = _http_app(tmp_path, TokensFileVerifier(_tokens_file(tmp_path)), recording)
    async with running(app) as client:
        headers = {"Authorization": "Bearer bob-token-2"}
        async with _session(client, headers) as session:
            call = rpc(
                "tools/call",
                {"name": "generate_video", "arguments": {**GENERATE, "wait_seconds": 0}},
                ident=2,
            )
            answer(
                await client.post(
                    "/mcp",
                    json=call,
                    headers={**ACCEPT, **VERSION, **headers, "mcp-session-id": session},
                )
            )
    assert {a for _, _, a in recording.seen} == {f"Bearer {API_KEY}"}


# --- the command's wiring, in real processes on loopback -------------------------------


@contextmanager
def _loopback_upstream(root: Path) -> Iterator[str]:
    """``gravitex-mcp simulator`` on a free loopback port (it takes any sk- key)."""
    port = free_port()
    env = clean_env(root, GRAVITEX_SIMULATOR_SECONDS="0", GRAVITEX_STATE_DIR=str(root / "sim"))
    with (root / "simulator.stderr").open("wb") as err:
        proc = subprocess.Popen(
            [*SERVER_CMD, "simulator", "--port", str(port)],
            env=env,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx2.Client(timeout=2.0) as client:
            for _ in range(600):  # the process's start-up: polled, bounded
                try:
                    client.get(f"{base}/")
                    break
                except httpx2.TransportError:
                    assert proc.poll() is None, (root / "simulator.stderr").read_text()
                    time.sleep(0.05)
        yield base
    finally:
        stop(proc)


async def _call(
    server: HttpServer, headers: dict[str, str], name: str, args: dict[str, Any]
) -> Any:
    if server.transport == "sse":
        async with Client(sse_client(server.mcp_url, headers=headers)) as client:
            return await client.call_tool(name, args)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
    ):
        return await client.call_tool(name, args)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["sse", "streamable-http"])
async def test_the_command_wires_callers_and_their_keys(
    tmp_path: Path, transport: str, backend: Backend
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        '[alice]\ntoken = "alice-token-1"\n\n'
        f'[bob]\ntoken = "bob-token-2"\nupstream_key = "{USER_KEY}-bob"\n\n'
        '[carol]\ntoken = "carol-token-3"\n'
    )
    tokens.chmod(0o600)
    with _loopback_upstream(tmp_path) as upstream:
        env = {
            "GRAVITEX_TOKENS_FILE": str(tokens),
            "GRAVITEX_USER_KEYS": "1",
            "GRAVITEX_BASE_URL": upstream,
            **backend.env(),
        }
        # No GRAVITEX_API_KEY: only a caller's own key can pay.
        with http_server(tmp_path / "srv", transport, token=None, env=env, simulate=False) as s:
            async with httpx2.AsyncClient(base_url=s.base_url, timeout=10.0) as plain:
                assert (await plain.get("/healthz")).status_code == 200
                refused = await plain.get("/sse" if transport == "sse" else "/mcp")
                assert refused.status_code == 401
            args = {**GENERATE, "wait_seconds": 0}
            alice = {"Authorization": "Bearer alice-token-1", "X-Gravitex-Api-Key": USER_KEY}
            paid = await _call(s, alice, "generate_video", args)
            assert not paid.is_error, text_of(paid)
            task_id = paid.structured_content["task_id"]
            polled = await _call(s, alice, "check_video_task", {"task_id": task_id})
            assert not polled.is_error, text_of(polled)
            bob = await _call(s, {"Authorization": "Bearer bob-token-2"}, "generate_video", args)
            assert not bob.is_error, text_of(bob)
            carol = await _call(
                s, {"Authorization": "Bearer carol-token-3"}, "generate_video", args
            )
            assert carol.is_error
            assert "GRAVITEX_API_KEY" in text_of(carol)
    for text in (json.dumps(paid.structured_content), text_of(paid), text_of(polled)):
        assert USER_KEY not in text
    # Bob's key (from the file) holds alice's as a prefix: both are looked for.
    _kept_nowhere(backend, USER_KEY, tmp_path / "srv")  # its log, state and videos


# --- a save that goes on after the call ------------------------------------------------


class Gated(Recording):
    """Holds the Sora video download until ``release`` is set."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        super().__init__(inner)
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/download"):
            self.reached.set()
            await self.release.wait()
        return await super().handle_async_request(request)


async def test_a_callers_key_pays_for_the_save_that_outlives_the_call(
    tmp_path: Path, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    gated = Gated(simulator_transport(_sim(clock)))
    settings = make_settings(tmp_path, **backend.settings)
    client = GravitexClient(api_key=API_KEY, base_url=settings.base_url, transport=gated)
    try:
        async with backend.stores(settings) as (journal, output):
            service = VideoService(
                settings=settings, client=client, journal=journal, output=output, clock=clock
            )
            async with service.running():
                view = service.acting_for("alice", USER_KEY)
                request = {"model": "sora-2", "prompt": "a cat", "wait_seconds": 0}
                task_id = (await view.generate(request)).task_id
                async with anyio.create_task_group() as group:
                    group.start_soon(functools.partial(view.download, task_id, filename=None))
                    await gated.reached.wait()
                    group.cancel_scope.cancel()  # the call is over; its save goes on
                del view
                gated.release.set()
                # Alice's next call (no key of its own) joins the running save: sends nothing.
                saved = await service.acting_for("alice", None).download(task_id, filename=None)
    finally:
        await client.aclose()
    assert backend.holds(saved.location)
    assert [a for _, _, a in gated.seen] == [f"Bearer {USER_KEY}"] * len(gated.seen)
    assert any(path.endswith("/download") for _, path, _ in gated.seen)
    assert USER_KEY not in saved.model_dump_json()
    assert USER_KEY not in caplog.text
    places = _kept_nowhere(backend, USER_KEY, tmp_path / "state", tmp_path / "videos")
    assert saved.location in places
