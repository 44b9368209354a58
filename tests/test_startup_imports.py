"""Start-up stays lean: what a server loads before its first tool call.

Start-up to ``tools/list`` is benchmarked against a bare ``MCPServer``
(bench/bench_startup.py). What keeps it close is what it does *not* do before a
tool is called: the HTTP client's network transport (httpcore, the CA bundle),
the simulator (under ``--simulate``, made at the first request), uvicorn's HTTP
protocol for the loopback media server (started at the first link), PyAV and the
modules only a tool call uses. Each start here runs in a fresh interpreter, as a
client starts a server, so an eager import added anywhere shows up by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .proc import CLI_TIMEOUT, TOOLS, clean_env

#: Loaded only when a tool is called; never by start-up plus tools/list.
NOT_AT_START = (
    "httpcore2",  # the real network transport (and its CA bundle): at the first request
    "gravitex_mcp.simulator",  # --simulate: made at the first request
    "uvicorn.protocols.http.h11_impl",  # the loopback media server: at the first link
    "h11",
    "av",  # PyAV: probes, contact sheets, frames, joins
    "gravitex_mcp.join",
)

#: Start as ``gravitex-mcp`` over stdio does (cli -> _serve -> build_server), then
#: initialize and list the tools in memory, and print what is loaded.
SCRIPT = """
import json, os, sys
import anyio
from mcp import Client
from gravitex_mcp.cli import _settings, build_parser
from gravitex_mcp.server import build_server

args = build_parser().parse_args(sys.argv[1:])
server = build_server(_settings(args, os.environ))

async def main():
    async with Client(server) as client:
        listed = await client.list_tools()
    return [tool.name for tool in listed.tools]

tools = anyio.run(main)
print(json.dumps({"tools": tools, "modules": sorted(sys.modules)}))
"""


def _start(tmp_path: Path, args: list[str], **env: str) -> tuple[set[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        env=clean_env(
            tmp_path,
            GRAVITEX_OUTPUT_DIR=str(tmp_path / "videos"),
            GRAVITEX_STATE_DIR=str(tmp_path / "state"),
            **env,
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return set(answer["tools"]), set(answer["modules"])


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param([], {"GRAVITEX_API_KEY": "sk-startup-test"}, id="real-api"),
        pytest.param(["--simulate"], {}, id="simulate"),
    ],
)
def test_start_up_to_tools_list_loads_nothing_a_tool_call_needs(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    tools, modules = _start(tmp_path, args, **env)
    assert tools == TOOLS
    # The server itself is loaded (so the check below is about a real start).
    assert {"gravitex_mcp.server", "gravitex_mcp.tools", "gravitex_mcp.client"} <= modules
    loaded = sorted(name for name in NOT_AT_START if name in modules)
    assert not loaded, f"start-up loaded {loaded}: import them where a tool call needs them"
