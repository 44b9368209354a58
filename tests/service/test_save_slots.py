"""Saves download a bounded number of videos at once per process; the others wait for a
slot in the background, and every one of them lands."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest

from gravitex_mcp.errors import DownloadInProgressError
from gravitex_mcp.service.videos import DOWNLOAD_BOUND_SECONDS, VideoService
from tests.conftest import FakeClock
from tests.service_harness import finished_tasks, quick_simulator, running_service, until

#: A guard against a hang, not a wait: every step below is event-driven.
GUARD_SECONDS = 10
#: Wan's video comes from a signed URL (the simulator's /files/), which HeldFiles holds.
WAN = "wan2.5-t2v-preview"


class _HeldBody(httpx2.AsyncByteStream):
    def __init__(self, body: bytes, host: HeldFiles) -> None:
        self._body, self._host = body, host

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._host.open += 1
        self._host.peak = max(self._host.peak, self._host.open)
        try:
            yield self._body[:1024]
            await self._host.release.wait()
            yield self._body[1024:]
        finally:
            self._host.open -= 1

    async def aclose(self) -> None:
        pass


class HeldFiles(httpx2.AsyncBaseTransport):
    """The simulator, with every video file held after its first KB until released;
    counts the files being downloaded at once."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.release = anyio.Event()
        self.open = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.startswith("/files/") or response.status_code != 200:
            return response
        body = await response.aread()
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-encoding"]
        return httpx2.Response(200, headers=headers, stream=_HeldBody(body, self))


async def _download_past_the_bound(service: VideoService, task_id: str) -> None:
    with contextlib.suppress(DownloadInProgressError):  # it goes on in the background
        await service.download(task_id, filename=None)


async def test_no_more_videos_download_at_once_than_the_save_slots(tmp_path: Path) -> None:
    clock = FakeClock()
    files = HeldFiles(quick_simulator(clock))
    async with running_service(tmp_path, clock, transport=files, save_slots=2) as service:
        ids = await finished_tasks(service, 6, model=WAN)
        saved: dict[str, str] = {}

        async def save(task_id: str) -> None:
            saved[task_id] = (await service.download(task_id, filename=None)).location

        with anyio.fail_after(GUARD_SECONDS):
            async with anyio.create_task_group() as group:
                for task_id in ids:
                    group.start_soon(save, task_id)
                # Every save has reached its download: two run, four wait for a slot.
                await until(lambda: files.open + service.save_statistics().tasks_waiting == 6)
                assert files.open == 2
                files.release.set()
    assert files.peak == 2
    assert sorted(saved) == sorted(ids)
    assert len(set(saved.values())) == 6
    assert all(Path(p).is_file() for p in saved.values())


async def test_a_save_waiting_for_a_slot_answers_within_the_bound_and_lands_later(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    files = HeldFiles(quick_simulator(clock))
    async with running_service(tmp_path, clock, transport=files, save_slots=1) as service:
        first, second = await finished_tasks(service, 2, model=WAN)
        with anyio.fail_after(GUARD_SECONDS):
            async with anyio.create_task_group() as group:
                group.start_soon(_download_past_the_bound, service, first)
                await until(lambda: files.open == 1)  # the one slot is taken

                async def bound_passes() -> None:
                    await until(lambda: service.save_statistics().tasks_waiting == 1)
                    end = clock.now + DOWNLOAD_BOUND_SECONDS + 1
                    while clock.now < end:  # a sleep stops at each deadline on its way
                        await clock.sleep(end - clock.now)

                group.start_soon(bound_passes)
                with pytest.raises(DownloadInProgressError, match="goes on in the background"):
                    await service.download(second, filename=None)
                files.release.set()
            later = await service.download(second, filename=None)
    assert Path(later.location).is_file()
    assert files.peak == 1
