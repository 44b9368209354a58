"""download_video against the real GravitexClient over scripted transports (downloads.py).

Every upstream answer is an ``httpx2.Response`` built here, its body streamed in
pieces through an async iterator, so chunk boundaries fall anywhere. No real sleeps
(the client's ``sleep`` is a recorder), no network.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest

from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.domain import Delivery, Family
from gravitex_mcp.errors import (
    DownloadError,
    MalformedResponseError,
    StorageError,
    TruncatedDownloadError,
    URLExpiredError,
    VideoIntegrityError,
)
from gravitex_mcp.results import SavedVideo
from gravitex_mcp.simulator import (
    Endpoint,
    FaultKind,
    Simulator,
    SimulatorConfig,
    iter_mp4,
    simulator_transport,
)
from gravitex_mcp.store.storage import OutputDir
from gravitex_mcp.upstream.client import GravitexClient, Timeouts
from gravitex_mcp.upstream.downloads import MP4_MIME_TYPE, download_stored, saved_video
from gravitex_mcp.upstream.retry import RetryPolicy

KEY = "sk-test-SECRET0123456789abcdef"
BASE = "https://api.gravitex.test"
TASK = "video_69095b4ce0048190893a01510c0c98b0"
SIGNED = "https://cdn.example.test/v/abc/video.mp4?Expires=1&Signature=SIGSECRET"
FRESH = "https://cdn.example.test/v/abc/video.mp4?Expires=2&Signature=FRESHSIG"
SECRETS = ("SIGSECRET", "FRESHSIG", "Expires=", KEY)


async def download_video(
    client: GravitexClient, *, output_dir: Path | OutputDir, **how: Any
) -> SavedVideo:
    """A download into the output folder ``output_dir`` (a path: held for this call)."""
    out = output_dir if isinstance(output_dir, OutputDir) else OutputDir(output_dir)
    return saved_video(await download_stored(client, output=out, **how))


FTYP = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")


def make_video(payload: int = 5000, seed: int = 1) -> bytes:
    data = bytes((i * 7 + seed) % 251 for i in range(payload))
    moov = struct.pack(">I4s", 48, b"moov") + b"m" * 40
    return FTYP + moov + struct.pack(">I4s", 8 + payload, b"mdat") + data


VIDEO = make_video()


def sora_json(video: bytes = VIDEO, **override: Any) -> bytes:
    b64 = base64.b64encode(video).decode()
    body: dict[str, Any] = {
        "success": True,
        "generation_id": TASK,
        "task_id": TASK,
        "format": "mp4",
        "size": len(video),
        "base64": b64,
        "data_url": "data:video/mp4;base64," + b64,
    }
    body.update(override)
    return json.dumps(body).replace("/", "\\/").encode()


class Pieces(httpx2.AsyncByteStream):
    """A body in pieces of ``size`` bytes; optionally stops early or breaks the connection."""

    def __init__(
        self,
        data: bytes,
        size: int = 777,
        *,
        stop_at: int | None = None,
        error: Exception | None = None,
    ) -> None:
        self.data = data if stop_at is None else data[:stop_at]
        self.size = size
        self.error = error
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.data), self.size):
            piece = self.data[i : i + self.size]
            self.sent += len(piece)
            yield piece
        if self.error is not None:
            raise self.error


Handler = Callable[[httpx2.Request], httpx2.Response]


class Upstream:
    """Routes requests: the Sora download endpoint, the query endpoint, signed URLs."""

    def __init__(self) -> None:
        self.downloads: list[Callable[[], httpx2.Response]] = []
        self.files: dict[str, list[Callable[[], httpx2.Response]]] = {}
        self.queries: list[dict[str, Any]] = []
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/v1/video/generations/download":
            return self._next(self.downloads)
        if path.startswith("/v1/video/generations/"):
            body = self.queries.pop(0) if len(self.queries) > 1 else self.queries[0]
            return httpx2.Response(200, json=body)
        key = str(request.url)
        return self._next(self.files[key])

    @staticmethod
    def _next(queue: list[Callable[[], httpx2.Response]]) -> httpx2.Response:
        factory = queue.pop(0) if len(queue) > 1 else queue[0]
        return factory()

    def count(self, fragment: str) -> int:
        return sum(1 for r in self.requests if fragment in str(r.url))


def json_answer(body: bytes, **kwargs: Any) -> Callable[[], httpx2.Response]:
    return lambda: httpx2.Response(
        200, headers={"content-type": "application/json"}, stream=Pieces(body, **kwargs)
    )


def file_answer(
    data: bytes,
    *,
    content_type: str = "video/mp4",
    length: int | None = None,
    **kwargs: Any,
) -> Callable[[], httpx2.Response]:
    def make() -> httpx2.Response:
        headers = {"content-type": content_type}
        if length is not None:
            headers["content-length"] = str(length)
        return httpx2.Response(200, headers=headers, stream=Pieces(data, **kwargs))

    return make


def status_answer(code: int, text: str = "") -> Callable[[], httpx2.Response]:
    return lambda: httpx2.Response(code, text=text)


def client_for(upstream: Upstream, sleeps: list[float] | None = None) -> GravitexClient:
    recorded = sleeps if sleeps is not None else []

    async def fake_sleep(delay: float) -> None:
        recorded.append(delay)

    return GravitexClient(
        api_key=KEY,
        base_url=BASE,
        transport=httpx2.MockTransport(upstream),
        retry=RetryPolicy(),
        timeouts=Timeouts(),
        sleep=fake_sleep,
        rand=lambda: 0.0,
    )


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_clean(exc: BaseException) -> None:
    text = f"{exc} {exc!r} {exc.__cause__}"
    for secret in SECRETS:
        assert secret not in text


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    parent = tmp_path / "area"
    out = parent / "videos"
    parent.mkdir()
    (parent / "bystander.mp4").write_bytes(b"keep")
    return parent, out


async def sora(
    upstream: Upstream, out: Path | OutputDir, *, filename: str | None = None
) -> SavedVideo:
    async with client_for(upstream) as client:
        return await download_video(
            client,
            task_id=TASK,
            delivery=Delivery.DOWNLOAD_ENDPOINT,
            url=None,
            output_dir=out,
            filename=filename,
        )


async def by_url(
    upstream: Upstream,
    out: Path | OutputDir,
    *,
    url: str | None = SIGNED,
    family: Family = Family.VEO,
    filename: str | None = None,
) -> SavedVideo:
    async with client_for(upstream) as client:
        return await download_video(
            client,
            task_id=TASK,
            delivery=delivery_of(family),
            url=url,
            output_dir=out,
            filename=filename,
        )


def delivery_of(family: Family) -> Delivery:
    """The catalog's delivery for the models of ``family`` (one for all of them)."""
    (delivery,) = {spec.delivery for spec in catalog.models(family)}
    return delivery


