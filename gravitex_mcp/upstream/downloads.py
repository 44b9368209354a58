"""The save pipeline: a finished task's video, streamed into the output folder.

The source is picked once, from the model's :class:`~gravitex_mcp.domain.Delivery`: the
download endpoint (Sora: its JSON body decoded by :class:`~gravitex_mcp.upstream.sora_body.SoraBody`
as it arrives) or the task's signed ``url`` (the byte count must match ``Content-Length``
when given; an expired URL makes one re-query of the task). The body is read with httpx2's
``aiter_bytes`` (each wait bounded by the client's ``read`` time-out), checked as an mp4 as
it passes (an error page is refused after its first bytes; the boxes must tile the file),
written and hashed into a :class:`Sink` the caller's video store reserves (a temp file,
published without overwriting). A stream cut short is retried (``attempts`` in all), each
time into a fresh sink. Signed URLs are logged and quoted without their query string.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, TypeVar

import httpx2

from ..domain import URL_LIFETIME_TEXT, Delivery, TaskStatus
from ..errors import (
    APIConnectionError,
    DownloadError,
    TruncatedDownloadError,
    URLExpiredError,
    VideoIntegrityError,
)
from ..redact import redact_url
from ..results import SavedVideo
from .client import GravitexClient
from .failures import read_error
from .mp4 import Mp4StreamCheck
from .sora_body import SoraBody

__all__ = [
    "DEFAULT_ATTEMPTS",
    "MP4_MIME_TYPE",
    "Sink",
    "Sinks",
    "download_stored",
    "saved_video",
]

logger = logging.getLogger(__name__)

MP4_MIME_TYPE: Final = "video/mp4"
#: Attempts per download when the stream is cut short (the first try included).
DEFAULT_ATTEMPTS: Final = 3

_DIGITS: Final = re.compile(r"[0-9]{1,18}")


class Stored(Protocol):
    """A published video, as a download reports it."""

    @property
    def path(self) -> Path | None: ...
    @property
    def uri(self) -> str: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def sha256(self) -> str: ...


_S = TypeVar("_S", bound=Stored)
_S_co = TypeVar("_S_co", bound=Stored, covariant=True)


class Sink(Protocol[_S_co]):
    """Where one download attempt writes (the video store's writer); ``async with``.
    Left without :meth:`commit`, it is discarded."""

    def put(self, data: bytes) -> None:
        """Write and hash ``data``."""
        ...

    async def drain(self) -> None:
        """Wait until what was put is within the sink's bound (between chunks)."""
        ...

    async def commit(self) -> _S_co:
        """Publish what was written."""
        ...

    async def __aenter__(self) -> Sink[_S_co]: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Sinks(Protocol[_S_co]):
    """The video store, as a download sees it: it reserves a sink per attempt."""

    def reserve(self, filename: str | None, *, default_stem: str) -> Sink[_S_co]: ...


class _StreamCutError(Exception):
    """The connection failed while the body was being read (worth another attempt)."""

    def __init__(self, error: APIConnectionError) -> None:
        super().__init__(error.message)
        self.error = error


async def _pump(
    response: httpx2.Response, feed: Callable[[bytes], None], drain: Callable[[], Awaitable[None]]
) -> None:
    """Feed every body chunk to ``feed``, then ``drain`` the sink (an object store's
    upload keeps up, or the download waits for it); a broken or stalled stream is a cut."""
    try:
        async for chunk in response.aiter_bytes():
            feed(chunk)
            await drain()
    except httpx2.RequestError as exc:
        error = read_error(response, exc)
        if not isinstance(error, APIConnectionError):
            raise error from exc  # a body that cannot be decoded: no point retrying
        raise _StreamCutError(error) from exc


def _content_length(response: httpx2.Response) -> int | None:
    """The body length promised by the headers, when it applies to the decoded bytes."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        return None
    raw = (response.headers.get("content-length") or "").strip()
    return int(raw) if _DIGITS.fullmatch(raw) else None


def _checked_sink(file: Sink[Stored], check: Mp4StreamCheck) -> Callable[[bytes], None]:
    def sink(data: bytes) -> None:
        check.feed(data)  # raises before an error page reaches the disk
        file.put(data)

    return sink


async def _endpoint_attempt(
    source: GravitexClient, out: Sinks[_S], *, task_id: str, filename: str | None
) -> _S:
    async with (
        source.stream_sora_download(task_id) as response,
        out.reserve(filename, default_stem=task_id) as file,
    ):
        check = Mp4StreamCheck()
        body = SoraBody(_checked_sink(file, check))
        await _pump(response, body.feed, file.drain)
        body.close(task_id=task_id)  # TruncatedDownloadError when the body stopped early
        try:
            check.finish()
        except TruncatedDownloadError as exc:
            # The body was whole and its size matched: the video itself is cut.
            raise VideoIntegrityError(
                f"The Sora video of task {task_id!r} is not a whole mp4: {exc.message}"
            ) from exc
        return await file.commit()


async def _url_attempt(
    source: GravitexClient, out: Sinks[_S], *, url: str, task_id: str, filename: str | None
) -> _S:
    where = redact_url(url)
    async with (
        source.stream_url(url) as response,
        out.reserve(filename, default_stem=task_id) as file,
    ):
        expected = _content_length(response)
        check = Mp4StreamCheck()
        try:
            await _pump(response, _checked_sink(file, check), file.drain)
        except VideoIntegrityError as exc:
            content_type = response.headers.get("content-type", "no content type")
            raise VideoIntegrityError(
                f"{exc.message} It came from {where} ({content_type}); nothing was saved."
            ) from exc
        received = check.size
        if expected is not None and received < expected:
            raise TruncatedDownloadError(
                f"The video from {where} stopped after {received} of {expected} bytes."
            )
        if expected is not None and received > expected:
            raise VideoIntegrityError(
                f"The video from {where} sent {received} bytes but announced {expected}; "
                "nothing was saved."
            )
        check.finish()  # TruncatedDownloadError if the file stops inside a box
        return await file.commit()


async def _fresh_url(source: GravitexClient, task_id: str, *, reason: str) -> str:
    snapshot = await source.query(task_id)
    if snapshot.status is not TaskStatus.SUCCEEDED or not snapshot.url:
        raise DownloadError(
            f"{reason} Re-querying task {task_id!r} gave no video URL (status "
            f"{snapshot.status.value}); nothing was saved."
        )
    return snapshot.url


async def _download_url(
    source: GravitexClient,
    out: Sinks[_S],
    *,
    task_id: str,
    url: str | None,
    filename: str | None,
    attempts: int,
) -> _S:
    requeried = url is None
    if url is None:
        url = await _fresh_url(source, task_id, reason=f"Task {task_id!r} came without a URL.")
    while True:
        attempt = partial(_url_attempt, source, out, url=url, task_id=task_id, filename=filename)
        try:
            return await _with_retries(attempt, attempts=attempts, what=f"task {task_id!r}")
        except URLExpiredError as exc:
            if requeried:
                raise DownloadError(
                    f"The video URL of task {task_id!r} ({redact_url(url)}) was refused "
                    f"(HTTP {exc.status_code}) even after re-querying the task for a fresh "
                    "one: the video is no longer available from its host (signed links last "
                    f"{URL_LIFETIME_TEXT}). Nothing was saved."
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


async def _with_retries(attempt: Callable[[], Awaitable[_S]], *, attempts: int, what: str) -> _S:
    """Run ``attempt``; run it again (``attempts`` in all) while the stream is cut short."""
    last: DownloadError | APIConnectionError | None = None
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except TruncatedDownloadError as exc:
            last = exc
        except _StreamCutError as exc:
            last = exc.error
        logger.info(
            "video download of %s cut short (attempt %d of %d): %s",
            what,
            number,
            attempts,
            last.message,
        )
    assert last is not None
    plural = "" if attempts == 1 else "s"
    raise TruncatedDownloadError(
        f"The video download of {what} was cut short {attempts} time{plural} "
        f"(last: {last.message}); nothing was saved. Try download_video again later."
    ) from last


async def download_stored(
    client: GravitexClient,
    *,
    task_id: str,
    delivery: Delivery,
    url: str | None,
    output: Sinks[_S],
    filename: str | None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> _S:
    """Save the video of the finished task ``task_id`` into a sink of ``output``; see
    the module docstring. The published file (its identity included, for the journal).

    Raises :class:`~gravitex_mcp.errors.DownloadError` (or its
    :class:`~gravitex_mcp.errors.VideoIntegrityError` /
    :class:`~gravitex_mcp.errors.TruncatedDownloadError`),
    :class:`~gravitex_mcp.errors.StorageError`, or the client's
    :class:`~gravitex_mcp.errors.APIError`; in every case no file is left under a final
    name.
    """
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    out = output
    if delivery is Delivery.DOWNLOAD_ENDPOINT:
        attempt = partial(_endpoint_attempt, client, out, task_id=task_id, filename=filename)
        return await _with_retries(attempt, attempts=attempts, what=f"task {task_id!r}")
    return await _download_url(
        client, out, task_id=task_id, url=url, filename=filename, attempts=attempts
    )


def saved_video(stored: Stored) -> SavedVideo:
    """The result fields of a published video."""
    # An object has no local path: its URI says where it is.
    return SavedVideo(
        path=str(stored.path) if stored.path is not None else None,
        uri=stored.uri or (stored.path.as_uri() if stored.path is not None else ""),
        size_bytes=stored.size_bytes,
        sha256=stored.sha256,
        mime_type=MP4_MIME_TYPE,
    )
