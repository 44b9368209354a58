"""The player resource, the tools bound to it, and media_url on saved videos over each transport."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import ResourceLink, TextResourceContents

from gravitex_mcp.domain import TaskStatus
from gravitex_mcp.server.player import PLAYER_TOOLS, PLAYER_URI

from .proc import SERVER_CMD, clean_env, http_server
from .server_harness import Harness, connected, make_harness, structured
from .test_transport_http import official_client

APP_MIME = "text/html;profile=mcp-app"
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "source", ["player/src/player.js", "gravitex_mcp/server/player/player.html"]
)
def test_the_player_reads_the_status_vocabulary_of_domain(source: str) -> None:
    # The player is JavaScript: it cannot import domain.TaskStatus, so its source and
    # the built file it ships are checked against it (a rebuild keeps the literal).
    text = (REPO / source).read_text(encoding="utf-8")
    [running] = re.findall(r'new Set\((\["submitted",[^\]]*\])\)', text.replace(", ", ","))
    assert set(json.loads(running)) == {s.value for s in TaskStatus if not s.is_terminal}
    for status in (s for s in TaskStatus if s.is_terminal):
        assert f'status==="{status}"' in text.replace(" ", ""), status


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return make_harness(tmp_path)


async def _saved(client: Client, h: Harness | None = None) -> dict[str, Any]:
    submitted = structured(
        await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "a cat", "wait_seconds": 0}
        )
    )
    if h is not None:
        h.sim.advance(60)
    return structured(
        await client.call_tool(
            "check_video_task",
            {"task_id": submitted["task_id"], "wait_seconds": 30, "download": True},
        )
    )


async def _fetch(url: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.get(url, headers=headers or {})


async def test_video_tools_name_the_player_in_meta_ui(h: Harness) -> None:
    async with connected(h) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name, tool in tools.items():
        ui = (tool.meta or {}).get("ui")
        if name in PLAYER_TOOLS:
            assert ui == {"resourceUri": PLAYER_URI}, name
        else:
            assert ui is None, name
    assert set(PLAYER_TOOLS) == {"generate_video", "check_video_task", "download_video"}


async def test_player_resource_is_an_mcp_app_admitting_the_media_origin(h: Harness) -> None:
    async with connected(h) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        contents = (await client.read_resource(PLAYER_URI)).contents
        saved = await _saved(client, h)
    assert listed[PLAYER_URI].mime_type == APP_MIME
    [page] = contents
    assert isinstance(page, TextResourceContents)
    assert page.mime_type == APP_MIME
    assert page.text.lstrip().lower().startswith("<!doctype html>")
    assert "<script" in page.text
    assert "ui/initialize" in page.text, "the ext-apps App is inlined"
    domains = (page.meta or {})["ui"]["csp"]["resourceDomains"]
    origin = saved["media_url"].split("/media/")[0]
    assert domains == [origin]


async def test_server_advertises_the_apps_extension(h: Harness) -> None:
    async with connected(h) as client:
        capabilities = client.server_capabilities
    assert capabilities is not None
    assert "io.modelcontextprotocol/ui" in (capabilities.extensions or {})


async def test_saved_video_has_a_working_loopback_media_url(h: Harness) -> None:
    async with connected(h) as client:
        saved = await _saved(client, h)
        url = saved["media_url"]
        assert url.startswith("http://127.0.0.1:")
        assert "video" not in saved, "the saved video appears once, at the top level"
        # A real GET on the loopback media server while the server runs.
        r = await _fetch(url)
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == saved["sha256"]
        again = structured(await client.call_tool("download_video", {"task_id": saved["task_id"]}))
        assert again["reused"] is True
        assert again["media_url"] == url, "the same file gets the same link"
        forged = url.rsplit("/", 2)[0] + "/AAAAAAAAAAAAAAAAAAAAAAAA/" + url.rsplit("/", 1)[1]
        assert (await _fetch(forged)).status_code == 404
        Path(saved["path"]).unlink()
        assert (await _fetch(url)).status_code == 404, "a deleted file's link is dead"
    with pytest.raises(httpx2.TransportError):
        await _fetch(url)  # the media server stopped with the server


async def test_media_off_means_no_links_and_no_media_origin(tmp_path: Path) -> None:
    h = make_harness(tmp_path, media=False)
    async with connected(h) as client:
        saved = await _saved(client, h)
        [page] = (await client.read_resource(PLAYER_URI)).contents
    assert saved["media_url"] is None
    assert saved["path"]
    assert "csp" not in (page.meta or {}).get("ui", {})


async def test_stdio_subprocess_media_url_is_served_on_loopback(tmp_path: Path) -> None:
    env = clean_env(
        tmp_path,
        GRAVITEX_OUTPUT_DIR=str(tmp_path / "videos"),
        GRAVITEX_STATE_DIR=str(tmp_path / "state"),
        GRAVITEX_SIMULATOR_SECONDS="1",
    )
    params = StdioServerParameters(
        command=SERVER_CMD[0], args=[*SERVER_CMD[1:], "--simulate"], env=env, cwd=str(tmp_path)
    )
    with anyio.fail_after(60), (tmp_path / "server.stderr").open("w") as err:
        async with Client(stdio_client(params, errlog=err), read_timeout_seconds=30) as client:
            saved = await _saved(client)
            r = await _fetch(saved["media_url"], {"Range": "bytes=0-7"})
    assert saved["media_url"].startswith("http://127.0.0.1:")
    assert r.status_code == 206
    assert r.content[4:8] == b"ftyp"


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_http_media_url_is_on_the_servers_own_port(transport: str, tmp_path: Path) -> None:
    token = "media-test-token-1"
    with anyio.fail_after(60), http_server(tmp_path, transport, token=token) as server:
        async with official_client(server) as client:
            submitted = structured(
                await client.call_tool(
                    "generate_video", {"model": "veo-3.1-generate-preview", "prompt": "a cat"}
                )
            )
            result = await client.call_tool("download_video", {"task_id": submitted["task_id"]})
        saved = structured(result)
        url = saved["media_url"]
        assert url.startswith(f"{server.base_url}/media/")
        links = [b for b in result.content if isinstance(b, ResourceLink)]
        assert [str(link.uri) for link in links] == [url], "over HTTP the link is the media URL"
        assert Path(saved["path"]).is_file(), "the file path stays in path"
        # No bearer token: a <video> cannot send one; the link is the credential.
        r = await _fetch(url)
        assert r.status_code == 200
        assert hashlib.sha256(r.content).hexdigest() == saved["sha256"]
        assert (await _fetch(server.mcp_url)).status_code == 401
