"""The official MCP Inspector CLI against the server on the simulator, over stdio.

A third-party client, not ours: if the Inspector can list the tools and call them,
any MCP client can. Needs ``npx`` (Node.js); without it the tests are skipped with
a visible reason. With ``npx`` but no way to fetch the package they fail, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOOLS

pytestmark = pytest.mark.slow  # the MCP Inspector (npx) and a server subprocess

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
#: Generous for a first download from the npm registry, but bounded.
NPX_TIMEOUT = 240.0
#: What npm prints when it cannot reach the registry.
_NETWORK_HINTS = (
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "ENETUNREACH",
    "network",
    "fetch failed",
    "registry",
)

Inspect = Callable[..., dict[str, Any]]


@pytest.fixture(scope="module")
def npx() -> str:
    path = shutil.which("npx")
    if path is None:
        pytest.skip(
            "npx not found on PATH: the MCP Inspector check needs Node.js (npx); "
            "install Node.js 18+ to run it"
        )
    return path


@pytest.fixture
def inspect(npx: str, tmp_path: Path) -> Inspect:
    """Run one Inspector CLI call against ``python -m gravitex_mcp --simulate``; its JSON."""
    # npx keeps its real HOME (the npm cache lives there); the Inspector's own files
    # and everything the server writes go to tmp_path.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVITEX_")}
    env.update(
        MCP_CATALOG_PATH=str(tmp_path / "inspector" / "mcp.json"),
        MCP_CLIENT_CONFIG_PATH=str(tmp_path / "inspector" / "client.json"),
        npm_config_update_notifier="false",
        npm_config_fund="false",
        npm_config_audit="false",
    )
    server_env = {
        "GRAVITEX_OUTPUT_DIR": str(tmp_path / "videos"),
        "GRAVITEX_STATE_DIR": str(tmp_path / "state"),
        "GRAVITEX_SIMULATOR_SECONDS": "1",
    }
    server = [sys.executable, "-m", "gravitex_mcp", "--simulate"]

    def run(method: str, *options: str) -> dict[str, Any]:
        cmd = [npx, "-y", INSPECTOR, "--cli", "--format", "json", "--method", method]
        for key, value in server_env.items():
            cmd += ["-e", f"{key}={value}"]
        # "--" ends the Inspector's options: --tool-arg takes every word up to the next one.
        cmd += [*options, "--", *server]
        try:
            done = subprocess.run(
                cmd,
                env=env,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=NPX_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"npx {INSPECTOR} did not finish within {NPX_TIMEOUT:.0f} s; on a first run it "
                f"downloads the package, so the npm registry may be unreachable or slow.\n"
                f"stderr: {exc.stderr!r}"
            )
        if done.returncode != 0:
            stderr = done.stderr
            npm_failed = ("npm error" in stderr or "npm ERR!" in stderr) and any(
                hint in stderr for hint in _NETWORK_HINTS
            )
            cause = (
                f"npx could not fetch {INSPECTOR}: the npm registry looks unreachable "
                "(this check needs the package once; it is not skipped on purpose)"
                if npm_failed
                else f"the Inspector exited with {done.returncode}"
            )
            pytest.fail(f"{cause}\ncommand: {cmd}\nstdout: {done.stdout}\nstderr: {stderr}")
        try:
            out: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            pytest.fail(f"the Inspector did not print one JSON object:\n{done.stdout}")
        assert "error" not in out, out
        return out

    return run


def structured(out: dict[str, Any]) -> dict[str, Any]:
    result = out["result"]
    assert result.get("isError") is False, result
    content: dict[str, Any] = result["structuredContent"]
    return content


def test_inspector_lists_the_five_tools(inspect: Inspect) -> None:
    out = inspect("tools/list")
    tools = {t["name"]: t for t in out["result"]["tools"]}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool["description"], tool["name"]
        assert tool["inputSchema"]["type"] == "object", tool["name"]
        assert "outputSchema" in tool, tool["name"]


def test_inspector_calls_list_models(inspect: Inspect) -> None:
    out = inspect("tools/call", "--tool-name", "list_models")
    models = structured(out)["models"]
    assert {m["family"] for m in models} == {"sora", "veo", "wan", "seedance"}
    assert "sora-2" in {m["id"] for m in models}


def test_inspector_generates_and_the_journal_keeps_the_task(inspect: Inspect) -> None:
    # --tool-arg values are coerced (numbers, booleans); wait_seconds=0 must arrive as 0.
    out = inspect(
        "tools/call",
        "--tool-name",
        "generate_video",
        "--tool-arg",
        "model=sora-2",
        "prompt=A red kite over a beach",
        "wait_seconds=0",
    )
    video = structured(out)
    assert str(video["task_id"]).startswith("video_"), video
    assert video["model"] == "sora-2"
    assert video["status"] in ("submitted", "queued", "in_progress"), video
    assert video["path"] is None  # no wait, no download

    # A second server process on the same state folder: the journal survived.
    tasks = structured(inspect("tools/call", "--tool-name", "list_video_tasks"))["tasks"]
    assert [t["task_id"] for t in tasks] == [video["task_id"]]
