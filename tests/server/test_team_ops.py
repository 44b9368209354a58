"""Hosting for a team, the operations side (issue 17): a shared server secret, stateless
streamable HTTP, idle sessions expiring, ``/readyz`` and ``/metrics``.

Every test drives the real HTTP app (the SDK's streamable HTTP behind our guard) in
process through ``ASGITransport``, with its lifespan run as uvicorn would run it.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.server.request_state import RequestStateBoundary
from opentelemetry import trace
from starlette.types import ASGIApp, Message

from gravitex_mcp.errors import NotFoundError
from gravitex_mcp.logs import configure_logging
from gravitex_mcp.metrics import Metrics
from gravitex_mcp.server.app import build_server
from gravitex_mcp.server.http_app import build_http_app, readiness
from gravitex_mcp.settings import DEFAULT_SESSION_IDLE, Settings, load_settings
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.store.media_links import KEY_FILE, MediaLinks, link_key
from gravitex_mcp.store.ready import folder_writable, journal_readable
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.client import GravitexClient
from gravitex_mcp.upstream.observe import upstream_hooks
from tests.proc import clean_env, http_server, run_cli
from tests.server.test_failures import _failing
from tests.server_harness import make_harness, structured

SECRET = "0123456789abcdef0123456789abcdef-shared"
TOKEN = "ops-token-7c1d"
BASE = "http://127.0.0.1:8000"
ACCEPT = {"Accept": "application/json, text/event-stream"}
VERSION = {"MCP-Protocol-Version": "2025-06-18"}


def settings_in(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": None,
        "simulate": True,
        "output_dir": root / "videos",
        "state_dir": root / "state",
        "simulator_seconds": 0.0,
    }
    values.update(overrides)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    return Settings(**values)


def http_app(settings: Settings, **options: Any) -> ASGIApp:
    server = build_server(settings, media_loopback=False, metrics=options.get("metrics"))
    return build_http_app(
        server, transport="streamable-http", host="127.0.0.1", port=8000, **options
    )


@asynccontextmanager
async def running(app: ASGIApp) -> AsyncIterator[httpx2.AsyncClient]:
    """``app`` with its lifespan started (as uvicorn does), and a client for it."""
    to_app_send, to_app = anyio.create_memory_object_stream[Message](4)
    from_app_send, from_app = anyio.create_memory_object_stream[Message](4)

    async def lifespan() -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        await app(scope, to_app.receive, from_app_send.send)

    async with anyio.create_task_group() as group:
        group.start_soon(lifespan)
        await to_app_send.send({"type": "lifespan.startup"})
        started = await from_app.receive()
        assert started["type"] == "lifespan.startup.complete", started
        try:
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url=BASE) as client:
                yield client
        finally:
            await to_app_send.send({"type": "lifespan.shutdown"})
            stopped = await from_app.receive()
            assert stopped["type"] == "lifespan.shutdown.complete", stopped


def rpc(method: str, params: dict[str, Any] | None = None, ident: int | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    if ident is not None:
        message["id"] = ident
    return message


INITIALIZE = rpc(
    "initialize",
    {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "ops-test", "version": "0"},
    },
)


def answer(response: httpx2.Response) -> dict[str, Any]:
    """The JSON-RPC answer in a streamable-HTTP response (JSON or one SSE event)."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("application/json"):
        return dict(response.json())
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return dict(json.loads(data[-1]))


async def open_session(client: httpx2.AsyncClient) -> str:
    opened = await client.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    answer(opened)
    session = opened.headers["mcp-session-id"]
    done = await client.post(
        "/mcp",
        json=rpc("notifications/initialized", ident=None),
        headers={**ACCEPT, **VERSION, "mcp-session-id": session},
    )
    assert done.status_code == 202, done.text
    return session


async def ping(client: httpx2.AsyncClient, session: str) -> int:
    response = await client.post(
        "/mcp", json=rpc("ping"), headers={**ACCEPT, **VERSION, "mcp-session-id": session}
    )
    return response.status_code


# --- 1. GRAVITEX_SERVER_SECRET ----------------------------------------------------------


