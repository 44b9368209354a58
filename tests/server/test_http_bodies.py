"""One unreadable HTTP request body never ends the server: ``/mcp`` and ``/messages/``.

Each body a client could send by mistake or malice (nested thousands deep, megabytes,
binary, not UTF-8, not JSON) gets a 4xx or a JSON-RPC error, and the same server then
serves a whole MCP conversation; its log holds no traceback.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx2
import pytest

from tests.proc import HttpServer, http_server
from tests.server.test_transport_http import INITIALIZE, SESSION_TIMEOUT, TOKEN, list_and_call

pytestmark = pytest.mark.slow  # HTTP server subprocesses

DEPTH = 100_000
#: Each body the server cannot read, by what is wrong with it.
BAD_BODIES: dict[str, bytes] = {
    "deeply nested": (
        b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"list_models",'
        b'"arguments":{"family":' + b"[" * DEPTH + b"]" * DEPTH + b"}}}"
    ),
    "deeply nested objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "deeply nested, unclosed": b"[" * DEPTH,
    "huge": b"x" * (16 * 1024 * 1024),
    "binary": bytes(range(256)) * 64,
    "not UTF-8": b'{"jsonrpc":"2.0","id":9,"method":"ping","params":{"x":"\xff\xfe\xc3"}}',
    "lone surrogate": b'{"jsonrpc":"2.0","id":9,"method":"ping","params":{"x":"\\ud800"}}',
    "not JSON": b"hello, server",
    "empty": b"",
}


@pytest.fixture(scope="module", params=["sse", "streamable-http"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpServer]:
    transport: str = request.param
    with http_server(tmp_path_factory.mktemp(f"{transport}-bodies"), transport, token=TOKEN) as s:
        yield s


async def _next_data(lines: AsyncIterator[str]) -> str:
    """The data of the next event on an SSE stream."""
    async for line in lines:
        if line.startswith("data: "):
            return line.removeprefix("data: ").strip()
    raise AssertionError("the SSE stream ended")


#: What a streamable HTTP client sends with every POST.
POST_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


async def _post_each(
    client: httpx2.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> dict[str, httpx2.Response]:
    answers = {}
    for kind, body in BAD_BODIES.items():
        answers[kind] = await client.post(
            url, content=body, headers={**POST_HEADERS, **(headers or {})}
        )
    return answers


def _sse_data(text: str) -> dict[str, Any]:
    """The JSON-RPC message of a POST's answer: plain JSON or one SSE ``data:`` event."""
    data = [line for line in text.splitlines() if line.startswith("data: ")]
    message: dict[str, Any] = json.loads(data[0].removeprefix("data: ") if data else text)
    return message


async def test_no_body_ends_the_server_or_its_session(server: HttpServer) -> None:
    async with httpx2.AsyncClient(
        base_url=server.base_url, headers=server.auth(), timeout=30.0
    ) as client:
        with anyio.fail_after(SESSION_TIMEOUT):
            if server.transport == "sse":
                async with client.stream("GET", "/sse") as stream:
                    lines = stream.aiter_lines()
                    url = await _next_data(lines)  # the session's /messages/ URL
                    answers = await _post_each(client, url)
                    # The same session still answers a request after all of them.
                    after = await client.post(url, json=INITIALIZE)
                    assert after.status_code == 202, after.text
                    answer = json.loads(await _next_data(lines))
                    assert answer["id"] == INITIALIZE["id"], answer
                    assert answer["result"]["serverInfo"], answer
            else:
                opened = await client.post("/mcp", json=INITIALIZE, headers=POST_HEADERS)
                assert opened.status_code == 200, opened.text
                session = {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
                answers = await _post_each(client, "/mcp", session)
                # The same session still answers a request after all of them.
                listed = await client.post(
                    "/mcp",
                    json={"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
                    headers={**POST_HEADERS, **session},
                )
                assert listed.status_code == 200, listed.text
                assert _sse_data(listed.text)["result"]["tools"], listed.text
    for kind_, answer in answers.items():
        assert 400 <= answer.status_code < 500, (kind_, answer.status_code, answer.text[:300])
    await list_and_call(server)
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
