"""Many users on one server (issue 18, the part without the store seam): who calls on
HTTP, bring-your-own key, confirmation before spending, the submit rate limit."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitRequestParams, ElicitResult
from starlette.types import ASGIApp

from gravitex_mcp.errors import ConfigurationError
from gravitex_mcp.metrics import make_metrics
from gravitex_mcp.server.app import build_server
from gravitex_mcp.server.callers import TokensFileVerifier, auth_settings, parse_tokens_file
from gravitex_mcp.server.callers_jwt import JwtVerifier
from gravitex_mcp.server.http_app import HttpTransport, build_http_app, check_bind
from gravitex_mcp.service.videos import VideoService
from gravitex_mcp.settings import load_settings
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.client import GravitexClient
from tests.conftest import FakeClock
from tests.proc import SERVER_CMD, HttpServer, clean_env, free_port, http_server, stop
from tests.server.test_team_ops import ACCEPT, INITIALIZE, VERSION, answer, rpc, running
from tests.server_harness import API_KEY, make_settings, text_of

USER_KEY = "sk-user-own-key-5f2a9c"
PUBLIC = "http://127.0.0.1:8000"


class Recording(httpx2.AsyncBaseTransport):
    """The simulator's transport, remembering every request's Authorization."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, str, str | None]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append((request.method, request.url.path, request.headers.get("authorization")))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def submits(self) -> int:
        return sum(1 for method, _, _ in self.seen if method == "POST")


def _sim(clock: FakeClock) -> Simulator:
    return Simulator(
        SimulatorConfig(api_keys=None, queued_seconds=0, processing_seconds=0),
        clock=clock.monotonic,
    )


GENERATE = {"model": "veo-3.1-fast-generate-preview", "prompt": "a red kite", "duration": 8}


# --- 3. confirmation ------------------------------------------------------------


def _harness(tmp_path: Path, **overrides: Any) -> tuple[Any, Recording, FakeClock]:
    clock = FakeClock()
    recording = Recording(simulator_transport(_sim(clock)))
    settings = make_settings(tmp_path, **overrides)
    server = build_server(settings, transport=recording, clock=clock, limit_clock=clock.monotonic)
    return server, recording, clock


def _answering(action: str, approve: bool = True) -> Any:
    asked: list[str] = []

    async def callback(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        content = {"approve": approve} if action == "accept" else None
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    callback.asked = asked  # type: ignore[attr-defined]
    return callback


#: Both protocol eras: a mid-call elicitation request (legacy), and input_required rounds.
ERAS = ("legacy", "2026-07-28")


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize(
    ("action", "sent", "said"),
    [
        ("accept", 1, None),
        ("decline", 0, "declined this submission; nothing was sent"),
        ("cancel", 0, "cancelled this submission; nothing was sent"),
    ],
)
async def test_a_large_submission_asks_the_person(
    tmp_path: Path, action: str, sent: int, said: str | None, era: str
) -> None:
    server, recording, _ = _harness(tmp_path, confirm_over_seconds=6)
    callback = _answering(action)
    async with Client(
        server, raise_exceptions=False, elicitation_callback=callback, mode=era
    ) as client:
        assert (client.session.protocol_version == "2026-07-28") == (era != "legacy")
        result = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
    assert len(callback.asked) == 1
    assert "8 seconds" in callback.asked[0]
    assert recording.submits == sent
    if said is None:
        assert not result.is_error, text_of(result)
    else:
        assert result.is_error
        assert said in text_of(result)


async def test_a_small_submission_and_a_dry_run_ask_nothing(tmp_path: Path) -> None:
    server, recording, _ = _harness(tmp_path, confirm_over_seconds=8)
    callback = _answering("decline")
    async with Client(server, raise_exceptions=False, elicitation_callback=callback) as client:
        small = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        dry = await client.call_tool(
            "generate_video", {**GENERATE, "duration": None, "model": "sora-2", "dry_run": True}
        )
    assert not small.is_error, text_of(small)
    assert not dry.is_error, text_of(dry)
    assert callback.asked == []
    assert recording.submits == 1


async def test_a_batch_counts_every_job_and_model_defaults(tmp_path: Path) -> None:
    server, recording, _ = _harness(tmp_path, confirm_over_seconds=10)
    callback = _answering("decline")
    jobs = [GENERATE, {"model": "sora-2", "prompt": "a blue kite"}]  # 8 + sora's 4
    async with Client(server, raise_exceptions=False, elicitation_callback=callback) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs, "wait_seconds": 0})
    assert result.is_error
    assert "12 seconds" in callback.asked[0]
    assert recording.submits == 0