async def test_replicas_with_one_secret_honour_each_others_media_links(tmp_path: Path) -> None:
    output = tmp_path / "videos"
    output.mkdir()
    video = output / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 a video")

    def replica(name: str, secret: str | None) -> tuple[ASGIApp, MediaLinks]:
        state = tmp_path / name / "state"
        settings = settings_in(tmp_path / name, output_dir=output, server_secret=secret)
        links = MediaLinks(key=link_key(state, secret), output_dir=output)
        return http_app(settings, token=None, media=links), links

    _, links_a = replica("a", SECRET)  # its app need not run: B serves the link
    app_b, _ = replica("b", SECRET)
    route = links_a.path_for(video)
    assert route is not None
    async with running(app_b) as b:
        served = await b.get(route)
    assert served.status_code == 200
    assert served.content == video.read_bytes()
    # Derived from the secret: no per-folder key file is made.
    assert not (tmp_path / "a" / "state" / KEY_FILE).exists()

    # Without the secret each replica keeps its own key: the other's link is a 404.
    _, own_a = replica("c", None)
    app_d, _ = replica("d", None)
    other = own_a.path_for(video)
    assert other is not None
    async with running(app_d) as d:
        assert (await d.get(other)).status_code == 404
    assert (
        link_key(tmp_path / "c" / "state", None) == (tmp_path / "c/state" / KEY_FILE).read_bytes()
    )


def test_replicas_with_one_secret_share_the_request_state_key(tmp_path: Path) -> None:
    def codec(name: str, secret: str | None) -> Any:
        server = build_server(settings_in(tmp_path / name, server_secret=secret))
        (boundary,) = [
            m for m in server._lowlevel_server.middleware if isinstance(m, RequestStateBoundary)
        ]
        return boundary._security.codec

    sealed = codec("a", SECRET).seal(b"round 1")
    assert codec("b", SECRET).unseal(sealed) == b"round 1"
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the codec raises
        codec("c", None).unseal(codec("d", None).seal(b"round 1"))


def test_the_server_secret_setting(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert load_settings(env).server_secret is None
    settings = load_settings({**env, "GRAVITEX_SERVER_SECRET": f"  {SECRET} "})
    assert settings.server_secret == SECRET
    assert SECRET not in repr(settings)
    from gravitex_mcp.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="at least 32") as refused:
        load_settings({**env, "GRAVITEX_SERVER_SECRET": "short-secret"})
    assert "short-secret" not in str(refused.value)


# --- 2. --stateless -------------------------------------------------------------------


@pytest.mark.parametrize("stateless", [True, False])
async def test_stateless_any_request_reaches_any_replica(tmp_path: Path, stateless: bool) -> None:
    app_a = http_app(settings_in(tmp_path / "a"), token=None, stateless=stateless)
    app_b = http_app(settings_in(tmp_path / "b"), token=None, stateless=stateless)
    async with running(app_a) as a, running(app_b) as b:
        opened = await a.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        answer(opened)
        session = {"mcp-session-id": opened.headers["mcp-session-id"]} if not stateless else {}
        # The next call lands on the other replica, as a load balancer may send it.
        listed = await b.post(
            "/mcp", json=rpc("tools/list", {}, 2), headers={**ACCEPT, **VERSION, **session}
        )
    if stateless:
        assert "mcp-session-id" not in opened.headers
        names = {t["name"] for t in answer(listed)["result"]["tools"]}
        assert "generate_video" in names
    else:  # a session lives on the replica that opened it
        assert listed.status_code == 404, listed.text


@pytest.mark.slow
def test_stateless_flag_and_variable(tmp_path: Path) -> None:
    from gravitex_mcp.cli.main import _settings, build_parser

    env = {"HOME": str(tmp_path)}
    assert not _settings(build_parser().parse_args([]), env).stateless
    assert _settings(build_parser().parse_args(["--stateless"]), env).stateless
    assert _settings(build_parser().parse_args(["serve", "--stateless"]), env).stateless
    assert _settings(build_parser().parse_args([]), {**env, "GRAVITEX_STATELESS": "1"}).stateless
    refused = run_cli(["--stateless"], clean_env(tmp_path))
    assert refused.returncode == 2
    assert "--stateless applies to --transport streamable-http only" in refused.stderr


# --- 3. abandoned sessions expire -------------------------------------------------------


