"""The HTTP guard: Host/Origin checks, bearer token, public bind refusal."""

from __future__ import annotations

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gravitex_mcp.errors import ConfigurationError
from gravitex_mcp.server.http_app import HttpGuard, check_bind
from gravitex_mcp.settings import is_loopback


async def _hello(_: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _client(token: str | None) -> httpx2.AsyncClient:
    inner = Starlette(routes=[Route("/x", _hello)])
    app = HttpGuard(
        inner,
        allowed_hosts=["127.0.0.1:8000", "localhost:8000"],
        allowed_origins=["http://127.0.0.1:8000", "http://localhost:8000"],
        token=token,
    )
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    )


async def test_allowed_host_passes() -> None:
    async with _client(None) as c:
        r = await c.get("/x")
    assert r.status_code == 200
    assert r.text == "hello"


async def test_forged_host_is_refused() -> None:
    async with _client(None) as c:
        r = await c.get("/x", headers={"Host": "evil.example:8000"})
    assert r.status_code == 421


async def test_foreign_origin_is_refused() -> None:
    async with _client(None) as c:
        r = await c.get("/x", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


async def test_own_origin_passes() -> None:
    async with _client(None) as c:
        r = await c.get("/x", headers={"Origin": "http://localhost:8000"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong", "Basic c2VjcmV0", "Bearer", "bearer secret-token-x"]
)
async def test_token_required(auth: str | None) -> None:
    headers = {} if auth is None else {"Authorization": auth}
    async with _client("secret-token") as c:
        r = await c.get("/x", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "secret-token" not in r.text


async def test_right_token_passes() -> None:
    async with _client("secret-token") as c:
        r = await c.get("/x", headers={"Authorization": "Bearer secret-token"})
    assert r.status_code == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_public_bind_needs_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigurationError, match="GRAVITEX_HTTP_TOKEN"):
        check_bind(host, None)
    check_bind(host, "a-token")
