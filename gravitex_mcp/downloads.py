"""Save a finished task's video under the output directory.

* **Sora** (``Family.SORA``): the download endpoint's JSON body is streamed through
  :class:`~gravitex_mcp.b64stream.SoraDownloadDecoder` straight into a temp file; the
  decoded length must equal the body's ``size``, the base64 must be strict, the file must
  be a whole mp4 (``ftyp`` first, top-level boxes tiling the file).
* **Other families**: the task's signed ``url`` is streamed to a temp file; the first
  bytes must be an ``ftyp`` box (a CDN error page served with status 200 is refused after
  its first bytes), the byte count must match ``Content-Length`` when one is given, and
  the boxes must tile the file. An expired URL (:class:`~gravitex_mcp.errors.URLExpiredError`)
  makes one re-query of the task for a fresh URL.

The temp file is opened (in a worker thread) while the request is on its way; the
announced size lets its hasher choose its span size up front.

A stream cut short (the connection broke, the body stopped early) is retried, at most
``attempts`` times in all, each attempt into a fresh temp file; it is never kept. Files
are published by :mod:`gravitex_mcp.storage` (fsync, no overwrite, never outside the
output directory). Signed URLs appear in logs and errors only without their query string.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import anyio
import anyio.lowlevel
import httpx2

from .b64stream import SoraDownloadDecoder
from .client import BodyReader
from .domain import Family, TaskStatus
from .errors import (
    APIConnectionError,
    DownloadError,
    TruncatedDownloadError,
    URLExpiredError,
    VideoIntegrityError,
    first_failure,
)
from .mp4 import Mp4StreamCheck
from .redact import redact_url
from .storage import OutputDir, StoredFile, VideoFile

__all__ = ["DEFAULT_ATTEMPTS", "MP4_MIME_TYPE", "DownloadSource", "SavedVideo", "download_video"]

logger = logging.getLogger(__name__)

MP4_MIME_TYPE: Final = "video/mp4"
#: Attempts per download when the stream is cut short (the first try included).
DEFAULT_ATTEMPTS: Final = 3

_DIGITS: Final = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class SavedVideo:
    """A video saved under the output directory."""

    path: Path
    uri: str
    size_bytes: int
    sha256: str
    mime_type: str = MP4_MIME_TYPE

    @classmethod
    def from_stored(cls, stored: StoredFile) -> SavedVideo:
        return cls(
            path=stored.path,
            uri=stored.path.as_uri(),
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
        )


class TaskView(Protocol):
    """What a re-query must tell: the status and the (fresh) video URL."""

    @property
    def status(self) -> TaskStatus: ...

    @property
    def url(self) -> str | None: ...


class DownloadSource(Protocol):
    """The part of :class:`~gravitex_mcp.client.GravitexClient` downloads use."""

    def stream_sora_download(self, task_id: str) -> AbstractAsyncContextManager[httpx2.Response]:
        """The download endpoint's response, status checked, body unread."""
        ...

    def stream_url(self, url: str) -> AbstractAsyncContextManager[httpx2.Response]:
        """A signed URL's response, status checked (URLExpiredError), body unread."""
        ...

    def read_body(self, response: httpx2.Response) -> BodyReader:
        """The body in chunks, under one inactivity time-out."""
        ...

    async def query(self, task_id: str) -> TaskView:
        """The task's current snapshot."""
        ...


class _StreamCutError(Exception):
    """The connection failed while the body was being read (worth another attempt)."""

    def __init__(self, error: APIConnectionError) -> None:
        super().__init__(error.message)
        self.error = error


async def _pump(
    source: DownloadSource,
    response: httpx2.Response,
    file: VideoFile,
    feed: Callable[[bytes], None],
) -> None:
    """Feed every body chunk to ``feed`` (which buffers into ``file``).

    A broken connection (or the inactivity time-out) becomes :class:`_StreamCutError`;
    waiting for the file (a slow disk, or its hasher far behind) does not count as
    inactivity.
    """
    try:
        async with source.read_body(response) as body:
            async for chunk in body:
                feed(chunk)
                if file.backlogged:
                    with body.paused():
                        await file.flush_if_full()
    except APIConnectionError as exc:  # includes the inactivity time-out
        raise _StreamCutError(exc) from exc


