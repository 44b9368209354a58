"""A stdio server that stops while a media link is being served stops quietly.

The client hangs up (stdin closes) in the middle of a large media response over the
loopback media server: the server exits 0 and its stderr holds no traceback.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest

from gravitex_mcp.server.media import MEDIA_PORT_FILE
from gravitex_mcp.store.media_links import MediaLinks, load_or_create_key
from tests.proc import SERVER_CMD, STOP_TIMEOUT, clean_env, free_port
from tests.server.test_transport_stdio import SESSION_TIMEOUT, RawSession, server_env

pytestmark = pytest.mark.slow  # a server subprocess stopped mid-response

#: Far more than the loopback socket buffers hold, so the response is still being
#: sent when the server is told to stop (sparse: no disk is used).
BIG = 512 * 1024 * 1024


async def test_stopping_mid_media_response_logs_no_traceback(tmp_path: Path) -> None:
    env = clean_env(tmp_path, **server_env(tmp_path))
    out = Path(env["GRAVITEX_OUTPUT_DIR"])
    state = Path(env["GRAVITEX_STATE_DIR"])
    out.mkdir(parents=True)
    state.mkdir(parents=True)
    big = out / "big.mp4"
    with big.open("wb") as file:
        file.truncate(BIG)
    # A remembered port: the server serves links on it from the start, as it does for
    # links an earlier run handed out; this one is minted with the server's own key.
    port = free_port()
    (state / MEDIA_PORT_FILE).write_text(str(port), encoding="ascii")
    links = MediaLinks(key=load_or_create_key(state), output_dir=out)
    links.base_url = f"http://127.0.0.1:{port}"
    url = links.url_for(big)
    assert url is not None

    errlog = tmp_path / "server.stderr"
    with errlog.open("wb") as err:
        process = await anyio.open_process(
            [*SERVER_CMD, "--simulate"], env=env, cwd=tmp_path, stderr=err
        )
    async with process:
        try:
            with anyio.fail_after(SESSION_TIMEOUT):
                session = RawSession(process)
                await session.initialize("media-stop-test")
                async with (
                    httpx2.AsyncClient(timeout=30.0) as client,
                    client.stream("GET", url) as response,
                ):
                    assert response.status_code == 200
                    chunks = response.aiter_raw()
                    assert await anext(chunks)  # the response is under way
                    await session.close_and_drain()
                    with anyio.fail_after(STOP_TIMEOUT):
                        code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
    log = errlog.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log, log
