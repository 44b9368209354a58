"""The server over stdio as a real subprocess, the way Claude Desktop starts it.

Two views: the official ``mcp.Client`` drives the main job end to end, and a raw
pipe conversation checks that stdout carries nothing but JSON-RPC while the
DEBUG logs go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import ResourceLink
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from tests.conftest import TOOLS
from tests.proc import SERVER_CMD, STOP_TIMEOUT, clean_env
from tests.server_harness import structured

pytestmark = pytest.mark.slow  # stdio server subprocesses

#: Bound on one whole conversation with the subprocess.
SESSION_TIMEOUT = 60.0


def server_env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "GRAVITEX_OUTPUT_DIR": str(tmp_path / "videos"),
        "GRAVITEX_STATE_DIR": str(tmp_path / "state"),
        "GRAVITEX_SIMULATOR_SECONDS": "1",
        "GRAVITEX_LOG_LEVEL": "DEBUG",
    }


async def test_official_client_over_stdio_generates_and_downloads(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=SERVER_CMD[0], args=[*SERVER_CMD[1:], "--simulate"], env=server_env(tmp_path)
    )
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    errlog = tmp_path / "server.stderr"
    with anyio.fail_after(SESSION_TIMEOUT), errlog.open("w") as err:
        async with Client(stdio_client(params, errlog=err), read_timeout_seconds=30) as client:
            tools = await client.list_tools()
            assert {t.name for t in tools.tools} == TOOLS

            models = structured(await client.call_tool("list_models", {}))["models"]
            assert "sora-2" in {m["id"] for m in models}

            arguments = {
                "model": "sora-2",
                "prompt": "A paper boat on a rainy street",
                "wait_seconds": 30,
                "download": True,
            }
            result = await client.call_tool(
                "generate_video", arguments, progress_callback=on_progress
            )
    video = structured(result)
    assert video["status"] == "succeeded", video
    path = Path(video["path"])
    assert path.is_absolute()
    assert path.is_file()
    assert path.parent == (tmp_path / "videos").resolve()
    assert path.stat().st_size == video["size_bytes"]
    assert path.read_bytes()[4:8] == b"ftyp"
    links = [b for b in result.content if isinstance(b, ResourceLink)]
    assert [str(link.uri) for link in links] == [path.as_uri()]
    assert seen, "waiting sends progress notifications"
    assert "DEBUG" in errlog.read_text()


# --- the raw pipe: stdout is MCP only ------------------------------------------------


def json_rpc(line: bytes) -> dict[str, Any]:
    """``line`` as a JSON-RPC message, or a failure quoting the stray stdout output."""
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise AssertionError(f"stdout carried something other than JSON-RPC: {line[:300]!r}")
    return message


class RawSession:
    """Newline-delimited JSON-RPC over a subprocess's pipes, every read recorded."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = BufferedByteReceiveStream(process.stdout)
        self.lines: list[bytes] = []

    async def send(self, message: dict[str, Any]) -> None:
        await self._stdin.send(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")

    async def request(self, id_: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request and read lines until its response (notifications are kept)."""
        await self.send({"id": id_, "method": method, "params": params})
        while True:
            line = await self._stdout.receive_until(b"\n", 16 * 1024 * 1024)
            self.lines.append(line)
            message = json_rpc(line)
            if message.get("id") == id_ and "method" not in message:
                return message

    async def initialize(self, client_name: str) -> dict[str, Any]:
        """The handshake (request id 1, then ``notifications/initialized``); its answer."""
        answer = await self.request(
            1,
            "initialize",
            {
                "protocolVersion": LATEST_HANDSHAKE_VERSION,
                "capabilities": {},
                "clientInfo": {"name": client_name, "version": "0"},
            },
        )
        await self.send({"method": "notifications/initialized"})
        return answer

    async def close_and_drain(self) -> None:
        """Close stdin (the client hangs up) and keep what stdout still says until EOF."""
        await self._stdin.aclose()
        rest = b""
        try:
            while True:
                rest += await self._stdout.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        self.lines.extend(line for line in rest.split(b"\n") if line)


async def test_stdout_carries_only_json_rpc_and_logs_go_to_stderr(tmp_path: Path) -> None:
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
                init = await session.initialize("raw-pipe-test")
                assert init["result"]["serverInfo"]["name"] == "gravitex-mcp"
                listed = await session.request(2, "tools/list", {})
                assert {t["name"] for t in listed["result"]["tools"]} == TOOLS
                called = await session.request(
                    3, "tools/call", {"name": "list_models", "arguments": {"family": "veo"}}
                )
                assert called["result"]["isError"] is False
                assert called["result"]["structuredContent"]["models"]
                await session.close_and_drain()
            with anyio.fail_after(STOP_TIMEOUT):
                code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
    assert code == 0, errlog.read_text()

    assert len(session.lines) >= 3
    for line in session.lines:
        json_rpc(line)

    stderr = errlog.read_text()
    assert " DEBUG " in stderr, stderr[-2000:]
    assert "serving over stdio (simulator)" in stderr
    assert "Traceback" not in stderr, stderr[-4000:]
    # Nothing the server logs ever lands on stdout.
    stdout = b"\n".join(session.lines).decode()
    assert "serving over stdio" not in stdout
    assert " DEBUG " not in stdout