class _ShiftedLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward (timers fire as if time passed)."""

    shift = 0.0

    def time(self) -> float:
        return super().time() + self.shift


def test_idle_sessions_expire_and_active_ones_stay(tmp_path: Path) -> None:
    app = http_app(settings_in(tmp_path), token=None, session_idle_seconds=60)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, _ShiftedLoop)

        async def advance(seconds: float) -> None:
            loop.shift += seconds
            for _ in range(3):  # the loop runs the timers now due, then their cancellations
                await asyncio.sleep(0)

        async with running(app) as client:
            kept = await open_session(client)
            abandoned = [await open_session(client) for _ in range(3)]
            await advance(40)
            assert await ping(client, kept) == 200
            await advance(40)  # 80 s since the abandoned ones were last used, 40 for kept
            assert [await ping(client, s) for s in abandoned] == [404, 404, 404]
            assert await ping(client, kept) == 200

    anyio.run(scenario, backend="asyncio", backend_options={"loop_factory": _ShiftedLoop})


def test_session_idle_setting(tmp_path: Path) -> None:
    from gravitex_mcp.errors import ConfigurationError

    env = {"HOME": str(tmp_path)}
    assert load_settings(env).session_idle_seconds == DEFAULT_SESSION_IDLE == 1800
    assert load_settings({**env, "GRAVITEX_SESSION_IDLE_SECONDS": "90"}).session_idle_seconds == 90
    with pytest.raises(ConfigurationError, match="GRAVITEX_SESSION_IDLE_SECONDS"):
        load_settings({**env, "GRAVITEX_SESSION_IDLE_SECONDS": "0"})


# --- 4. /readyz ------------------------------------------------------------------------


async def test_readyz_names_the_failed_check_and_needs_no_token(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    checks = {
        "journal": lambda: journal_readable(settings.state_dir),
        "output": lambda: folder_writable(settings.output_dir),
    }
    async with running(http_app(settings, token=TOKEN, ready_checks=checks)) as client:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert (await client.get("/mcp")).status_code == 401  # the guard is on

        shutil.rmtree(settings.output_dir)
        failed = await client.get("/readyz")
        assert (failed.status_code, failed.json()) == (
            503,
            {"status": "not ready", "failed": ["output"]},
        )
        settings.state_dir.rename(tmp_path / "gone")  # as a lost mount would
        both = await client.get("/readyz")
    assert both.status_code == 503
    assert both.json()["failed"] == ["journal", "output"]
    assert str(tmp_path) not in both.text


async def test_ready_before_the_journal_exists(tmp_path: Path) -> None:
    # Over SSE the journal is made at the first connection: ready must not wait for one.
    state = tmp_path / "state"
    state.mkdir()
    fresh = await readiness({"journal": lambda: journal_readable(state)})
    assert fresh.status_code == 200
    lost = await readiness({"journal": lambda: journal_readable(tmp_path / "unmounted")})
    assert lost.status_code == 503


# --- 5. /metrics -------------------------------------------------------------------------


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text exposition (None if absent)."""
    inside = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    head = f"{name}{{{inside}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def call_tool(client: httpx2.AsyncClient, name: str, arguments: dict[str, Any]) -> Any:
    headers = {**ACCEPT, **VERSION, "Authorization": f"Bearer {TOKEN}"}
    params = {"name": name, "arguments": arguments}
    return answer(await client.post("/mcp", json=rpc("tools/call", params), headers=headers))


async def test_metrics_obey_the_token_and_count_calls_submits_and_tasks(tmp_path: Path) -> None:
    metrics = Metrics()
    app = http_app(settings_in(tmp_path), token=TOKEN, metrics=metrics, stateless=True)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with running(app) as client:
        assert (await client.get("/metrics")).status_code == 401
        await call_tool(client, "list_models", {"family": "sora"})
        refused = await call_tool(client, "generate_video", {"model": "no-such", "prompt": "x"})
        assert refused["result"]["isError"] is True
        made = await call_tool(
            client, "generate_video", {"model": "sora-2", "prompt": "a cat", "wait_seconds": 0}
        )
        assert made["result"].get("isError") is not True, made
        scraped = await client.get("/metrics", headers=auth)
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert sample(text, "gravitex_tool_calls_total", tool="list_models", outcome="ok") == 1
    assert sample(text, "gravitex_tool_calls_total", tool="generate_video", outcome="refused") == 1
    assert sample(text, "gravitex_tool_calls_total", tool="generate_video", outcome="ok") == 1
    assert sample(text, "gravitex_submits_total") == 1
    assert sample(text, "gravitex_upstream_request_seconds_count", endpoint="submit") == 1
    assert sample(text, "gravitex_tasks", status="submitted") == 1  # read from the journal
    for defined in ("gravitex_saves_total", "gravitex_lease_takeovers_total"):
        assert f"# TYPE {defined} counter" in text  # fed by saves and leases (below)


async def test_metrics_public_needs_no_token(tmp_path: Path) -> None:
    app = http_app(settings_in(tmp_path), token=TOKEN, metrics=Metrics(), metrics_public=True)
    async with running(app) as client:
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert "gravitex_tool_calls" in scraped.text
        assert (await client.get("/mcp")).status_code == 401


@pytest.mark.slow
def test_the_command_serves_readyz_and_metrics(tmp_path: Path) -> None:
    # The CLI's wiring, in a real process on loopback: checks, metrics, the token rule.
    with (
        http_server(tmp_path, "streamable-http", token=TOKEN) as server,
        httpx2.Client(base_url=server.base_url, timeout=10.0) as client,
    ):
        ready = client.get("/readyz")
        refused = client.get("/metrics")
        scraped = client.get("/metrics", headers=server.auth())
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert refused.status_code == 401
    assert scraped.status_code == 200
    assert "# TYPE gravitex_upstream_request_seconds histogram" in scraped.text


