"""The player in a real browser: headless Chromium, a minimal MCP Apps host, a real server.

The host page (``tests/assets/player_host.html``, built from ``player/host`` with
ext-apps' ``AppBridge``) renders ``ui://gravitex/player.html`` in a sandboxed
iframe under the CSP the resource asks for, and sends it a real tool result from
the server, which runs as a subprocess over stdio or streamable HTTP on the
simulator. Tool calls the player makes go through the host to that same server.
The ``<video>`` must load (``readyState >= 2``) and play (``currentTime``
advances) for a Sora task (given to the player still running, so it polls
``check_video_task`` itself), a URL-family task (given finished and saved), and
that task again with a dead link (the player gets a fresh one from
``download_video``).

Skips, loudly, where Chromium or Playwright is missing; ``.ci/run`` installs
Chromium so CI runs it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextResourceContents

from gravitex_mcp.server.player import PLAYER_URI
from tests.proc import REPO, SERVER_CMD, clean_env, http_server
from tests.server.test_transport_http import official_client

pytestmark = pytest.mark.slow  # a browser (chromium) and server subprocesses

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOST_PAGE = REPO / "tests" / "assets" / "player_host.html"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
#: Bound on one whole browser session (server, browser, two players).
SESSION_TIMEOUT = 90.0
#: How long the video gets to load and play in the page (milliseconds).
PLAY_TIMEOUT_MS = 30_000

VEO = "veo-3.1-fast-generate-preview"
FINISHED = {"prompt": "Neon reflections at dusk", "wait_seconds": 30, "download": True}
JOBS: list[tuple[str, dict[str, Any], bool]] = [
    # Given to the player still running: the player waits for it through the host.
    ("sora-2", {"prompt": "A paper boat on a rainy street", "wait_seconds": 0}, False),
    # Given finished and saved: the player plays its media_url at once.
    (VEO, FINISHED, False),
    # Given a stale link: the player asks download_video for a fresh one.
    (VEO, FINISHED, True),
]


def _require_browser() -> str:
    if CHROMIUM is None:
        pytest.skip(
            "SKIPPED LOUDLY: no chromium binary on PATH; install it with "
            "`apt-get install -y chromium` (.ci/run does) to run the browser test"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("SKIPPED LOUDLY: the playwright package is missing (pip install -e .[dev])")
    return CHROMIUM


def _wire(result: CallToolResult) -> dict[str, Any]:
    """A tool result as it travels in JSON-RPC (camelCase, no nulls)."""
    wire: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return wire


@asynccontextmanager
async def stdio_session(root: Path) -> AsyncIterator[Client]:
    env = clean_env(
        root,
        GRAVITEX_OUTPUT_DIR=str(root / "videos"),
        GRAVITEX_STATE_DIR=str(root / "state"),
        GRAVITEX_SIMULATOR_SECONDS="1",
    )
    params = StdioServerParameters(
        command=SERVER_CMD[0], args=[*SERVER_CMD[1:], "--simulate"], env=env, cwd=str(root)
    )
    with (root / "server.stderr").open("w") as err:
        async with Client(stdio_client(params, errlog=err), read_timeout_seconds=60) as client:
            yield client


@asynccontextmanager
async def http_session(root: Path) -> AsyncIterator[Client]:
    with http_server(root, "streamable-http", token=None) as server:
        async with official_client(server) as client:
            yield client


def _collect(sink: list[str]) -> Callable[[ConsoleMessage], None]:
    def on_message(message: ConsoleMessage) -> None:
        sink.append(f"{message.type}: {message.text}")

    return on_message


async def _player_resource(client: Client) -> tuple[str, dict[str, Any]]:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("generate_video", "check_video_task", "download_video"):
        assert (tools[name].meta or {}).get("ui", {}).get("resourceUri") == PLAYER_URI, name
    contents = (await client.read_resource(PLAYER_URI)).contents
    assert len(contents) == 1
    page = contents[0]
    assert isinstance(page, TextResourceContents)
    assert page.mime_type == "text/html;profile=mcp-app"
    csp: dict[str, Any] = ((page.meta or {}).get("ui") or {}).get("csp") or {}
    assert csp.get("resourceDomains"), "the player's CSP must admit the media origin"
    return page.text, csp


async def _play_in_browser(client: Client, root: Path, *, screenshot: Path | None) -> None:
    from playwright.async_api import async_playwright

    html, csp = await _player_resource(client)
    host_page = HOST_PAGE.read_text(encoding="utf-8")
    calls: list[str] = []

    async def host_call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        calls.append(name)
        return _wire(await client.call_tool(name, arguments))

    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(root / "chromium-profile"),
            executable_path=_require_browser(),
            headless=True,
            args=FLAGS,
            viewport={"width": 820, "height": 620},
        )
        try:
            await context.expose_function("hostCallTool", host_call_tool)
            for model, arguments, stale in JOBS:
                calls.clear()
                tool_input = {"model": model, **arguments}
                result = await client.call_tool("generate_video", tool_input)
                structured = result.structured_content or {}
                assert not result.is_error, result.content
                wire = _wire(result)
                if stale:
                    # As after a restart on another port or a moved file: the link is dead.
                    dead = structured["media_url"].replace("/media/", "/media/x", 1)
                    wire["structuredContent"]["media_url"] = dead
                page = await context.new_page()
                console: list[str] = []
                page.on("console", _collect(console))
                await page.set_content(host_page)
                await page.evaluate(
                    "(p) => window.mountPlayer(p)",
                    {
                        "html": html,
                        "csp": csp,
                        "toolName": "generate_video",
                        "toolInput": tool_input,
                        "toolResult": wire,
                    },
                )
                frame = next(f for f in page.frames if f is not page.main_frame)
                try:
                    await frame.wait_for_function(
                        "() => { const v = document.querySelector('video');"
                        " return v && v.readyState >= 2 && v.currentTime > 0.2; }",
                        timeout=PLAY_TIMEOUT_MS,
                    )
                    first = await frame.evaluate("document.querySelector('video').currentTime")
                    await frame.wait_for_function(
                        f"() => document.querySelector('video').currentTime > {first} + 0.2",
                        timeout=PLAY_TIMEOUT_MS,
                    )
                except Exception as exc:
                    state = await frame.evaluate(
                        "(() => { const v = document.querySelector('video');"
                        " return {src: v.src, ready: v.readyState, error: v.error && v.error.code,"
                        " status: document.getElementById('status').textContent,"
                        " waiting: document.getElementById('waiting-text').textContent}; })()"
                    )
                    log = await page.evaluate("window.hostLog")
                    raise AssertionError(
                        f"{model}: the video did not play: {json.dumps(state)}\n"
                        f"host: {log}\nconsole: {console}\ntool calls: {calls}"
                    ) from exc
                src = await frame.evaluate("document.querySelector('video').src")
                assert src.startswith("http://127.0.0.1:"), src
                if stale:
                    assert calls == ["download_video"], calls
                    assert src == structured["media_url"], "the fresh link replaced the dead one"
                elif structured.get("status") == "succeeded":
                    assert src == structured["media_url"]
                    assert calls == [], calls
                else:
                    # The player followed the running task through the host itself.
                    assert "check_video_task" in calls, calls
                if screenshot is not None and model == VEO and not stale:
                    await page.screenshot(path=str(screenshot))
                await page.close()
        finally:
            await context.close()


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_player_plays_sora_and_url_family_videos(transport: str, tmp_path: Path) -> None:
    _require_browser()
    session = stdio_session if transport == "stdio" else http_session
    with anyio.fail_after(SESSION_TIMEOUT):
        async with session(tmp_path) as client:
            await _play_in_browser(client, tmp_path, screenshot=tmp_path / "player.png")
    # docs/player.png is this screenshot, copied by hand from a run.
    assert (tmp_path / "player.png").stat().st_size > 10_000
