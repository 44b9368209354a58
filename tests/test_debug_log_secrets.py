"""At DEBUG, no logger writes a signed query string or the API key, whatever handler reads it."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gravitex_mcp.client import GravitexClient
from gravitex_mcp.logs import NOISY, configure_logging

SIGNATURE = "Signature=Zm9vYmFyc2VjcmV0c2lnbmF0dXJl"
QUERY = f"Expires=4102444800&{SIGNATURE}"
API_KEY = "gx-live-0123456789abcdef"  # not shaped like sk-...: only the configured value finds it
VIDEO = b"\0\0\0\x18ftypmp42" + b"\0" * 200


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_port  # type: ignore[attr-defined]
        if self.path.startswith("/start"):
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{port}/v.mp4?{QUERY}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(VIDEO)))
        self.end_headers()
        self.wfile.write(VIDEO)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def host() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in NOISY}
    factory = logging.getLogRecordFactory()
    yield
    configure_logging("WARNING")  # forget the secrets
    logging.setLogRecordFactory(factory)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in noisy.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.usefixtures("restore_logging")
async def test_a_redirected_download_at_debug_logs_no_signed_query(
    host: int, caplog: pytest.LogCaptureFixture
) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream, secrets=[API_KEY])
    # A handler of someone else's (pytest's capture, uvicorn's): no filter of ours,
    # and placed before ours, so our handler's filter cannot have cleaned the record first.
    logging.getLogger().handlers.insert(0, caplog.handler)
    # One on the library's own logger runs before any handler of the root's.
    foreign = io.StringIO()
    library_handler = logging.StreamHandler(foreign)
    logging.getLogger("httpcore2").addHandler(library_handler)
    for name in ("httpcore2", "httpx2"):
        logging.getLogger(name).setLevel(logging.DEBUG)  # the most they can say
    client = GravitexClient(api_key=API_KEY, base_url="https://api.gravitex.ai")
    async with client, client.stream_url(f"http://127.0.0.1:{host}/start?{QUERY}") as response:
        assert await response.aread() == VIDEO
    try:
        raise RuntimeError(f"fetching http://127.0.0.1:{host}/v.mp4?{QUERY} with {API_KEY}")
    except RuntimeError:
        logging.getLogger("gravitex_mcp.test").exception("download failed")
    logging.getLogger("gravitex_mcp.test").debug("key %s", API_KEY)
    logging.getLogger("httpcore2").removeHandler(library_handler)
    captured = caplog.text
    written = stream.getvalue()
    assert "Location" in captured  # httpcore2 did log the redirect's headers
    assert "/v.mp4" in captured
    assert "/v.mp4" in foreign.getvalue()
    texts = (
        captured,
        written,
        foreign.getvalue(),
        "\n".join(r.getMessage() for r in caplog.records),
    )
    for text in texts:
        assert SIGNATURE not in text
        assert "Expires=" not in text
        assert API_KEY not in text
    assert "[redacted]" in written