async def test_metrics_count_saves_their_bytes_and_storage_errors(tmp_path: Path) -> None:
    metrics = Metrics()
    h = make_harness(tmp_path)
    wan = {"model": "wan2.5-t2v-preview", "prompt": "a cat"}

    def server(output: OutputDir | None = None) -> Client:
        built = build_server(
            h.settings,
            transport=simulator_transport(h.sim),
            clock=h.clock,
            metrics=metrics,
            output=output,
        )
        return Client(built, raise_exceptions=False)

    async with server() as client:
        made = structured(
            await client.call_tool("generate_video", {**wan, "wait_seconds": 60, "download": True})
        )
        later = structured(await client.call_tool("generate_video", {**wan, "wait_seconds": 0}))
    h.clock.now += 60  # finished upstream
    full = OutputDir(h.settings.output_dir, write=_failing(errno.ENOSPC))
    async with server(full) as client:
        refused = await client.call_tool("download_video", {"task_id": later["task_id"]})
    assert refused.is_error
    value = metrics.registry.get_sample_value
    assert value("gravitex_saves_total", {"outcome": "saved"}) == 1
    assert value("gravitex_saved_bytes_total") == made["size_bytes"]
    assert value("gravitex_saves_total", {"outcome": "failed"}) == 1
    assert value("gravitex_storage_errors_total", {"operation": "save"}) == 1


# --- 6. spans around upstream calls, and the task id in log lines ------------------------


class _Span(trace.NonRecordingSpan):
    """What an exporter would receive of one span: name, attributes, status, ended."""

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.name, self.attributes = name, dict(attributes)
        self.status: trace.StatusCode | None = None
        self.ended = False

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_status(self, status: Any, description: str | None = None) -> None:
        self.status = status

    def end(self, end_time: int | None = None) -> None:
        self.ended = True


class _Tracer(trace.Tracer):
    def __init__(self) -> None:
        self.spans: list[_Span] = []

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> _Span:
        span = _Span(name, kwargs.get("attributes") or {})
        self.spans.append(span)
        return span

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def test_upstream_calls_are_timed_counted_and_traced_by_endpoint() -> None:
    sim = Simulator(SimulatorConfig(), clock=lambda: 0.0)
    metrics, tracer = Metrics(), _Tracer()
    ticks = iter(range(100))
    base = "http://simulator.test"
    hooks = upstream_hooks(base, metrics, clock=lambda: next(ticks) * 0.5, tracer=tracer)
    async with GravitexClient(
        api_key="sk-sim-0123456789",
        base_url=base,
        transport=simulator_transport(sim),
        event_hooks=hooks,
    ) as client:
        task = await client.submit({"model": "sora-2", "prompt": "a cat", "seconds": "4"})
        await client.query(task.task_id)
        with pytest.raises(NotFoundError):
            await client.query("task_does_not_exist")
    text = metrics.exposition()[0].decode()
    assert sample(text, "gravitex_submits_total") == 1
    assert sample(text, "gravitex_upstream_request_seconds_count", endpoint="submit") == 1
    assert sample(text, "gravitex_upstream_request_seconds_sum", endpoint="submit") == 0.5
    assert sample(text, "gravitex_upstream_request_seconds_count", endpoint="query") == 2
    assert sample(text, "gravitex_upstream_errors_total", endpoint="query", status="404") == 1
    assert [(s.name, s.ended) for s in tracer.spans] == [
        ("gravitex submit", True),
        ("gravitex query", True),
        ("gravitex query", True),
    ]
    assert [s.status for s in tracer.spans] == [None, None, trace.StatusCode.ERROR]
    assert tracer.spans[0].attributes["http.response.status_code"] == 200
    assert not any("task_" in str(v) for s in tracer.spans for v in s.attributes.values())


@pytest.mark.usefixtures("restore_logging")
async def test_log_lines_of_a_call_carry_its_task_id(tmp_path: Path) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    app = http_app(settings_in(tmp_path), token=TOKEN, stateless=True)
    async with running(app) as client:
        await call_tool(client, "check_video_task", {"task_id": "task_0f3a9"})
        await call_tool(client, "list_models", {"family": "sora"})
    lines = stream.getvalue().splitlines()
    tagged = [line for line in lines if "[task task_0f3a9]" in line]
    assert tagged, lines
    assert all("task_0f3a9" in line for line in tagged)
    outside = logging.getLogger("gravitex_mcp.test")
    outside.info("after the call")
    assert stream.getvalue().splitlines()[-1].endswith("gravitex_mcp.test: after the call")
