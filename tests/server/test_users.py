"""Many users on one server (issue 18, the part without the store seam): who calls on
HTTP, confirmation before spending (on both backends: ``backend``), the new settings.
Bring your own key: test_own_keys.py; the store's part: test_scope.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult
from starlette.types import ASGIApp

from gravitex_mcp.errors import ConfigurationError
from gravitex_mcp.metrics import make_metrics
from gravitex_mcp.server.app import build_server
from gravitex_mcp.server.callers import TokensFileVerifier, auth_settings, parse_tokens_file
from gravitex_mcp.server.callers_jwt import JwtVerifier
from gravitex_mcp.server.http_app import HttpTransport, build_http_app, check_bind
from gravitex_mcp.settings import load_settings
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from tests.backends import Backend
from tests.conftest import FakeClock
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


def _harness(
    tmp_path: Path, backend: Backend | None = None, **overrides: Any
) -> tuple[Any, Recording, FakeClock]:
    clock = FakeClock()
    recording = Recording(simulator_transport(_sim(clock)))
    on = backend.settings if backend is not None else {}
    settings = make_settings(tmp_path, **on, **overrides)
    server = build_server(settings, transport=recording, clock=clock)
    return server, recording, clock


async def _kept(client: Client) -> tuple[list[str], float, int]:
    """What the task store holds of the caller: their tasks' ids (listed), and the
    seconds and tasks of today (get_usage: seconds reserved, rows made)."""
    listed = (await client.call_tool("list_video_tasks", {})).structured_content
    usage = (await client.call_tool("get_usage", {})).structured_content
    assert listed is not None
    assert usage is not None
    ids = [task["task_id"] for task in listed["tasks"]]
    return ids, usage["seconds_today"], usage["tasks_today"]


#: Nothing kept: no task listed, no second reserved, no row made.
NOTHING: tuple[list[str], float, int] = ([], 0.0, 0)


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
    tmp_path: Path, backend: Backend, action: str, sent: int, said: str | None, era: str
) -> None:
    server, recording, _ = _harness(tmp_path, backend, confirm_over_seconds=6)
    callback = _answering(action)
    async with Client(
        server, raise_exceptions=False, elicitation_callback=callback, mode=era
    ) as client:
        assert (client.session.protocol_version == "2026-07-28") == (era != "legacy")
        result = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        kept = await _kept(client)
    assert len(callback.asked) == 1
    assert "8 seconds" in callback.asked[0]
    assert recording.submits == sent
    if said is None:
        assert not result.is_error, text_of(result)
        assert result.structured_content is not None
        assert kept == ([result.structured_content["task_id"]], 8.0, 1)
    else:
        assert result.is_error
        assert said in text_of(result)
        assert kept == NOTHING


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


async def test_a_batch_counts_every_job_and_model_defaults(
    tmp_path: Path, backend: Backend
) -> None:
    server, recording, _ = _harness(tmp_path, backend, confirm_over_seconds=10)
    callback = _answering("decline")
    jobs = [GENERATE, {"model": "sora-2", "prompt": "a blue kite"}]  # 8 + sora's 4
    async with Client(server, raise_exceptions=False, elicitation_callback=callback) as client:
        result = await client.call_tool("generate_videos", {"jobs": jobs, "wait_seconds": 0})
        kept = await _kept(client)
    assert result.is_error
    assert "12 seconds" in callback.asked[0]
    assert recording.submits == 0
    assert kept == NOTHING


@pytest.mark.parametrize("era", ERAS)
async def test_without_elicitation_it_is_refused_until_confirm_true(
    tmp_path: Path, backend: Backend, era: str
) -> None:
    server, recording, _ = _harness(tmp_path, backend, confirm_over_seconds=6)
    async with Client(server, raise_exceptions=False, mode=era) as client:
        refused = await client.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        assert refused.is_error
        assert "confirm: true" in text_of(refused)
        assert recording.submits == 0
        assert await _kept(client) == NOTHING
        confirmed = await client.call_tool(
            "generate_video", {**GENERATE, "wait_seconds": 0, "confirm": True}
        )
        assert not confirmed.is_error, text_of(confirmed)
        assert confirmed.structured_content is not None
        assert await _kept(client) == ([confirmed.structured_content["task_id"]], 8.0, 1)
    assert recording.submits == 1


# --- 4. rate limit (tests/server/test_scope.py: counted in the task store) --------------


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
    **overrides: Any,
) -> ASGIApp:
    settings = make_settings(
        tmp_path, **{"api_key": API_KEY, "user_keys": True, "media": False, **overrides}
    )
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