@asynccontextmanager
async def _opened(
    file: VideoFile, request: AbstractAsyncContextManager[httpx2.Response]
) -> AsyncIterator[httpx2.Response]:
    """Open ``file`` (its temp file and hasher, in a worker thread) while ``request`` is
    on its way, and leave both at the end: the two waits overlap instead of adding up.

    If either fails, the other is stopped and undone, and the failure is raised as
    itself (not inside an exception group).
    """
    async with AsyncExitStack() as stack:

        async def open_file() -> None:
            await stack.enter_async_context(file)

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(open_file)
                await anyio.lowlevel.checkpoint()  # hand the file to a worker thread first
                response = await stack.enter_async_context(request)
        except BaseExceptionGroup as failed:
            # The first failure, not a cancellation it caused on the other side.
            cancelled = anyio.get_cancelled_exc_class()
            raise first_failure(failed, skip=(cancelled,))  # noqa: B904  (keeps its own cause)
        yield response


# --- Sora: the download endpoint ------------------------------------------------------


async def _sora_attempt(
    source: DownloadSource, out: OutputDir, *, task_id: str, filename: str | None
) -> StoredFile:
    file = out.video(filename, default_stem=task_id)
    async with _opened(file, source.stream_sora_download(task_id)) as response:
        body_bytes = _content_length(response)
        if body_bytes is not None:
            # The body holds the video twice in base64 (``base64`` and ``data_url``):
            # about 3/8 of it. Only sizes the hasher's buffer.
            file.expect(body_bytes * 3 // 8)
        check = Mp4StreamCheck()

        def sink(data: bytes) -> None:
            check.feed(data)
            file.buffer(data)

        decoder = SoraDownloadDecoder(sink)
        await _pump(source, response, file, decoder.feed)
        body = decoder.close()  # TruncatedDownloadError when the body stopped early
        body.verify(task_id=task_id)
        try:
            check.finish()
        except TruncatedDownloadError as exc:
            # The body was whole and its size matched: the video itself is cut.
            raise VideoIntegrityError(
                f"The Sora video of task {task_id!r} is not a whole mp4: {exc.message}"
            ) from exc
        return await file.commit()


# --- other families: the signed URL ---------------------------------------------------


def _content_length(response: httpx2.Response) -> int | None:
    """The body length promised by the headers, when it applies to the decoded bytes."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return None
    raw = (response.headers.get("content-length") or "").strip()
    if not _DIGITS.fullmatch(raw):
        return None
    return int(raw)


async def _url_attempt(
    source: DownloadSource, out: OutputDir, *, url: str, task_id: str, filename: str | None
) -> StoredFile:
    where = redact_url(url)
    file = out.video(filename, default_stem=task_id)
    async with _opened(file, source.stream_url(url)) as response:
        expected = _content_length(response)
        if expected is not None:
            file.expect(expected)
        check = Mp4StreamCheck()

        def feed(chunk: bytes) -> None:
            check.feed(chunk)
            file.buffer(chunk)

        try:
            await _pump(source, response, file, feed)
        except VideoIntegrityError as exc:
            content_type = response.headers.get("content-type", "no content type")
            raise VideoIntegrityError(
                f"{exc.message} It came from {where} ({content_type}); nothing was saved."
            ) from exc
        received = check.size
        if expected is not None and received != expected:
            if received < expected:
                raise TruncatedDownloadError(
                    f"The video from {where} stopped after {received} of {expected} bytes."
                )
            raise VideoIntegrityError(
                f"The video from {where} sent {received} bytes but announced {expected}; "
                "nothing was saved."
            )
        check.finish()  # TruncatedDownloadError if the file stops inside a box
        return await file.commit()


async def _fresh_url(source: DownloadSource, task_id: str, *, reason: str) -> str:
    snapshot = await source.query(task_id)
    if snapshot.status is not TaskStatus.SUCCEEDED or not snapshot.url:
        raise DownloadError(
            f"{reason} Re-querying task {task_id!r} gave no video URL (status "
            f"{snapshot.status.value}); nothing was saved."
        )
    return snapshot.url


async def _download_url(
    source: DownloadSource,
    out: OutputDir,
    *,
    task_id: str,
    url: str | None,
    filename: str | None,
    attempts: int,
) -> StoredFile:
    requeried = False
    if url is None:
        url = await _fresh_url(source, task_id, reason=f"Task {task_id!r} came without a URL.")
        requeried = True
    while True:
        current = url

        async def attempt(current: str = current) -> StoredFile:
            return await _url_attempt(source, out, url=current, task_id=task_id, filename=filename)

        try:
            return await _with_retries(attempt, attempts=attempts, what=f"task {task_id!r}")
        except URLExpiredError as exc:
            if requeried:
                raise DownloadError(
                    f"The video URL of task {task_id!r} ({redact_url(current)}) was refused "
                    f"(HTTP {exc.status_code}) even after re-querying the task for a fresh "
                    "one: the video is no longer available from its host (signed links last "
                    "about 24 h). Nothing was saved."
                ) from exc
            logger.info(
                "video URL of task %s refused (HTTP %s, likely expired); re-querying the task",
                task_id,
                exc.status_code,
            )
            requeried = True
            url = await _fresh_url(
                source,
                task_id,
                reason=f"The video URL of task {task_id!r} expired (HTTP {exc.status_code}).",
            )


# --- shared ---------------------------------------------------------------------------


async def _with_retries(
    attempt: Callable[[], Awaitable[StoredFile]], *, attempts: int, what: str
) -> StoredFile:
    """Run ``attempt``; run it again (``attempts`` in all) while the stream is cut short."""
    last: BaseException | None = None
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except TruncatedDownloadError as exc:
            last = exc
            detail = exc.message
        except _StreamCutError as exc:
            last = exc.error
            detail = exc.error.message
        logger.info(
            "video download of %s cut short (attempt %d of %d): %s", what, number, attempts, detail
        )
    assert last is not None
    plural = "" if attempts == 1 else "s"
    message = last.message if isinstance(last, DownloadError | APIConnectionError) else str(last)
    raise TruncatedDownloadError(
        f"The video download of {what} was cut short {attempts} time{plural} "
        f"(last: {message}); nothing was saved. Try download_video again later."
    ) from last


async def download_video(
    client: DownloadSource,
    *,
    task_id: str,
    family: Family,
    url: str | None,
    output_dir: Path | OutputDir,
    filename: str | None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> SavedVideo:
    """Save the video of the finished task ``task_id``; see the module docstring.

    ``output_dir`` may be an :class:`~gravitex_mcp.storage.OutputDir` (to inject file
    system behaviour). Raises :class:`~gravitex_mcp.errors.DownloadError` (or its
    :class:`~gravitex_mcp.errors.VideoIntegrityError` /
    :class:`~gravitex_mcp.errors.TruncatedDownloadError`),
    :class:`~gravitex_mcp.errors.StorageError`, or the client's
    :class:`~gravitex_mcp.errors.APIError`; in every case no file is left under a final
    name.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    out = output_dir if isinstance(output_dir, OutputDir) else OutputDir(output_dir)
    if family is Family.SORA:

        async def attempt() -> StoredFile:
            return await _sora_attempt(client, out, task_id=task_id, filename=filename)

        stored = await _with_retries(attempt, attempts=attempts, what=f"task {task_id!r}")
    else:
        stored = await _download_url(
            client, out, task_id=task_id, url=url, filename=filename, attempts=attempts
        )
    return SavedVideo.from_stored(stored)
