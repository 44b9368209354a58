"""A line the SDK cannot parse (a lone surrogate) gets a JSON-RPC parse error, not silence."""

from __future__ import annotations

from pathlib import Path

import anyio
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from .proc import SERVER_CMD, STOP_TIMEOUT, clean_env
from .test_transport_stdio import SESSION_TIMEOUT, RawSession, server_env

PARSE_ERROR = -32700


async def test_a_lone_surrogate_line_is_answered_with_a_parse_error(tmp_path: Path) -> None:
    errlog = tmp_path / "server.stderr"
    env = clean_env(tmp_path, **server_env(tmp_path))
    with errlog.open("wb") as err:
        process = await anyio.open_process(
            [*SERVER_CMD, "--simulate"], env=env, cwd=tmp_path, stderr=err
        )
    async with process:
        try:
            with anyio.fail_after(SESSION_TIMEOUT):
                session = RawSession(process)
                await session.request(
                    1,
                    "initialize",
                    {
                        "protocolVersion": LATEST_HANDSHAKE_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "surrogate-test", "version": "0"},
                    },
                )
                await session.send({"method": "notifications/initialized"})
                # json.dumps writes the lone surrogate as the escape \ud800
                refused = await session.request(
                    5, "tools/call", {"name": "list_models", "arguments": {"family": "\ud800"}}
                )
                # the server goes on serving after it
                listed = await session.request(6, "tools/list", {})
                await session.close_and_drain()
            with anyio.fail_after(STOP_TIMEOUT):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
    assert code == 0, errlog.read_text()
    assert refused["id"] == 5
    assert refused["error"]["code"] == PARSE_ERROR
    assert "surrogate" in refused["error"]["message"]
    assert listed["result"]["tools"]
    assert "refused a line from the client" in errlog.read_text()