def check_saved(saved: SavedVideo, video: bytes, out: Path, name: str) -> None:
    path = Path(saved.location)
    assert path == out.resolve() / name
    assert path.read_bytes() == video
    assert saved.size_bytes == len(video)
    assert saved.sha256 == hashlib.sha256(video).hexdigest()
    assert saved.uri == path.as_uri()
    assert saved.uri.startswith("file://")
    assert saved.mime_type == MP4_MIME_TYPE == "video/mp4"


# --- Sora ---------------------------------------------------------------------------------


@pytest.mark.parametrize("piece", [1, 3, 7, 1000, 1 << 16])
async def test_sora_download_is_saved(area: tuple[Path, Path], piece: int) -> None:
    _, out = area
    video = make_video(3001) if piece > 1 else make_video(100)
    upstream = Upstream()
    upstream.downloads.append(json_answer(sora_json(video), size=piece))
    saved = await sora(upstream, out)
    check_saved(saved, video, out, f"{TASK}.mp4")
    assert tree(out) == {f"{TASK}.mp4"}
    request = upstream.requests[0]
    assert request.url.params["id"] == TASK


async def test_sora_with_filename_and_field_order(area: tuple[Path, Path]) -> None:
    _, out = area
    b64 = base64.b64encode(VIDEO).decode()
    body = json.dumps(
        {"data_url": "data:video/mp4;base64," + b64, "size": len(VIDEO), "base64": b64}
    ).encode()
    upstream = Upstream()
    upstream.downloads.append(json_answer(body))
    saved = await sora(upstream, out, filename="../../My Cat.mp4")
    check_saved(saved, VIDEO, out, "My Cat.mp4")