@pytest.mark.parametrize("era", ERAS)
async def test_without_elicitation_it_is_refused_until_confirm_true(
    tmp_path: Path, era: str
) -> None:
    server, recording, _ = _harness(tmp_path, confirm_over_seconds=6)
    async with Client(server, raise_exceptions=False, mode=era) as client:
        refused = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        assert refused.is_error
        assert "confirm: true" in text_of(refused)
        assert recording.submits == 0
        confirmed = await client.call_tool(
            "generate_video", {**GENERATE, "wait_seconds": 0, "confirm": True}
        )
    assert not confirmed.is_error, text_of(confirmed)
    assert recording.submits == 1


# --- 4. rate limit --------------------------------------------------------------


async def test_submits_per_minute_says_when_to_retry(tmp_path: Path) -> None:
    server, recording, clock = _harness(tmp_path, submits_per_minute=2)
    async with Client(server, raise_exceptions=False) as client:
        for _ in range(2):
            ok = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
            assert not ok.is_error, text_of(ok)
        refused = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        assert refused.is_error
        assert "Retry in 30 s" in text_of(refused)
        assert recording.submits == 2
        clock.now += 30
        again = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
    assert not again.is_error, text_of(again)
    assert recording.submits == 3


def test_the_new_settings() -> None:
    env = {
        "GRAVITEX_USER_KEYS": "1",
        "GRAVITEX_CONFIRM_OVER_SECONDS": "20",
        "GRAVITEX_SUBMITS_PER_MINUTE": "5",
    }
    s = load_settings(env)
    assert (s.user_keys, s.confirm_over_seconds, s.submits_per_minute) == (True, 20, 5)
    off = load_settings({})
    assert (off.user_keys, off.confirm_over_seconds, off.submits_per_minute) == (False, None, None)


# --- 1. who calls, 2. bring your own key (real HTTP through ASGITransport) ---------------


def _tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text('[alice]\ntoken = "alice-token-1"\n\n[bob]\ntoken = "bob-token-2"\n')
    path.chmod(0o600)
    return path


def _http_app(
    tmp_path: Path,
    verifier: Any,
    recording: Recording,
    transport: HttpTransport = "streamable-http",
) -> ASGIApp:
    settings = make_settings(tmp_path, api_key=API_KEY, user_keys=True, media=False)
    auth = auth_settings(verifier, PUBLIC if isinstance(verifier, JwtVerifier) else None)
    server = build_server(
        settings, transport=recording, media_loopback=False, verifier=verifier, auth=auth
    )
    return build_http_app(
        server, transport=transport, host="127.0.0.1", port=8000, token=None, verifier=verifier
    )


@asynccontextmanager
async def _session(client: httpx2.AsyncClient, headers: dict[str, str]) -> AsyncIterator[str]:
    opened = await client.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **headers})
    answer(opened)
    session = opened.headers["mcp-session-id"]
    done = await client.post(
        "/mcp",
        json=rpc("notifications/initialized", ident=None),
        headers={**ACCEPT, **VERSION, **headers, "mcp-session-id": session},
    )
    assert done.status_code == 202, done.text
    yield session


