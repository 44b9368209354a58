"""An in-process transport to the simulator that streams like a socket.

``httpx2.ASGITransport`` collects the whole response body before handing the
response over, so a 256 MB download would sit in memory at once, and a body
cut short arrives as a clean, merely shorter response. :class:`SimulatorTransport`
(a subclass, usable wherever an ``ASGITransport`` is expected) instead runs the
app concurrently and passes body chunks through a small bounded queue, and it
checks the body against ``Content-Length`` the way an HTTP/1.1 client does:
a short body, or an app that stops mid-body, raises
:class:`httpx2.RemoteProtocolError` while the body is read.

It needs asyncio (the project's event loop); under another loop it falls back
to the buffering parent class.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, MutableMapping
from typing import TYPE_CHECKING, Any

import httpx2

from .responses import ABORT_EXTENSION

if TYPE_CHECKING:
    from .app import Simulator

_Message = MutableMapping[str, Any]


class _Signal(enum.Enum):
    END = "end"  # the app sent its last body message
    ABORTED = "aborted"  # the app returned without finishing the body


_Item = bytes | _Signal | BaseException


class _AppStream(httpx2.AsyncByteStream):
    def __init__(
        self,
        queue: asyncio.Queue[_Item],
        task: asyncio.Task[None],
        finished: asyncio.Event,
        expected: int | None,
        raise_app_exceptions: bool,
    ) -> None:
        self._queue = queue
        self._task = task
        self._finished = finished
        self._expected = expected
        self._raise_app_exceptions = raise_app_exceptions

    def _short(self, received: int) -> httpx2.RemoteProtocolError:
        expected = "" if self._expected is None else f", expected {self._expected}"
        return httpx2.RemoteProtocolError(
            "peer closed connection without sending complete message body: "
            f"received {received} bytes{expected}"
        )

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        while True:
            item = await self._queue.get()
            if item is _Signal.END:
                if self._expected is not None and received != self._expected:
                    raise self._short(received)
                return
            if item is _Signal.ABORTED:
                raise self._short(received)
            if isinstance(item, BaseException):
                if isinstance(item, httpx2.TransportError) or self._raise_app_exceptions:
                    raise item
                raise self._short(received) from item
            received += len(item)
            if self._expected is not None and received > self._expected:
                raise httpx2.RemoteProtocolError("received more body bytes than Content-Length")
            yield item

    async def aclose(self) -> None:
        self._finished.set()
        if not self._task.done():
            self._task.cancel()
        await asyncio.wait([self._task])


class SimulatorTransport(httpx2.ASGITransport):
    """``ASGITransport`` that streams the response body and enforces ``Content-Length``.

    ``buffer_chunks`` bounds how many body chunks may wait unread, so the app
    cannot run far ahead of a slow reader. It also tells the app it may end a
    response mid-body (:data:`~gravitex_mcp.simulator.responses.ABORT_EXTENSION`), as
    a real server can.
    """

    def __init__(
        self,
        app: Any,
        raise_app_exceptions: bool = True,
        root_path: str = "",
        client: tuple[str, int] = ("127.0.0.1", 123),
        *,
        buffer_chunks: int = 4,
    ) -> None:
        super().__init__(
            app=app, raise_app_exceptions=raise_app_exceptions, root_path=root_path, client=client
        )
        if buffer_chunks < 1:
            raise ValueError("buffer_chunks must be at least 1")
        self.buffer_chunks = buffer_chunks

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: buffer like the parent does
            return await super().handle_async_request(request)
        body = await request.aread()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": self.client,
            "root_path": self.root_path,
            "extensions": {ABORT_EXTENSION: {}},
        }
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = loop.create_future()
        queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=self.buffer_chunks)
        finished = asyncio.Event()
        request_sent = False
        complete = False

        async def receive() -> dict[str, Any]:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await finished.wait()
            return {"type": "http.disconnect"}

        async def send(message: _Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.start":
                if started.done():
                    raise RuntimeError("response already started")
                started.set_result((message["status"], list(message.get("headers", []))))
                return
            if message["type"] != "http.response.body":
                return
            if not started.done() or complete:
                raise RuntimeError(f"unexpected ASGI message {message['type']!r}")
            chunk = bytes(message.get("body", b""))
            if chunk and request.method != "HEAD":
                await queue.put(chunk)
            if not message.get("more_body", False):
                complete = True
                await queue.put(_Signal.END)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception as exc:  # noqa: BLE001 - handed to the reader, not swallowed
                if not started.done():
                    started.set_exception(exc)
                elif not complete:
                    await queue.put(exc)
                return
            if not started.done():  # as a server would: 500 for a response never started
                started.set_result((500, [(b"content-type", b"text/plain; charset=utf-8")]))
                await queue.put(b"Internal Server Error")
                await queue.put(_Signal.END)
            elif not complete:
                await queue.put(_Signal.ABORTED)

        task = asyncio.create_task(run())
        try:
            status, headers = await started
        except Exception:
            await asyncio.wait([task])
            if self.raise_app_exceptions:
                raise
            status, headers = 500, [(b"content-type", b"text/plain; charset=utf-8")]
            queue = asyncio.Queue()
            queue.put_nowait(b"Internal Server Error")
            queue.put_nowait(_Signal.END)
        except BaseException:
            task.cancel()
            await asyncio.wait([task])
            raise
        expected: int | None = None
        if request.method != "HEAD":
            for name, value in headers:
                if name.lower() == b"content-length":
                    expected = int(value)
        stream = _AppStream(queue, task, finished, expected, self.raise_app_exceptions)
        return httpx2.Response(status, headers=headers, stream=stream)


def simulator_transport(sim: Simulator, *, buffer_chunks: int = 4) -> httpx2.ASGITransport:
    """The in-process transport to ``sim`` (a streaming :class:`SimulatorTransport`)."""
    return SimulatorTransport(sim.app, buffer_chunks=buffer_chunks)