async def test_sora_truncated_once_is_retried(area: tuple[Path, Path]) -> None:
    _, out = area
    body = sora_json()
    upstream = Upstream()
    upstream.downloads += [json_answer(body, stop_at=len(body) // 3), json_answer(body)]
    saved = await sora(upstream, out)
    check_saved(saved, VIDEO, out, f"{TASK}.mp4")
    assert upstream.count("/download") == 2
    assert tree(out) == {f"{TASK}.mp4"}


async def test_sora_broken_connection_is_retried(area: tuple[Path, Path]) -> None:
    _, out = area
    body = sora_json()
    upstream = Upstream()
    upstream.downloads += [
        json_answer(body, stop_at=5000, error=httpx2.ReadError("connection reset")),
        json_answer(body),
    ]
    saved = await sora(upstream, out)
    assert Path(saved.location).read_bytes() == VIDEO
    assert upstream.count("/download") == 2


async def test_sora_always_truncated_is_reported(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)
    body = sora_json()
    upstream = Upstream()
    upstream.downloads.append(json_answer(body, stop_at=len(body) - 1))
    with pytest.raises(TruncatedDownloadError, match="cut short 3 times") as info:
        await sora(upstream, out)
    assert upstream.count("/download") == 3
    assert tree(parent) - before <= {"videos"}
    assert tree(out) == set()
    assert "try download_video again" in str(info.value).lower()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (sora_json().replace(b'"base64": "AAAA', b'"base64": "AA!A'), "strict base64"),
        (sora_json(size=len(VIDEO) + 1), "size="),
        (sora_json(base64="QUJD"), "size="),
        (sora_json(task_id="video_other"), "another task"),
        (b"<!DOCTYPE html><html><body>Gateway</body></html>", "HTML page"),
        (b'{"success": true, "size": 3}', "no 'base64' field"),
    ],
)
async def test_sora_bad_body_is_refused_without_retry(
    area: tuple[Path, Path], body: bytes, match: str
) -> None:
    parent, out = area
    before = tree(parent)
    upstream = Upstream()
    upstream.downloads.append(json_answer(body))
    with pytest.raises(VideoIntegrityError, match=match) as info:
        await sora(upstream, out)
    assert not isinstance(info.value, TruncatedDownloadError)
    assert upstream.count("/download") == 1
    assert tree(out) == set()
    assert tree(parent) - before <= {"videos"}


async def test_sora_bad_base64_in_the_middle(area: tuple[Path, Path]) -> None:
    _, out = area
    body = bytearray(sora_json(make_video(30000)))
    start = body.index(b'"base64": "') + 11 + 20000
    body[start : start + 4] = b"@@@@"
    upstream = Upstream()
    upstream.downloads.append(json_answer(bytes(body)))
    with pytest.raises(VideoIntegrityError, match="not valid strict base64"):
        await sora(upstream, out)
    assert tree(out) == set()


