"""The HTTP transports as real subprocesses on 127.0.0.1: guard, health, official clients.

Each transport runs once with ``GRAVITEX_HTTP_TOKEN`` set (every refusal, then a real
tool call with the token) and once without a token on loopback (open, as documented).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from gravitex_mcp import __version__
from tests.conftest import TOOLS
from tests.proc import HttpServer, http_server
from tests.server_harness import structured

pytestmark = pytest.mark.slow  # HTTP server subprocesses

TRANSPORTS = ["sse", "streamable-http"]
TOKEN = "test-token-5f0c2a9e"
#: Bound on one whole MCP conversation over HTTP.
SESSION_TIMEOUT = 60.0
#: A JSON-RPC ``initialize`` request, the body of a probe POSTed to ``/mcp``.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "guard-test", "version": "0"},
    },
}


@pytest.fixture(scope="module", params=TRANSPORTS)
def with_token(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpServer]:
    transport: str = request.param
    with http_server(tmp_path_factory.mktemp(f"{transport}-token"), transport, token=TOKEN) as s:
        yield s


@pytest.fixture(scope="module", params=TRANSPORTS)
def without_token(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpServer]:
    transport: str = request.param
    with http_server(tmp_path_factory.mktemp(f"{transport}-open"), transport, token=None) as s:
        yield s


async def probe(
    server: HttpServer, path: str, headers: dict[str, str] | None = None
) -> httpx2.Response:
    """One request that never waits on a stream: GET ``/healthz`` or ``/sse``, POST ``/mcp``.

    Only used where the guard must answer before the MCP app runs (a refusal), so a
    GET on ``/sse`` cannot turn into a long-lived event stream here.
    """
    async with httpx2.AsyncClient(base_url=server.base_url, timeout=10.0) as c:
        if path == "/mcp":
            return await c.post(
                path,
                json=INITIALIZE,
                headers={"Accept": "application/json, text/event-stream", **(headers or {})},
            )
        return await c.get(path, headers=headers or {})


def mcp_path(server: HttpServer) -> str:
    return "/sse" if server.transport == "sse" else "/mcp"


@asynccontextmanager
async def official_client(server: HttpServer) -> AsyncIterator[Client]:
    """``mcp.Client`` over the server's transport, with its token when it has one."""
    headers = server.auth()
    if server.transport == "sse":
        async with Client(sse_client(server.mcp_url, headers=headers)) as client:
            yield client
        return
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
    ):
        yield client


async def list_and_call(server: HttpServer) -> None:
    with anyio.fail_after(SESSION_TIMEOUT):
        async with official_client(server) as client:
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == TOOLS
            models = structured(await client.call_tool("list_models", {"family": "sora"}))
    assert {m["family"] for m in models["models"]} == {"sora"}
    assert "sora-2" in {m["id"] for m in models["models"]}


# --- with a token ---------------------------------------------------------------------


async def test_no_token_is_401(with_token: HttpServer) -> None:
    r = await probe(with_token, mcp_path(with_token))
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer"],
)
async def test_wrong_token_is_401(with_token: HttpServer, authorization: str) -> None:
    r = await probe(with_token, mcp_path(with_token), {"Authorization": authorization})
    assert r.status_code == 401, r.text
    assert TOKEN not in r.text


async def test_forged_host_is_refused(with_token: HttpServer) -> None:
    r = await probe(with_token, mcp_path(with_token), {**with_token.auth(), "Host": "evil.example"})
    assert r.status_code == 421, r.text


async def test_foreign_origin_is_refused(with_token: HttpServer) -> None:
    headers = {**with_token.auth(), "Origin": "https://evil.example"}
    r = await probe(with_token, mcp_path(with_token), headers)
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    "headers",
    [
        {},  # a load balancer's probe: no token
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}"},
        {"Host": "10.0.0.7:8000"},  # the instance's address, not a name the server knows
    ],
)
async def test_healthz_is_open_and_reveals_nothing(
    with_token: HttpServer, headers: dict[str, str]
) -> None:
    r = await probe(with_token, "/healthz", headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}
    assert __version__ not in r.text
    assert "www-authenticate" not in r.headers


async def test_official_client_with_token_calls_a_tool(with_token: HttpServer) -> None:
    await list_and_call(with_token)
    assert TOKEN not in with_token.log.read_text()


# --- without a token, on loopback -----------------------------------------------------


async def test_loopback_without_token_is_open(without_token: HttpServer) -> None:
    r = await probe(without_token, "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    await list_and_call(without_token)


async def test_loopback_without_token_still_checks_host(without_token: HttpServer) -> None:
    r = await probe(without_token, mcp_path(without_token), {"Host": "evil.example"})
    assert r.status_code == 421
    r = await probe(without_token, mcp_path(without_token), {"Origin": "https://evil.example"})
    assert r.status_code == 403
