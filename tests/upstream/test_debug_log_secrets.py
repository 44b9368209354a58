"""At DEBUG, no logger writes a signed query string or the API key, whatever handler reads it."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
import pytest

from gravitex_mcp.logs import configure_logging
from gravitex_mcp.upstream.client import GravitexClient

SIGNATURE = "Signature=Zm9vYmFyc2VjcmV0c2lnbmF0dXJl"
QUERY = f"Expires=4102444800&{SIGNATURE}"
#: An S3-style presigned query, as a storage redirect carries it.
AMZ_SIGNATURE = "X-Amz-Signature=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
AMZ_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20261207%2Fus-east-1"
    f"&X-Amz-Date=20261207T000000Z&X-Amz-Expires=3600&{AMZ_SIGNATURE}"
)
API_KEY = "gx-live-0123456789abcdef"  # not shaped like sk-...: only the configured value finds it
VIDEO = b"\0\0\0\x18ftypmp42" + b"\0" * 200


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        port = self.server.server_port  # type: ignore[attr-defined]
        if self.path.startswith("/relative"):  # a relative Location: no scheme to find
            self.send_response(302)
            self.send_header("Location", f"/v.mp4?{AMZ_QUERY}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
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


def _assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in (SIGNATURE, AMZ_SIGNATURE, "X-Amz-", "Expires=", "AKIAEXAMPLE", API_KEY):
            assert secret not in text, (secret, text)


@pytest.mark.usefixtures("restore_logging")
async def test_a_relative_redirect_at_debug_logs_no_signed_query(
    host: int, caplog: pytest.LogCaptureFixture
) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream, secrets=[API_KEY])
    logging.getLogger().handlers.insert(0, caplog.handler)
    for name in ("httpcore2", "httpx2"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    client = GravitexClient(api_key=API_KEY, base_url="https://api.gravitex.ai")
    async with client, client.stream_url(f"http://127.0.0.1:{host}/relative") as response:
        assert await response.aread() == VIDEO
    assert "(b'Location', b'/v.mp4" in caplog.text  # httpcore2's header-tuple form
    _assert_clean(caplog.text, stream.getvalue())


#: The redirect's headers as httpcore2 hands them on: a list of (name, value) bytes.
def _redirect_headers(location: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"Location", location.encode()),
        (b"Authorization", f"Bearer {API_KEY}".encode()),
        (b"Content-Length", b"0"),
    ]


@pytest.mark.usefixtures("restore_logging")
async def test_every_form_a_record_takes_is_scrubbed(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real httpx2 client follows signed redirects (absolute and relative) through a
    MockTransport that traces each response at DEBUG in every form a library's record
    takes: a preformatted line, a tuple or a dict of arguments, bytes, nested lists,
    arguments that do not fit the message, and an exception's text."""
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream, secrets=[API_KEY])
    logging.getLogger().handlers.insert(0, caplog.handler)
    trace = logging.getLogger("httpcore2.http11")
    trace.setLevel(logging.DEBUG)
    logging.getLogger("httpx2").setLevel(logging.DEBUG)
    absolute = f"https://bucket.s3.example.test/v.mp4?{AMZ_QUERY}"
    relative = f"/v.mp4?{AMZ_QUERY}"

    def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/v.mp4":
            return httpx2.Response(200, content=VIDEO)
        location = absolute if request.url.path == "/absolute" else relative
        headers = _redirect_headers(location)
        status = (b"HTTP/1.1", 302, b"Found", headers)
        trace.debug(f"receive_response_headers.complete return_value={status!r}")
        trace.debug("receive_response_headers.complete return_value=%r", status)
        trace.debug("%(event)s %(headers)s", {"event": "headers", "headers": headers})
        trace.debug(b"Location: " + location.encode())
        trace.debug("%s", [[("Location", [location.encode()])], {"h": (headers,)}])
        trace.debug("headers", headers)  # one argument too many: logging's own error path
        try:
            raise httpx2.RemoteProtocolError(f"redirect to {location} with {API_KEY}")
        except httpx2.RemoteProtocolError:
            trace.exception("redirect failed")
        return httpx2.Response(302, headers=headers)

    async with httpx2.AsyncClient(
        transport=httpx2.MockTransport(handler),
        base_url="https://api.example.test",
        follow_redirects=True,
    ) as client:
        for path in ("/absolute", "/relative"):
            response = await client.get(path)
            assert response.content == VIDEO
            assert response.history[0].headers["location"] in (absolute, relative)
    records = [r for r in caplog.records if r.name == "httpcore2.http11"]
    assert len(records) == 2 * 7
    assert "/v.mp4" in caplog.text
    _assert_clean(
        caplog.text,
        stream.getvalue(),
        capsys.readouterr().err,
        *(repr(r.args) for r in caplog.records),
        *(repr(r.msg) for r in caplog.records),
        *(r.exc_text or "" for r in caplog.records),
    )