async def test_sora_success_false(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.downloads.append(json_answer(b'{"success": false, "message": "not ready"}'))
    with pytest.raises(DownloadError, match="not ready"):
        await sora(upstream, out)
    assert tree(out) == set()


async def test_sora_decoded_bytes_not_a_video(area: tuple[Path, Path]) -> None:
    _, out = area
    page = b"<html><body>Access denied</body></html>"
    upstream = Upstream()
    upstream.downloads.append(json_answer(sora_json(page)))
    with pytest.raises(VideoIntegrityError, match="not an mp4"):
        await sora(upstream, out)
    assert tree(out) == set()


async def test_sora_video_itself_cut_short_is_not_retried(area: tuple[Path, Path]) -> None:
    _, out = area
    cut = VIDEO[:-10]  # a whole body whose size matches a cut mp4
    upstream = Upstream()
    upstream.downloads.append(json_answer(sora_json(cut)))
    with pytest.raises(VideoIntegrityError, match="not a whole mp4") as info:
        await sora(upstream, out)
    assert not isinstance(info.value, TruncatedDownloadError)
    assert upstream.count("/download") == 1


async def test_sora_html_content_type_is_the_clients_error(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.downloads.append(
        lambda: httpx2.Response(200, html="<html><body>Bad gateway</body></html>")
    )
    with pytest.raises(MalformedResponseError, match="HTML page"):
        await sora(upstream, out)
    assert tree(out) == set()


async def test_sora_disk_full(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)

    def full(fd: int, data: bytes | bytearray | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    upstream = Upstream()
    upstream.downloads.append(json_answer(sora_json(make_video(300_000)), size=65536))
    target = OutputDir(out, write=full)
    with pytest.raises(StorageError, match="Disk full while saving"):
        await sora(upstream, target)
    assert tree(out) == set()
    assert tree(parent) - before <= {"videos"}
    assert upstream.count("/download") == 1  # a full disk is not retried


async def test_sora_never_overwrites(area: tuple[Path, Path]) -> None:
    _, out = area
    out.mkdir()
    (out / "cat.mp4").write_bytes(b"precious")
    upstream = Upstream()
    upstream.downloads.append(json_answer(sora_json()))
    saved = await sora(upstream, out, filename="cat")
    assert Path(saved.location).name == "cat-1.mp4"
    assert (out / "cat.mp4").read_bytes() == b"precious"


async def test_sora_cancelled_mid_stream_leaves_nothing(area: tuple[Path, Path]) -> None:
    _, out = area
    gate = anyio.Event()

    class Stalls(httpx2.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield sora_json()[:3000]
            gate.set()
            await anyio.sleep_forever()

    upstream = Upstream()
    upstream.downloads.append(lambda: httpx2.Response(200, stream=Stalls()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(sora, upstream, out)
        await gate.wait()
        await anyio.wait_all_tasks_blocked()
        assert any(p.name.endswith(".part") for p in out.iterdir())
        tg.cancel_scope.cancel()
    assert tree(out) == set()


class Tracked(Pieces):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize("family", [Family.VEO, Family.SORA])
async def test_a_file_that_cannot_be_opened_stops_the_download(
    area: tuple[Path, Path], family: Family
) -> None:
    parent, out = area
    before = tree(parent)
    streams: list[Tracked] = []

    def answer(body: bytes) -> Callable[[], httpx2.Response]:
        def make() -> httpx2.Response:
            streams.append(Tracked(body))
            return httpx2.Response(200, stream=streams[-1])

        return make

    def refused(path: str, flags: int, mode: int) -> int:
        raise OSError(errno.EACCES, "Permission denied")

    upstream = Upstream()
    upstream.files[SIGNED] = [answer(VIDEO)]
    upstream.downloads.append(answer(sora_json()))
    target = OutputDir(out, open_file=refused)
    run = sora(upstream, target) if family is Family.SORA else by_url(upstream, target)
    with pytest.raises(StorageError, match="is not writable"):
        await run
    assert all(stream.closed for stream in streams)  # the answer, if any, was closed
    assert tree(parent) - before <= {"videos"}
    assert tree(out) == set()


async def test_cancelled_before_the_answer_leaves_nothing(area: tuple[Path, Path]) -> None:
    _, out = area
    asked = anyio.Event()

    async def never(request: httpx2.Request) -> httpx2.Response:
        asked.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    client = GravitexClient(
        api_key=KEY,
        base_url=BASE,
        transport=httpx2.MockTransport(never),
        retry=RetryPolicy(),
        timeouts=Timeouts(),
    )
    async with client, anyio.create_task_group() as tg:

        async def download() -> None:
            await download_video(
                client,
                task_id=TASK,
                delivery=Delivery.TASK_URL,
                url=SIGNED,
                output_dir=out,
                filename=None,
            )

        tg.start_soon(download)
        await asked.wait()
        tg.cancel_scope.cancel()
    assert not out.exists() or tree(out) == set()


# --- signed URLs ------------------------------------------------------------------------


@pytest.mark.parametrize("family", [Family.VEO, Family.WAN, Family.SEEDANCE])
async def test_url_download_is_saved(area: tuple[Path, Path], family: Family) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(VIDEO, length=len(VIDEO))]
    saved = await by_url(upstream, out, family=family, filename="clip")
    check_saved(saved, VIDEO, out, "clip.mp4")
    assert "authorization" not in upstream.requests[0].headers


async def test_url_download_without_content_length(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(VIDEO, size=1)]
    saved = await by_url(upstream, out)
    check_saved(saved, VIDEO, out, f"{TASK}.mp4")


@pytest.mark.parametrize("family", [Family.VEO, Family.SORA])
async def test_download_in_many_pieces(area: tuple[Path, Path], family: Family) -> None:
    _, out = area
    video = make_video(60_000)
    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(video, length=len(video), size=5000)]
    upstream.downloads = [json_answer(sora_json(video), size=5000)]
    async with client_for(upstream) as client:
        saved = await download_video(
            client,
            task_id=TASK,
            delivery=delivery_of(family),
            url=SIGNED,
            output_dir=out,
            filename="r",
        )
    check_saved(saved, video, out, "r.mp4")


async def test_url_html_instead_of_video_stops_early(area: tuple[Path, Path]) -> None:
    _, out = area
    page = b"<!DOCTYPE html><html><body>" + b"Error " * 100_000 + b"</body></html>"
    stream = Pieces(page, size=4096)
    upstream = Upstream()
    upstream.files[SIGNED] = [
        lambda: httpx2.Response(200, headers={"content-type": "video/mp4"}, stream=stream)
    ]
    with pytest.raises(VideoIntegrityError, match="HTML") as info:
        await by_url(upstream, out)
    assert stream.sent < 10 * 4096  # refused after the first bytes, not the whole page
    assert tree(out) == set()
    assert_clean(info.value)
    assert "cdn.example.test/v/abc/video.mp4" in str(info.value)


async def test_url_html_content_type_is_the_clients_error(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [lambda: httpx2.Response(200, html="<html>no</html>")]
    with pytest.raises(MalformedResponseError, match="HTML page") as info:
        await by_url(upstream, out)
    assert_clean(info.value)
    assert tree(out) == set()


async def test_url_truncated_is_retried(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [
        file_answer(VIDEO, length=len(VIDEO), stop_at=1000),
        file_answer(VIDEO, stop_at=len(VIDEO) - 7),  # no Content-Length: the box walk sees it
        file_answer(VIDEO, length=len(VIDEO)),
    ]
    saved = await by_url(upstream, out)
    check_saved(saved, VIDEO, out, f"{TASK}.mp4")
    assert upstream.count("cdn.example.test") == 3


@pytest.mark.parametrize("family", [Family.VEO, Family.SORA])
async def test_a_stalled_stream_is_retried(area: tuple[Path, Path], family: Family) -> None:
    """A stall past the client's read time-out (httpx2's ReadTimeout) is a cut stream."""
    _, out = area
    stall = httpx2.ReadTimeout("timed out")
    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(VIDEO, stop_at=900, error=stall), file_answer(VIDEO)]
    body = sora_json()
    upstream.downloads += [json_answer(body, stop_at=900, error=stall), json_answer(body)]
    async with client_for(upstream) as client:
        saved = await download_video(
            client,
            task_id=TASK,
            delivery=delivery_of(family),
            url=SIGNED,
            output_dir=out,
            filename=None,
        )
    check_saved(saved, VIDEO, out, f"{TASK}.mp4")
    assert len(upstream.requests) == 2
    assert tree(out) == {f"{TASK}.mp4"}


async def test_url_always_truncated_is_reported(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(VIDEO, length=len(VIDEO), stop_at=1000)]
    with pytest.raises(TruncatedDownloadError, match="1000 of") as info:
        await by_url(upstream, out)
    assert upstream.count("cdn.example.test") == 3
    assert tree(out) == set()
    assert_clean(info.value)


async def test_url_longer_than_announced(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(VIDEO, length=len(VIDEO) - 8)]
    with pytest.raises(VideoIntegrityError, match="announced"):
        await by_url(upstream, out)
    assert tree(out) == set()


async def test_expired_url_requeries_once(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [status_answer(403, "Request has expired")]
    upstream.files[FRESH] = [file_answer(VIDEO, length=len(VIDEO))]
    upstream.queries.append({"task_id": TASK, "status": "succeeded", "url": FRESH})
    saved = await by_url(upstream, out)
    check_saved(saved, VIDEO, out, f"{TASK}.mp4")
    assert upstream.count(f"/v1/video/generations/{TASK}") == 1


async def test_expired_twice_is_a_clear_error(
    area: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    _, out = area
    caplog.set_level(logging.DEBUG)
    upstream = Upstream()
    upstream.files[SIGNED] = [status_answer(403)]
    upstream.files[FRESH] = [status_answer(410)]
    upstream.queries.append({"task_id": TASK, "status": "succeeded", "url": FRESH})
    with pytest.raises(DownloadError, match="even after re-querying") as info:
        await by_url(upstream, out)
    assert isinstance(info.value.__cause__, URLExpiredError)
    assert "no longer available" in str(info.value)
    assert upstream.count(f"/v1/video/generations/{TASK}") == 1
    assert tree(out) == set()
    assert_clean(info.value)
    for record in caplog.records:
        for secret in SECRETS:
            assert secret not in record.getMessage()


async def test_requery_without_a_url(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[SIGNED] = [status_answer(403)]
    upstream.queries.append({"task_id": TASK, "status": "in_progress"})
    with pytest.raises(DownloadError, match="gave no video URL"):
        await by_url(upstream, out)


async def test_missing_url_is_fetched_by_query(area: tuple[Path, Path]) -> None:
    _, out = area
    upstream = Upstream()
    upstream.files[FRESH] = [file_answer(VIDEO)]
    upstream.queries.append({"task_id": TASK, "status": "succeeded", "url": FRESH})
    saved = await by_url(upstream, out, url=None)
    assert Path(saved.location).read_bytes() == VIDEO


async def test_url_disk_full(area: tuple[Path, Path]) -> None:
    parent, out = area
    before = tree(parent)

    def full(fd: int, data: bytes | bytearray | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(VIDEO)]
    with pytest.raises(StorageError, match="Disk full") as info:
        await by_url(upstream, OutputDir(out, write=full))
    assert_clean(info.value)
    assert tree(out) == set()
    assert tree(parent) - before <= {"videos"}


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/x.mp4", "..", "a/b\\c", "\x00", ".h"])
async def test_url_hostile_names_stay_inside(area: tuple[Path, Path], name: str) -> None:
    parent, out = area
    before = tree(parent)
    upstream = Upstream()
    upstream.files[SIGNED] = [file_answer(VIDEO)]
    saved = await by_url(upstream, out, filename=name)
    assert Path(saved.location).parent == out.resolve()
    assert tree(parent) == before | {"videos", f"videos/{Path(saved.location).name}"}


async def test_attempts_must_be_positive(area: tuple[Path, Path]) -> None:
    _, out = area
    async with client_for(Upstream()) as client:
        with pytest.raises(ValueError, match="attempts"):
            await download_video(
                client,
                task_id=TASK,
                delivery=Delivery.DOWNLOAD_ENDPOINT,
                url=None,
                output_dir=out,
                filename=None,
                attempts=0,
            )


# --- against the project's simulator (in-process streaming transport) --------------------

SIM_KEY = "sk-sim-SECRET0123456789"
SIM_BASE = "http://simulator.test"


class SimRig:
    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.sim = Simulator(config or SimulatorConfig(), clock=lambda: 0.0)
        self.sleeps: list[float] = []

        async def fake_sleep(delay: float) -> None:
            self.sleeps.append(delay)

        self.client = GravitexClient(
            api_key=SIM_KEY,
            base_url=SIM_BASE,
            transport=simulator_transport(self.sim),
            sleep=fake_sleep,
            rand=lambda: 0.0,
        )

    async def finished(self, body: dict[str, Any]) -> tuple[str, str | None]:
        task = await self.client.submit(body)
        self.sim.advance(3600)
        snapshot = await self.client.query(task.task_id)
        assert snapshot.status.value == "succeeded"
        return task.task_id, snapshot.url


SIM_SORA = {"model": "sora-2", "prompt": "a cat [size=300k]", "seconds": "4", "size": "720x1280"}
SIM_VEO = {"model": "veo-3.0-fast-generate-001", "prompt": "a lighthouse [size=300k]"}


async def sim_download(
    rig: SimRig, task_id: str, family: Family, url: str | None, out: Path
) -> SavedVideo:
    return await download_video(
        rig.client,
        task_id=task_id,
        delivery=delivery_of(family),
        url=url,
        output_dir=out,
        filename=None,
    )


def expected_video(size: int, clip: bytes | None) -> bytes:
    """The simulator's video of ``size`` bytes: the task's own clip, padded."""
    return b"".join(iter_mp4(size, base=clip))


async def test_sim_sora_download(area: tuple[Path, Path]) -> None:
    _, out = area
    rig = SimRig()
    async with rig.client:
        task_id, _ = await rig.finished(SIM_SORA)
        saved = await sim_download(rig, task_id, Family.SORA, None, out)
    video = expected_video(300 * 1024, rig.sim.tasks[task_id].clip)
    check_saved(saved, video, out, f"{task_id}.mp4")


async def test_sim_veo_download(area: tuple[Path, Path]) -> None:
    _, out = area
    rig = SimRig()
    async with rig.client:
        task_id, url = await rig.finished(SIM_VEO)
        saved = await sim_download(rig, task_id, Family.VEO, url, out)
    check_saved(
        saved, expected_video(300 * 1024, rig.sim.tasks[task_id].clip), out, f"{task_id}.mp4"
    )
    assert rig.sim.calls["file"] == 1


async def test_sim_sora_truncated_then_whole(area: tuple[Path, Path]) -> None:
    _, out = area
    rig = SimRig()
    async with rig.client:
        task_id, _ = await rig.finished(SIM_SORA)
        rig.sim.faults.add(Endpoint.DOWNLOAD, FaultKind.TRUNCATED)
        saved = await sim_download(rig, task_id, Family.SORA, None, out)
    expected = expected_video(300 * 1024, rig.sim.tasks[task_id].clip)
    assert Path(saved.location).read_bytes() == expected
    assert rig.sim.calls["download"] == 2
    assert tree(out) == {f"{task_id}.mp4"}


@pytest.mark.parametrize("kind", [FaultKind.BAD_BASE64, FaultKind.WRONG_SIZE])
async def test_sim_sora_corrupt_body(area: tuple[Path, Path], kind: FaultKind) -> None:
    _, out = area
    rig = SimRig()
    async with rig.client:
        task_id, _ = await rig.finished(SIM_SORA)
        rig.sim.faults.add(Endpoint.DOWNLOAD, kind)
        with pytest.raises(VideoIntegrityError) as info:
            await sim_download(rig, task_id, Family.SORA, None, out)
    assert not isinstance(info.value, TruncatedDownloadError)
    assert rig.sim.calls["download"] == 1
    assert tree(out) == set()


async def test_sim_file_truncated_then_whole(area: tuple[Path, Path]) -> None:
    _, out = area
    rig = SimRig()
    async with rig.client:
        task_id, url = await rig.finished(SIM_VEO)
        rig.sim.faults.add(Endpoint.FILE, FaultKind.TRUNCATED)
        saved = await sim_download(rig, task_id, Family.VEO, url, out)
    expected = expected_video(300 * 1024, rig.sim.tasks[task_id].clip)
    assert Path(saved.location).read_bytes() == expected
    assert rig.sim.calls["file"] == 2


async def test_sim_expired_url_requery(area: tuple[Path, Path]) -> None:
    _, out = area
    rig = SimRig()
    async with rig.client:
        task_id, url = await rig.finished(SIM_VEO)
        rig.sim.faults.add(Endpoint.FILE, FaultKind.EXPIRED_URL)
        queries = rig.sim.calls["query"]
        saved = await sim_download(rig, task_id, Family.VEO, url, out)
    assert saved.size_bytes == 300 * 1024
    assert rig.sim.calls["query"] == queries + 1


async def test_sim_really_expired_url(area: tuple[Path, Path]) -> None:
    _, out = area
    rig = SimRig(SimulatorConfig(url_ttl_seconds=60))
    async with rig.client:
        task_id, url = await rig.finished(SIM_VEO)  # 3600 s later: the link is long dead
        with pytest.raises(DownloadError, match="even after re-querying") as info:
            await sim_download(rig, task_id, Family.VEO, url, out)
    assert_clean(info.value)
    assert "Signature" not in str(info.value)
    assert tree(out) == set()