async def test_tokens_file_callers_and_their_own_key_over_http(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recording = Recording(simulator_transport(_sim(FakeClock())))
    app = _http_app(tmp_path, TokensFileVerifier(_tokens_file(tmp_path)), recording)
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
    for folder in (tmp_path / "state", tmp_path / "videos"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert USER_KEY.encode() not in path.read_bytes(), path


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


async def test_oauth_metadata_and_the_401_that_points_at_it(tmp_path: Path) -> None:
    async def fetch(url: str) -> dict[str, Any]:
        raise AssertionError(f"no key is fetched here ({url})")

    verifier = JwtVerifier("https://id.example.com/realms/videos", PUBLIC, fetch)
    recording = Recording(simulator_transport(_sim(FakeClock())))
    app = _http_app(tmp_path, verifier, recording)
    async with running(app) as client:
        refused = await client.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        assert f"{PUBLIC}/.well-known/oauth-protected-resource" in challenge
        meta = await client.get(
            "/.well-known/oauth-protected-resource",
            headers={"Origin": "https://claude.example"},
        )
        assert meta.status_code == 200, meta.text
        body = meta.json()
        assert body["resource"].rstrip("/") == PUBLIC
        assert body["authorization_servers"][0].rstrip("/") == (
            "https://id.example.com/realms/videos"
        )
        assert (await client.get("/healthz")).status_code == 200


async def test_sse_needs_a_known_token(tmp_path: Path) -> None:
    recording = Recording(simulator_transport(_sim(FakeClock())))
    app = _http_app(tmp_path, TokensFileVerifier(_tokens_file(tmp_path)), recording, "sse")
    async with running(app) as client:
        assert (await client.get("/sse")).status_code == 401
        assert (await client.post("/messages/?session_id=x", json=INITIALIZE)).status_code == 401


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
async def test_the_command_wires_callers_and_their_keys(tmp_path: Path, transport: str) -> None:
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
            log = s.log.read_text()
    for text in (log, json.dumps(paid.structured_content), text_of(paid), text_of(polled)):
        assert USER_KEY not in text
    for path in (tmp_path / "srv").rglob("*"):
        if path.is_file():
            assert USER_KEY.encode() not in path.read_bytes(), path


def test_a_verifier_allows_a_public_bind(tmp_path: Path) -> None:
    verifier = TokensFileVerifier(_tokens_file(tmp_path))
    check_bind("0.0.0.0", verifier)
    with pytest.raises(ConfigurationError, match="without a token"):
        check_bind("0.0.0.0", None)


async def test_metrics_take_a_callers_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, media=False)
    verifier = TokensFileVerifier(_tokens_file(tmp_path))
    metrics = make_metrics()
    assert metrics is not None
    server = build_server(
        settings,
        media_loopback=False,
        metrics=metrics,
        verifier=verifier,
        auth=auth_settings(verifier, None),
    )
    app = build_http_app(
        server,
        transport="streamable-http",
        host="127.0.0.1",
        port=8000,
        token=None,
        verifier=verifier,
        metrics=metrics,
    )
    async with running(app) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer bob-token-2"})
        assert ok.status_code == 200


def test_the_readme_tokens_file_example_parses() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Users, keys and budgets") :]
    example = section[section.index("```toml\n") + 8 : section.index("```\n", 10)]
    users = parse_tokens_file(example, Path("tokens.toml"))
    assert sorted(users) == ["alice", "bob"]
    alice = users["alice"].caller
    assert alice.upstream_key is not None
    assert alice.upstream_key.get_secret_value() == "sk-alice-own-key"


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


async def test_a_callers_key_pays_for_the_save_that_outlives_the_call(tmp_path: Path) -> None:
    clock = FakeClock()
    gated = Gated(simulator_transport(_sim(clock)))
    settings = make_settings(tmp_path)
    journal = Journal.open(settings.state_dir)
    client = GravitexClient(api_key=API_KEY, base_url=settings.base_url, transport=gated)
    service = VideoService(
        settings=settings,
        client=client,
        journal=journal,
        output=OutputDir(settings.output_dir),
        clock=clock,
    )
    try:
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
            # Alice's next call (no key of its own) joins the running save: it sends nothing.
            saved = await service.acting_for("alice", None).download(task_id, filename=None)
    finally:
        await client.aclose()
        journal.close()
    assert Path(saved.location).is_file()
    assert [a for _, _, a in gated.seen] == [f"Bearer {USER_KEY}"] * len(gated.seen)
    assert any(path.endswith("/download") for _, path, _ in gated.seen)
