"""Start-up stays lean: what a server loads before its first tool call.

Start-up to ``tools/list`` is benchmarked against a bare ``MCPServer``
(bench/bench_startup.py). What keeps it close is what it does *not* do before a
tool is called: the HTTP client's network transport (httpcore, the CA bundle),
the simulator (under ``--simulate``, made at the first request), uvicorn's HTTP
protocol for the loopback media server (started at the first link), PyAV, the
HTTP app (stdio needs none) and the modules only a tool call uses. Each start
here is the real ``gravitex-mcp`` over stdio in a fresh interpreter, as a client
starts it, so an eager import added anywhere shows up by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from gravitex_mcp.cli.main import CALL_PATH
from tests.conftest import TOOLS
from tests.proc import CLI_TIMEOUT, clean_env, http_server

pytestmark = pytest.mark.slow  # starts servers in subprocesses

#: Loaded only when a tool is called (or over HTTP); never by start-up plus tools/list.
NOT_AT_START = (
    *CALL_PATH,  # what a tool call loads at its first use (httpcore2 and PyAV among them)
    "gravitex_mcp.simulator",  # --simulate: made at the first request
    "uvicorn.protocols.http.h11_impl",  # the loopback media server: at the first link
    "h11",
    "gravitex_mcp.server.http_app",  # the HTTP transports only
)

#: ``gravitex-mcp ARGS`` as the console script runs it; at exit, what was loaded
#: goes to stderr (stdout carries only MCP messages).
SCRIPT = """
import json, sys
from gravitex_mcp.cli.main import main
try:
    main(sys.argv[1:])
finally:
    sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def _send(stdin: IO[str], message: dict[str, Any]) -> None:
    stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
    stdin.flush()


def _answer(stdout: IO[str], id_: int) -> dict[str, Any]:
    for line in stdout:
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == id_ and "method" not in message:
            return message
    raise AssertionError("the server closed stdout before answering")


def _start(tmp_path: Path, args: list[str], **env: str) -> tuple[set[str], set[str]]:
    """Start the server, initialize, list the tools, hang up: (tool names, modules)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, *args],
        env=clean_env(
            tmp_path,
            GRAVITEX_OUTPUT_DIR=str(tmp_path / "videos"),
            GRAVITEX_STATE_DIR=str(tmp_path / "state"),
            GRAVITEX_LOG_LEVEL="WARNING",
            **env,
        ),
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        _send(
            proc.stdin,
            {
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": LATEST_HANDSHAKE_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "0"},
                },
            },
        )
        _answer(proc.stdout, 1)
        _send(proc.stdin, {"method": "notifications/initialized"})
        _send(proc.stdin, {"id": 2, "method": "tools/list", "params": {}})
        listed = _answer(proc.stdout, 2)
        _, stderr = proc.communicate(timeout=CLI_TIMEOUT)  # closes stdin: the client hangs up
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    marked = [line for line in stderr.splitlines() if line.startswith("MODULES ")]
    assert marked, stderr
    modules = set(json.loads(marked[-1].removeprefix("MODULES ")))
    return {tool["name"] for tool in listed["result"]["tools"]}, modules


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
    assert {
        "gravitex_mcp.server.app",
        "gravitex_mcp.server.tools",
        "gravitex_mcp.upstream.client",
    } <= modules
    loaded = sorted(name for name in NOT_AT_START if name in modules)
    assert not loaded, f"start-up loaded {loaded}: import them where a tool call needs them"


#: On the server's ``PYTHONPATH``: writes the names of the loaded modules on SIGUSR1
#: (not at exit: uvicorn ends a SIGTERM'd process by the signal, and atexit never runs).
DUMP_MODULES = """
import json, os, signal, sys

def dump(*_):
    with open(os.environ["MODULES_FILE"] + ".part", "w") as f:
        f.write(json.dumps(sorted(sys.modules)))
    os.replace(os.environ["MODULES_FILE"] + ".part", os.environ["MODULES_FILE"])

signal.signal(signal.SIGUSR1, dump)
"""


def test_a_server_over_http_loads_the_call_path_before_it_serves(tmp_path: Path) -> None:
    """Hosted, it pays for the imports before the first call, not on the event loop while
    the first burst of calls waits (and they are frozen with the start-up heap)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DUMP_MODULES)
    dump = tmp_path / "modules.json"
    env = {"PYTHONPATH": str(site), "MODULES_FILE": str(dump)}
    with http_server(tmp_path / "server", "streamable-http", token=None, env=env) as server:
        # It answered /healthz; no tool was called.
        os.kill(server.pid, signal.SIGUSR1)
        deadline = time.monotonic() + CLI_TIMEOUT
        while not dump.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # a real process: its handler runs on its own time
    modules = set(json.loads(dump.read_text()))
    missing = sorted(set(CALL_PATH) - modules)
    assert not missing, f"not loaded before serving: {missing}"
