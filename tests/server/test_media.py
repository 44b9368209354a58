"""Media links: minting and checking capability links, and the route that serves them."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from gravitex_mcp.errors import ConfigurationError
from gravitex_mcp.server.http_app import HttpGuard, media_origins
from gravitex_mcp.server.media import (
    loopback_app,
    serve_loopback,
    with_media,
)
from gravitex_mcp.settings import load_settings
from gravitex_mcp.store.media_links import KEY_FILE, MediaLinks, load_or_create_key
from gravitex_mcp.store.ondisk import FileIdentity

BODY = bytes(range(256)) * 64  # 16 KiB, every byte value, easy to slice
PORT = 8765


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(BODY)
    return folder


@pytest.fixture
def links(tmp_path: Path, out: Path) -> MediaLinks:
    return MediaLinks(key=load_or_create_key(tmp_path / "state"), output_dir=out)


@pytest.fixture
async def media(links: MediaLinks) -> AsyncIterator[httpx2.AsyncClient]:
    """The loopback media app, in memory, as a browser on 127.0.0.1 would reach it."""
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=loopback_app(links, PORT)),
        base_url=f"http://127.0.0.1:{PORT}",
    ) as client:
        yield client


def route(links: MediaLinks, path: Path) -> str:
    minted = links.path_for(path)
    assert minted is not None
    return minted


# --- the key ------------------------------------------------------------------------------


def test_key_is_created_private_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = load_or_create_key(state)
    assert len(key) == 32
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600
    assert load_or_create_key(state) == key, "links must survive a restart"
    assert [p.name for p in state.iterdir()] == [KEY_FILE], "no temporary file is left"


def test_links_survive_a_restart_and_die_with_the_key(tmp_path: Path, out: Path) -> None:
    state = tmp_path / "state"
    first = MediaLinks(key=load_or_create_key(state), output_dir=out)
    second = MediaLinks(key=load_or_create_key(state), output_dir=out)
    assert first.path_for(out / "clip.mp4") == second.path_for(out / "clip.mp4")
    (state / KEY_FILE).unlink()
    third = MediaLinks(key=load_or_create_key(state), output_dir=out)
    assert third.path_for(out / "clip.mp4") != first.path_for(out / "clip.mp4")


# --- minting ----------------------------------------------------------------------------


def test_link_shape_and_base(links: MediaLinks, out: Path) -> None:
    minted = route(links, out / "clip.mp4")
    prefix, token, name = minted.split("/")[1:]
    assert prefix == "media"
    assert name == "clip.mp4"
    assert len(token) == 24
    assert links.url_for(out / "clip.mp4") is None, "no base and no request: no link"
    assert links.url_for(out / "clip.mp4", request_host="h:9") == f"http://h:9{minted}"
    links.base_url = "http://127.0.0.1:4000"
    assert links.url_for(out / "clip.mp4", request_host="h:9") == f"http://127.0.0.1:4000{minted}"


def test_no_link_for_files_outside_the_folder_or_not_files(
    links: MediaLinks, out: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("no")
    assert links.path_for(outside) is None
    assert links.path_for(out) is None
    assert links.path_for(out / "missing.mp4") is None


def test_names_are_quoted(links: MediaLinks, out: Path) -> None:
    odd = out / "a b#c?.mp4"
    odd.write_bytes(b"x")
    minted = route(links, odd)
    assert minted.endswith("/a%20b%23c%3F.mp4")


# --- serving ------------------------------------------------------------------------------


async def test_link_serves_the_right_bytes(
    media: httpx2.AsyncClient, links: MediaLinks, out: Path
) -> None:
    r = await media.get(route(links, out / "clip.mp4"))
    assert r.status_code == 200
    assert r.content == BODY
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["accept-ranges"] == "bytes"
    assert "private" in r.headers["cache-control"]
    head = await media.head(route(links, out / "clip.mp4"))
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(BODY))


async def test_range_request_is_206_with_those_bytes(
    media: httpx2.AsyncClient, links: MediaLinks, out: Path
) -> None:
    r = await media.get(route(links, out / "clip.mp4"), headers={"Range": "bytes=1000-1099"})
    assert r.status_code == 206
    assert r.content == BODY[1000:1100]
    assert r.headers["content-range"] == f"bytes 1000-1099/{len(BODY)}"
    tail = await media.get(route(links, out / "clip.mp4"), headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.content == BODY[-10:]


async def test_forged_and_altered_links_are_404(
    media: httpx2.AsyncClient, links: MediaLinks, out: Path
) -> None:
    minted = route(links, out / "clip.mp4")
    token = minted.split("/")[2]
    other = out / "other.mp4"
    other.write_bytes(b"other")
    flipped = ("A" if token[0] != "A" else "B") + token[1:]
    for path in (
        f"/media/{flipped}/clip.mp4",  # a guessed token
        f"/media/{token}/other.mp4",  # a real token on another file
        "/media/clip.mp4",
        f"/media/{token}/",
        "/media/",
    ):
        r = await media.get(path)
        assert r.status_code == 404, path
        assert BODY[:64] not in r.content
    foreign = MediaLinks(key=os.urandom(32), output_dir=out)
    assert (await media.get(route(foreign, out / "clip.mp4"))).status_code == 404


async def test_paths_outside_the_folder_are_404(
    media: httpx2.AsyncClient, links: MediaLinks, out: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "state" / KEY_FILE
    token = route(links, out / "clip.mp4").split("/")[2]
    # Even with the right token for the name asked, nothing outside the folder is served.
    (out / "escape.mp4").symlink_to(secret)
    for name in (
        "../state/" + KEY_FILE,
        "%2e%2e/state/" + KEY_FILE,
        "..%2fstate%2f" + KEY_FILE,
        str(secret),
        "/" + str(secret),
        "escape.mp4",
    ):
        r = await media.get(f"/media/{token}/{name}")
        assert r.status_code == 404, name
    assert links.resolve(token, "../state/" + KEY_FILE) is None
    assert links.path_for(out / "escape.mp4") is None, "a symlink leading out gets no link"
    # A token the key does accept for that very name (leaked, or minted before a swap)
    # still serves nothing outside: here only the containment check stands in the way.
    identity = FileIdentity.of(secret.stat())
    for name in ("../state/" + KEY_FILE, "escape.mp4"):
        genuine = links._token(name, identity)
        assert links.resolve(genuine, name) is None, name
    genuine = links._token("escape.mp4", identity)
    r = await media.get(f"/media/{genuine}/escape.mp4")
    assert r.status_code == 404
    assert secret.read_bytes() not in r.content


async def test_gone_or_replaced_file_is_404(
    media: httpx2.AsyncClient, links: MediaLinks, out: Path
) -> None:
    minted = route(links, out / "clip.mp4")
    (out / "clip.mp4").write_bytes(b"another video under the same name")
    assert (await media.get(minted)).status_code == 404, "the link was for the old file"
    fresh = route(links, out / "clip.mp4")
    assert (await media.get(fresh)).content == b"another video under the same name"
    (out / "clip.mp4").unlink()
    assert (await media.get(fresh)).status_code == 404


async def test_only_get_and_head(media: httpx2.AsyncClient, links: MediaLinks, out: Path) -> None:
    r = await media.post(route(links, out / "clip.mp4"), content=b"x")
    assert r.status_code == 405


async def test_loopback_app_checks_host_and_serves_only_media(links: MediaLinks, out: Path) -> None:
    app = loopback_app(links, PORT)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://evil.example"
    ) as client:
        r = await client.get(route(links, out / "clip.mp4"))
        assert r.status_code == 421
        r = await client.get(
            "/healthz", headers={"Host": f"127.0.0.1:{PORT}"}
        )  # nothing but /media/ here
        assert r.status_code == 404


async def test_loopback_server_really_serves_and_stops(links: MediaLinks, out: Path) -> None:
    async with serve_loopback(links) as base:
        assert base.startswith("http://127.0.0.1:")
        links.base_url = base
        await links.ready()
        await links.ready()  # started once; the second call finds it running
        url = links.url_for(out / "clip.mp4")
        assert url is not None
        async with httpx2.AsyncClient(timeout=10) as client:
            r = await client.get(url, headers={"Range": "bytes=0-9"})
            assert r.status_code == 206
            assert r.content == BODY[:10]
    async with httpx2.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx2.TransportError):
            await client.get(url)


async def test_loopback_server_starts_at_the_first_link_and_serves_who_came_before(
    links: MediaLinks, out: Path
) -> None:
    async with serve_loopback(links) as base:
        port = int(base.rsplit(":", 1)[1])
        # The port listens from the start: a connection made before any link is
        # handed out waits in the backlog, and is answered once the server starts.
        async with await anyio.connect_tcp("127.0.0.1", port) as early:
            request = (
                f"GET {route(links, out / 'clip.mp4')} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nRange: bytes=0-3\r\nConnection: close\r\n\r\n"
            )
            await early.send(request.encode())
            await links.ready()
            answer = b""
            with anyio.fail_after(10):
                while b"\r\n\r\n" not in answer or not answer.endswith(BODY[:4]):
                    answer += await early.receive()
        assert answer.startswith(b"HTTP/1.1 206")


# --- on the HTTP transports ----------------------------------------------------------------


async def test_media_on_the_http_port_skips_the_token_but_not_the_host_check(
    links: MediaLinks, out: Path
) -> None:
    async def mcp_app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the MCP app must not see media requests")

    app = HttpGuard(
        with_media(mcp_app, links),
        allowed_hosts=["127.0.0.1:8000"],
        allowed_origins=["http://127.0.0.1:8000"],
        token="secret-token",
    )
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        minted = route(links, out / "clip.mp4")
        ok = await client.get(minted)
        assert ok.status_code == 200
        assert ok.content == BODY
        assert (await client.get("/media/forged/clip.mp4")).status_code == 404
        assert (await client.get("/mcp")).status_code == 401, "the rest still needs the token"
        wrong_host = await client.get(minted, headers={"Host": "evil.example"})
        assert wrong_host.status_code == 421


def test_media_origins_for_the_player_csp() -> None:
    origins = media_origins("127.0.0.1", 8000)
    assert "http://127.0.0.1:8000" in origins
    assert "http://localhost:8000" in origins
    assert media_origins("127.0.0.1", 8000, public_url="https://v.example.com/base") == [
        "https://v.example.com"
    ]


# --- settings -------------------------------------------------------------------------------


def test_settings_public_url_and_media_switch() -> None:
    env = {"GRAVITEX_SIMULATE": "1"}
    assert load_settings(env).media is True
    assert load_settings(env).public_url is None
    assert load_settings({**env, "GRAVITEX_MEDIA": "off"}).media is False
    got = load_settings({**env, "GRAVITEX_PUBLIC_URL": "https://v.example.com/g/"})
    assert got.public_url == "https://v.example.com/g"
    with pytest.raises(ConfigurationError, match="GRAVITEX_MEDIA must be on or off"):
        load_settings({**env, "GRAVITEX_MEDIA": "maybe"})
    for bad in ("ftp://x", "v.example.com", "https://v.example.com/?a=1"):
        with pytest.raises(ConfigurationError, match="GRAVITEX_PUBLIC_URL"):
            load_settings({**env, "GRAVITEX_PUBLIC_URL": bad})


def test_the_key_is_made_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # FAT, exFAT, some shares

    monkeypatch.setattr(os, "link", no_links)
    key = load_or_create_key(tmp_path)
    assert len(key) == 32
    assert load_or_create_key(tmp_path) == key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media-links.key"]


@pytest.mark.parametrize("unit", ["items=0-5", "none", "pages=1-2, 4", "Bytes2=0-5"])
async def test_a_range_in_an_unknown_unit_gets_the_whole_file(
    media: httpx2.AsyncClient, links: MediaLinks, out: Path, unit: str
) -> None:
    # RFC 9110 14.2: a Range whose unit the server does not understand is ignored.
    r = await media.get(route(links, out / "clip.mp4"), headers={"Range": unit})
    assert r.status_code == 200, r.text
    assert r.content == BODY
    assert "content-range" not in r.headers
    upper = await media.get(route(links, out / "clip.mp4"), headers={"Range": "BYTES=0-3"})
    assert upper.status_code == 206
    assert upper.content == BODY[:4]
