"""The simulator's real clips: what was asked, per family, served by both download paths."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gravitex_mcp.domain import Family
from gravitex_mcp.simulator import Endpoint, FaultKind, media
from gravitex_mcp.simulator import clips as clips_module
from gravitex_mcp.simulator.clips import ClipShape, dimensions, render_clip, shape_for
from gravitex_mcp.video.probe import probe_video
from tests.simulator.test_simulator import AUTH, finish, frozen_sim, make_client, submit


@pytest.mark.parametrize(
    ("family", "body", "shape"),
    [
        (Family.SORA, {}, (4, 160, 284)),
        (Family.SORA, {"seconds": "12", "size": "1280x720"}, (12, 284, 160)),
        (Family.SORA, {"width": 720, "height": 1280}, (4, 160, 284)),
        (Family.VEO, {}, (8, 284, 160)),
        (Family.VEO, {"durationSeconds": 4, "aspectRatio": "9:16"}, (4, 160, 284)),
        (Family.WAN, {}, (5, 284, 160)),
        (Family.WAN, {"duration": 10, "size": "1440*1440"}, (10, 160, 160)),
        (
            Family.SEEDANCE,
            {"metadata": {"content": [{"type": "text", "text": "x"}]}},
            (5, 284, 160),
        ),
        (
            Family.SEEDANCE,
            {"metadata": {"content": [{"type": "text", "text": "x --dur 10 --ratio 3:4"}]}},
            (10, 160, 214),
        ),
    ],
)
def test_shape_follows_each_familys_fields_and_defaults(
    family: Family, body: dict[str, Any], shape: tuple[float, int, int]
) -> None:
    got = shape_for(family, body)
    assert (got.seconds, got.width, got.height) == shape
    assert shape_for(family, body, short=True).seconds == shape[0] / 2


def test_dimensions_are_small_and_even() -> None:
    assert dimensions(16, 9) == (284, 160)
    assert dimensions(9, 16) == (160, 284)
    assert dimensions(1, 1) == (160, 160)


def test_render_is_playable_h264_moov_first_and_cached(tmp_path: Path) -> None:
    shape = ClipShape(seconds=3, width=160, height=284)
    data = render_clip(shape)
    assert render_clip(shape) is data  # cached per shape
    assert data[4:8] == b"ftyp"
    # moov before mdat: a browser can start playing before the whole file arrives
    assert 0 < data.index(b"moov") < data.index(b"mdat")
    path = tmp_path / "c.mp4"
    path.write_bytes(data)
    found = probe_video(path)
    assert (found.duration_seconds, found.width, found.height) == (3.0, 160, 284)
    assert found.video_codec == "h264"


async def test_sora_download_and_signed_url_serve_the_asked_clip(tmp_path: Path) -> None:
    sim = frozen_sim(clips=True)
    async with make_client(sim) as client:
        sora = await submit(client, {"model": "sora-2", "prompt": "x", "seconds": "8"})
        veo = await submit(
            client,
            {"model": "veo-3.0-generate-preview", "prompt": "x [short]", "aspectRatio": "9:16"},
        )
        finish(sim)
        body = (
            await client.get("/v1/video/generations/download", params={"id": sora}, headers=AUTH)
        ).json()
        url = (await client.get(f"/v1/video/generations/{veo}", headers=AUTH)).json()["url"]
        file = (await client.get(url)).content
    sora_video = base64.b64decode(body["base64"], validate=True)
    assert sora_video == sim.tasks[sora].clip == render_clip(ClipShape(8, 160, 284))
    assert body["size"] == len(sora_video)
    assert file == render_clip(ClipShape(4, 160, 284))
    for name, data, seconds in (("s.mp4", sora_video, 8.0), ("v.mp4", file, 4.0)):
        (tmp_path / name).write_bytes(data)
        assert probe_video(tmp_path / name).duration_seconds == seconds


async def test_size_marker_pads_the_clip_and_faults_still_apply() -> None:
    sim = frozen_sim(clips=True)
    async with make_client(sim) as client:
        task_id = await submit(client, {"model": "sora-2", "prompt": "x [size=1m]"})
        finish(sim)
        sim.faults.add(Endpoint.DOWNLOAD, FaultKind.BAD_BASE64)
        bad = await client.get(
            "/v1/video/generations/download", params={"id": task_id}, headers=AUTH
        )
        good = await client.get(
            "/v1/video/generations/download", params={"id": task_id}, headers=AUTH
        )
    clip = sim.tasks[task_id].clip
    assert clip is not None
    video = base64.b64decode(good.json()["base64"], validate=True)
    assert len(video) == 1024 * 1024
    assert video == media.build_mp4(1024 * 1024, clip)
    assert video.startswith(clip)
    with pytest.raises(ValueError, match=r"base64|Invalid"):
        base64.b64decode(bad.json()["base64"], validate=True)


async def test_clips_off_serves_the_sample() -> None:
    sim = frozen_sim(clips=False)
    async with make_client(sim) as client:
        task_id = await submit(client, {"model": "sora-2", "prompt": "x", "seconds": "8"})
    assert sim.tasks[task_id].clip is None
    assert sim.tasks[task_id].video_size == media.sample_size()


def test_concurrent_first_renders_of_one_shape_encode_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[ClipShape] = []
    real_encode = clips_module._encode
    arrived, lock = [0], threading.Lock()
    everyone = threading.Event()

    def held_encode(shape: ClipShape) -> bytes:
        encoded.append(shape)
        everyone.wait(10)  # the other renders have asked for the clip meanwhile
        return real_encode(shape)

    def render(_: int) -> bytes:
        with lock:
            arrived[0] += 1
            if arrived[0] == 4:
                everyone.set()
        return render_clip(shape)

    monkeypatch.setattr(clips_module, "_encode", held_encode)
    shape = ClipShape(seconds=1, width=98, height=160)  # a shape no other test renders
    with ThreadPoolExecutor(4) as pool:
        rendered = list(pool.map(render, range(4)))
    assert encoded == [shape]
    assert len(set(rendered)) == 1
