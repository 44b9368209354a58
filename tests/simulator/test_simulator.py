"""The simulator behaves like the documented Gravitex API (happy paths, auth, validation, time)."""

from __future__ import annotations

import base64
import re
import struct
import tracemalloc
import types
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from gravitex_mcp.simulator import (
    Simulator,
    SimulatorConfig,
    create_app,
    iter_base64,
    iter_mp4,
    media,
    sample_mp4,
    simulator_transport,
)
from gravitex_mcp.simulator.gateway_rules import parse_flags

KEY = "sk-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
BASE = "http://sim.test"


# --- helpers shared with the other test_simulator_* modules ------------------


def png(width: int, height: int) -> bytes:
    """A real (tiny, black) PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    raw = b"".join(b"\x00" + bytes(width) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def top_level_boxes(data: bytes) -> list[tuple[bytes, int]]:
    """(type, size) of every top-level ISO-BMFF box; asserts they tile the file exactly."""
    boxes: list[tuple[bytes, int]] = []
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        assert size >= 8, (kind, size)
        boxes.append((kind, size))
        offset += size
    assert offset == len(data)
    return boxes


def make_client(sim: Simulator, *, streaming: bool = False, **kwargs: Any) -> httpx2.AsyncClient:
    transport = simulator_transport(sim) if streaming else httpx2.ASGITransport(app=sim.app)
    return httpx2.AsyncClient(transport=transport, base_url=BASE, **kwargs)


async def submit(client: httpx2.AsyncClient, body: dict[str, Any]) -> str:
    response = await client.post("/v1/video/generations", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["status"] == "submitted"
    assert payload["format"] == "mp4"
    task_id = payload["task_id"]
    assert isinstance(task_id, str)
    return task_id


async def query(client: httpx2.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/video/generations/{task_id}", headers=AUTH)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def frozen_sim(**config: Any) -> Simulator:
    # These tests check the byte mechanics against the shipped sample; the real
    # clips of what was asked are tested in test_simulator_clips.py.
    config.setdefault("clips", False)
    return Simulator(SimulatorConfig(**config), clock=lambda: 0.0)


def finish(sim: Simulator) -> None:
    sim.advance(sim.config.queued_seconds + sim.config.processing_seconds)


@pytest.fixture
def sim() -> Simulator:
    return frozen_sim()


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_client(sim) as c:
        yield c


# --- the sample video and media generation ------------------------------------


def test_sample_is_a_small_real_mp4() -> None:
    data = sample_mp4()
    assert 1_000 < len(data) < 100_000
    boxes = [kind for kind, _ in top_level_boxes(data)]
    assert boxes[0] == b"ftyp"
    assert b"moov" in boxes
    assert b"mdat" in boxes
    assert boxes.index(b"moov") < boxes.index(b"mdat")  # playable while streaming
    assert data[8:12] == b"isom"


@pytest.mark.parametrize("extra", [0, 8, 9, 1000, 3 * 65536 + 5])
def test_iter_mp4_makes_valid_files_of_exact_size(extra: int) -> None:
    size = media.sample_size() + extra
    chunks = list(iter_mp4(size, 4096))
    assert all(len(c) == 4096 for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= 4096
    data = b"".join(chunks)
    assert len(data) == size
    assert data.startswith(sample_mp4())
    boxes = top_level_boxes(data)
    assert boxes[0][0] == b"ftyp"
    if extra:
        assert boxes[-1] == (b"free", extra)
        assert data[len(sample_mp4()) + 8 :] == bytes(extra - 8)


def test_mp4_sizes_that_cannot_be_made() -> None:
    base = media.sample_size()
    for bad in (base - 1, base + 1, base + 7, 0):
        assert not media.is_valid_size(bad)
        with pytest.raises(ValueError, match="cannot make an mp4"):
            next(iter_mp4(bad))
    assert media.normalize_size(None) == base
    assert media.normalize_size(10) == base
    assert media.normalize_size(base + 3) == base + 8
    assert media.normalize_size(base + 100) == base + 100
    with pytest.raises(ValueError, match="video_size_bytes"):
        Simulator(SimulatorConfig(video_size_bytes=base + 3))


def test_free_box_over_4_gib_uses_largesize() -> None:
    header = media._free_box_header(2**32 + 100)
    assert header == struct.pack(">I4sQ", 1, b"free", 2**32 + 100)
    _, head, zeros = media._segments(media.sample_size() + 2**32 + 100)
    assert head == header
    assert zeros == 2**32 + 100 - 16


def test_a_256_mib_video_is_generated_lazily() -> None:
    size = 256 * 1024 * 1024
    gen = iter_mp4(size, 1024 * 1024)
    assert isinstance(gen, types.GeneratorType)
    tracemalloc.start()
    try:
        total = 0
        count = 0
        for chunk in gen:
            total += len(chunk)
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert count == 256
    assert peak < 8 * 1024 * 1024  # a few chunks at most, never the whole file


def test_iter_base64_chunks_concatenate_to_the_encoding() -> None:
    size = media.sample_size() + 100_003
    chunks = list(iter_base64(size, 3 * 1000))
    assert all(len(c) == 4000 for c in chunks[:-1])
    text = b"".join(chunks)
    assert text == base64.b64encode(media.build_mp4(size))
    assert len(text) == media.base64_length(size)
    with pytest.raises(ValueError, match="multiple of 3"):
        next(iter_base64(size, 1000))


def test_seedance_flag_parsing() -> None:
    prompt, flags = parse_flags("A cat--ish dog -- runs --ratio 16:9 --dur 5 --wm false --cf")
    assert prompt == "A cat--ish dog -- runs"
    assert flags == {
        "ratio": ("ratio", "16:9"),
        "duration": ("dur", "5"),
        "watermark": ("wm", "false"),
        "camerafixed": ("cf", None),
    }


# --- happy paths, family by family --------------------------------------------

SORA_ID = re.compile(r"video_[0-9a-f]{32}")
VEO_ID = re.compile(r"video_[0-9a-f]{16}")
WAN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SEEDANCE_ID = re.compile(r"cgt-\d{14}-[0-9a-f]{5}")


def _seedance(model: str, text: str, *images: tuple[str, str | None]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for url, role in images:
        item: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
        if role is not None:
            item["role"] = role
        content.append(item)
    return {"model": model, "metadata": {"content": content}}


IMG = data_url(png(64, 64))
IMG2 = data_url(png(32, 32))

SORA_BODIES: list[dict[str, Any]] = [
    {"model": "sora-2", "prompt": "A cat in a garden", "seconds": "4", "size": "720x1280"},
    {"model": "sora-2", "prompt": "A cat", "seconds": "8", "size": "1280x720"},
    {"model": "sora-2", "prompt": "A cat", "input_reference": data_url(png(720, 1280))},
    {
        "model": "sora-2",
        "prompt": "Night scene",
        "seconds": "12",
        "size": "1280x720",
        "input_reference": data_url(png(1280, 720)),
        "remix_from_video_id": "video_69095b4ce0048190893a01510c0c98b0",
    },
    {"model": "sora-2", "prompt": "A cat", "width": 1280, "height": 720},
]
NON_SORA_BODIES: list[tuple[dict[str, Any], re.Pattern[str]]] = [
    (
        {
            "model": "veo-3.1-fast-generate-preview",
            "prompt": "Aerial view of a sci-fi city",
            "durationSeconds": 8,
            "aspectRatio": "16:9",
            "resolution": "1080p",
            "fps": 24,
            "image": IMG,
            "lastFrame": "https://example.com/end.png",
            "generateAudio": True,
            "personGeneration": "allow_all",
            "addWatermark": False,
            "seed": 12345,
            "sampleCount": 2,
        },
        VEO_ID,
    ),
    ({"model": "veo-3.0-fast-generate-001", "prompt": "A city"}, VEO_ID),
    (
        {
            "model": "wan2.5-t2v-preview",
            "prompt": "A kitten opens its eyes",
            "duration": 10,
            "size": "1920*1080",
            "smart_rewrite": False,
            "generate_audio": False,
            "seed": 2147483647,
        },
        WAN_ID,
    ),
    (
        {
            "model": "wan2.5-i2v-preview",
            "prompt": "A kitten",
            "duration": 5,
            "resolution": "720p",
            "image": "https://example.com/cat.jpg",
            "audio_url": "https://example.com/audio.mp3",
        },
        WAN_ID,
    ),
    (
        _seedance(
            "doubao-seedance-1-0-lite-t2v-250428",
            "A kitten --ratio 9:16 --dur 10 --rs 1080p --fps 30 --wm true --seed 12345 --cf false",
        ),
        SEEDANCE_ID,
    ),
    (
        _seedance(
            "doubao-seedance-1-0-lite-i2v-250428",
            "A bird becomes human --rs 720p --dur 5 --cf false",
            (IMG, "first_frame"),
            (IMG2, "last_frame"),
        ),
        SEEDANCE_ID,
    ),
    (
        _seedance(
            "doubao-seedance-1-0-lite-i2v-250428",
            "[图1] A boy and [图2] a corgi on [图3] a lawn --rs 720p --ratio 16:9",
            ("https://example.com/ref1.png", "reference_image"),
            ("https://example.com/ref2.png", "reference_image"),
            ("https://example.com/ref3.png", "reference_image"),
        ),
        SEEDANCE_ID,
    ),
    (
        _seedance(
            "doubao-seedance-1-0-pro-250528",
            "A girl opens her eyes --ratio adaptive --dur 5",
            (IMG, None),
        ),
        SEEDANCE_ID,
    ),
    (
        {
            **_seedance(
                "doubao-seedance-1-5-pro-251215", "A kitten --ratio 16:9 --dur 6 --rs 720p"
            ),
            "metadata": {
                "content": [{"type": "text", "text": "A kitten --ratio 16:9 --dur 6 --rs 720p"}],
                "return_last_frame": True,
                "callback_url": "https://your-domain.com/callback",
            },
        },
        SEEDANCE_ID,
    ),
    (
        _seedance(
            "doubao-seedance-1-5-pro-251215-noAudio",
            "Static to motion --ratio 9:16 --dur 8 --rs 480p --wm false --seed 12345",
            (IMG, "first_frame"),
            (IMG2, "last_frame"),
        ),
        SEEDANCE_ID,
    ),
    (
        _seedance("wan2-1-14b-flf2v-250417", "Morph", (IMG, "first_frame"), (IMG2, "last_frame")),
        SEEDANCE_ID,
    ),
]


@pytest.mark.parametrize("body", SORA_BODIES)
async def test_sora_submit_query_download(
    sim: Simulator, client: httpx2.AsyncClient, body: dict[str, Any]
) -> None:
    task_id = await submit(client, body)
    assert SORA_ID.fullmatch(task_id)
    assert sim.tasks[task_id].body == body
    assert await query(client, task_id) == {"task_id": task_id, "status": "queued", "format": "mp4"}
    finish(sim)
    done = await query(client, task_id)
    assert done == {"task_id": task_id, "status": "succeeded", "format": "mp4"}  # no url for Sora

    response = await client.get(
        "/v1/video/generations/download", params={"id": task_id}, headers=AUTH
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    payload = response.json()
    assert payload["success"] is True
    assert payload["generation_id"] == payload["task_id"] == task_id
    assert payload["format"] == "mp4"
    video = base64.b64decode(payload["base64"], validate=True)
    assert len(video) == payload["size"] == media.sample_size()
    assert video[4:8] == b"ftyp"
    assert video == sample_mp4()
    assert payload["data_url"] == "data:video/mp4;base64," + payload["base64"]
    assert list(payload) == [
        "success",
        "generation_id",
        "task_id",
        "format",
        "size",
        "base64",
        "data_url",
    ]


@pytest.mark.parametrize(("body", "id_shape"), NON_SORA_BODIES)
async def test_non_sora_submit_query_and_signed_url(
    sim: Simulator, client: httpx2.AsyncClient, body: dict[str, Any], id_shape: re.Pattern[str]
) -> None:
    task_id = await submit(client, body)
    assert id_shape.fullmatch(task_id), task_id
    assert (await query(client, task_id))["status"] == "queued"
    finish(sim)
    done = await query(client, task_id)
    assert done["status"] == "succeeded"
    assert set(done) == {"task_id", "status", "format", "url"}
    url = done["url"]
    assert url.startswith(f"{BASE}/files/{task_id}.mp4?Expires=")
    assert "&Signature=" in url

    # the file link is fetched without the API key, like any signed object-store URL
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == media.sample_size()
    assert response.content == sample_mp4()

    head = await client.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(media.sample_size())

    refused = await client.get(
        "/v1/video/generations/download", params={"id": task_id}, headers=AUTH
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "download_not_supported"


async def test_url_uses_the_request_base_url_or_the_configured_one() -> None:
    sim = frozen_sim()
    async with make_client(sim) as c:
        c.base_url = httpx2.URL("http://127.0.0.1:9999")
        task_id = await submit(c, {"model": "wan2.5-t2v-preview", "prompt": "x"})
        finish(sim)
        assert (await query(c, task_id))["url"].startswith("http://127.0.0.1:9999/files/")
    sim = frozen_sim(public_base_url="https://cdn.example.invalid/")
    async with make_client(sim) as c:
        task_id = await submit(c, {"model": "wan2.5-t2v-preview", "prompt": "x"})
        finish(sim)
        url = (await query(c, task_id))["url"]
        assert url.startswith(f"https://cdn.example.invalid/files/{task_id}.mp4?")
        assert (await c.get(url)).status_code == 200  # same app behind the transport


async def test_streaming_transport_happy_path_matches(sim: Simulator) -> None:
    async with make_client(sim, streaming=True) as c:
        sora = await submit(c, {"model": "sora-2", "prompt": "x [size=100k]"})
        veo = await submit(c, {"model": "veo-3.0-generate-preview", "prompt": "x [size=1m]"})
        finish(sim)
        download = await c.get("/v1/video/generations/download", params={"id": sora}, headers=AUTH)
        video = base64.b64decode(download.json()["base64"], validate=True)
        assert len(video) == 100 * 1024 == download.json()["size"]
        assert video == media.build_mp4(100 * 1024)
        response = await c.get((await query(c, veo))["url"])
        assert response.content == media.build_mp4(1024 * 1024)


# --- authentication --------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": ""}, "missing_api_key"),
        ({"Authorization": "Basic c2stc2VjcmV0LXZhbHVl"}, "invalid_api_key"),
        ({"Authorization": "Bearer"}, "invalid_api_key"),
        ({"Authorization": "Bearer pk-secret-value-42"}, "invalid_api_key"),
        ({"Authorization": "sk-secret-value-42"}, "invalid_api_key"),
    ],
)
async def test_api_routes_need_a_bearer_sk_key(
    sim: Simulator, client: httpx2.AsyncClient, headers: dict[str, str], code: str
) -> None:
    requests = [
        client.build_request(
            "POST", "/v1/video/generations", json={"model": "sora-2", "prompt": "x"}
        ),
        client.build_request("GET", "/v1/video/generations/video_abc"),
        client.build_request("GET", "/v1/video/generations/download?id=video_abc"),
    ]
    for request in requests:
        request.headers.update(headers)
        response = await client.send(request)
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == code
        assert error["type"] == "invalid_request_error"
        assert "secret-value" not in response.text
        assert "c2stc2VjcmV0" not in response.text
    assert sim.tasks == {}


async def test_only_the_accepted_keys_when_a_set_is_configured() -> None:
    sim = frozen_sim(api_keys=frozenset({"sk-good"}))
    async with make_client(sim) as c:
        body = {"model": "sora-2", "prompt": "x"}
        bad = await c.post(
            "/v1/video/generations", json=body, headers={"Authorization": "Bearer sk-other-secret"}
        )
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_api_key"
        assert "sk-other-secret" not in bad.text
        good = await c.post(
            "/v1/video/generations", json=body, headers={"Authorization": "bearer sk-good"}
        )
        assert good.status_code == 200
    with pytest.raises(ValueError, match="sk-"):
        SimulatorConfig(api_keys=frozenset({"not-sk"}))


# --- request validation ----------------------------------------------------------

BAD_BODIES: list[tuple[Any, str, str | None]] = [
    # (body, error code, error param)
    ({"prompt": "x"}, "missing_required_parameter", "model"),
    ({"model": 7, "prompt": "x"}, "invalid_type", "model"),
    ({"model": "sora-3", "prompt": "x"}, "model_not_found", "model"),
    (["sora-2"], "invalid_request_body", None),
    # Sora
    ({"model": "sora-2"}, "missing_required_parameter", "prompt"),
    ({"model": "sora-2", "prompt": "  "}, "invalid_value", "prompt"),
    ({"model": "sora-2", "prompt": "x", "seconds": 4}, "invalid_type", "seconds"),
    ({"model": "sora-2", "prompt": "x", "seconds": "5"}, "invalid_value", "seconds"),
    ({"model": "sora-2", "prompt": "x", "size": "1920x1080"}, "invalid_value", "size"),
    ({"model": "sora-2", "prompt": "x", "size": "720*1280"}, "invalid_value", "size"),
    ({"model": "sora-2", "prompt": "x", "duration": 4}, "unknown_parameter", "duration"),
    ({"model": "sora-2", "prompt": "x", "width": 720}, "missing_required_parameter", "height"),
    (
        {"model": "sora-2", "prompt": "x", "remix_from_video_id": "69095b4ce"},
        "invalid_value",
        "remix_from_video_id",
    ),
    (
        {"model": "sora-2", "prompt": "x", "input_reference": data_url(png(100, 100))},
        "invalid_value",
        "input_reference",
    ),
    (
        {
            "model": "sora-2",
            "prompt": "x",
            "size": "1280x720",
            "input_reference": data_url(png(720, 1280)),
        },
        "invalid_value",
        "input_reference",
    ),
    (
        {"model": "sora-2", "prompt": "x", "input_reference": "/home/me/cat.png"},
        "invalid_image",
        "input_reference",
    ),
    (
        {"model": "sora-2", "prompt": "x", "input_reference": data_url(b"not an image")},
        "invalid_image",
        "input_reference",
    ),
    (
        {"model": "sora-2", "prompt": "x", "input_reference": "data:image/png;base64,@@@"},
        "invalid_image",
        "input_reference",
    ),
    (
        {"model": "sora-2", "prompt": "x", "input_reference": data_url(png(8, 8), "image/jpeg")},
        "invalid_image",
        "input_reference",
    ),
    (
        {"model": "sora-2", "prompt": "x", "input_reference": data_url(b"GIF89a", "image/gif")},
        "invalid_image",
        "input_reference",
    ),
    # Veo
    (
        {"model": "veo-3.0-generate-preview", "durationSeconds": 8},
        "missing_required_parameter",
        "prompt",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "durationSeconds": "8"},
        "invalid_type",
        "durationSeconds",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "durationSeconds": 5},
        "invalid_value",
        "durationSeconds",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "aspectRatio": "1:1"},
        "invalid_value",
        "aspectRatio",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "resolution": "4k"},
        "invalid_value",
        "resolution",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "generateAudio": "true"},
        "invalid_type",
        "generateAudio",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "personGeneration": "everyone"},
        "invalid_value",
        "personGeneration",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "sampleCount": 5},
        "invalid_value",
        "sampleCount",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "seed": True},
        "invalid_type",
        "seed",
    ),
    (
        {"model": "veo-3.1-generate-preview", "prompt": "x", "duration_seconds": 8},
        "unknown_parameter",
        "duration_seconds",
    ),
    (
        {"model": "veo-3.0-fast-generate-001", "prompt": "x", "image": IMG, "lastFrame": IMG2},
        "unsupported_parameter",
        "lastFrame",
    ),
    (
        {"model": "veo-3.1-fast-generate-preview", "prompt": "x", "lastFrame": IMG2},
        "invalid_value",
        "image",
    ),
    # Wan
    (
        {"model": "wan2.5-t2v-preview", "prompt": "x", "duration": 6},
        "invalid_value",
        "duration",
    ),
    (
        {"model": "wan2.5-t2v-preview", "prompt": "x", "size": "1280x720"},
        "invalid_value",
        "size",
    ),
    (
        {"model": "wan2.5-t2v-preview", "prompt": "x", "image": IMG},
        "unsupported_parameter",
        "image",
    ),
    ({"model": "wan2.5-i2v-preview", "prompt": "x"}, "missing_required_parameter", "image"),
    (
        {"model": "wan2.5-i2v-preview", "prompt": "x", "image": IMG, "size": "1280*720"},
        "unsupported_parameter",
        "size",
    ),
    (
        {"model": "wan2.5-i2v-preview", "prompt": "x", "image": IMG, "resolution": "4k"},
        "invalid_value",
        "resolution",
    ),
    ({"model": "wan2.5-t2v-preview", "prompt": "x", "seed": -1}, "invalid_value", "seed"),
    (
        {"model": "wan2.5-t2v-preview", "prompt": "x", "audio_url": "http://a.example/x.mp3"},
        "invalid_audio",
        "audio_url",
    ),
    (
        {"model": "wan2.5-t2v-preview", "prompt": "x", "smart_rewrite": 1},
        "invalid_type",
        "smart_rewrite",
    ),
    # Seedance family
    (
        {"model": "doubao-seedance-1-0-pro-250528", "prompt": "x"},
        "missing_required_parameter",
        "metadata",
    ),
    (
        {"model": "doubao-seedance-1-0-pro-250528", "metadata": {"content": []}},
        "missing_required_parameter",
        "metadata.content[0]",
    ),
    (
        {
            "model": "doubao-seedance-1-0-pro-250528",
            "metadata": {"content": [{"type": "image_url", "image_url": {"url": IMG}}]},
        },
        "invalid_value",
        "metadata.content[0]",
    ),
    (
        {"model": "doubao-seedance-1-0-pro-250528", "metadata": {"content": "x"}},
        "invalid_type",
        "metadata.content",
    ),
    (
        {
            "model": "doubao-seedance-1-0-pro-250528",
            "metadata": {"content": [{"type": "text", "text": "x"}], "duration": 5},
        },
        "unknown_parameter",
        "metadata.duration",
    ),
    (
        {
            "model": "doubao-seedance-1-0-pro-250528",
            "duration": 5,
            "metadata": {"content": [{"type": "text", "text": "x"}]},
        },
        "unknown_parameter",
        "duration",
    ),
    (
        {
            "model": "doubao-seedance-1-5-pro-251215",
            "metadata": {
                "content": [{"type": "text", "text": "x"}],
                "callback_url": "http://insecure.example/cb",
            },
        },
        "invalid_value",
        "metadata.callback_url",
    ),
    (
        _seedance("doubao-seedance-1-0-lite-t2v-250428", "x", (IMG, None)),
        "unsupported_parameter",
        "metadata.content",
    ),
    (
        _seedance("doubao-seedance-1-0-lite-t2v-250428", "x --ratio adaptive"),
        "invalid_value",
        "--ratio",
    ),
    (_seedance("doubao-seedance-1-0-pro-250528", "x --dur 20"), "invalid_value", "--dur"),
    (_seedance("doubao-seedance-1-0-pro-250528", "x --dur five"), "invalid_value", "--dur"),
    (_seedance("doubao-seedance-1-5-pro-251215", "x --rs 1080p"), "invalid_value", "--rs"),
    (_seedance("doubao-seedance-1-5-pro-251215", "x --duration 3"), "invalid_value", "--duration"),
    (_seedance("doubao-seedance-1-0-pro-250528", "x --wm yes"), "invalid_value", "--wm"),
    (
        _seedance("doubao-seedance-1-0-pro-250528", "x --cf true"),
        "unsupported_parameter",
        "--cf",
    ),
    (
        _seedance("doubao-seedance-1-0-pro-250528", "x --quality high"),
        "unknown_parameter",
        "metadata.content[0].text",
    ),
    (
        _seedance("doubao-seedance-1-0-pro-250528", "x --dur"),
        "invalid_value",
        "metadata.content[0].text",
    ),
    (
        _seedance(
            "doubao-seedance-1-0-lite-i2v-250428", "x", (IMG, None), (IMG2, None), (IMG, None)
        ),
        "invalid_value",
        "metadata.content",
    ),
    (
        _seedance("doubao-seedance-1-0-lite-i2v-250428", "x", (IMG, "last_frame")),
        "invalid_value",
        "metadata.content[1].role",
    ),
    (
        _seedance("doubao-seedance-1-0-lite-i2v-250428", "x", (IMG, "middle_frame")),
        "invalid_value",
        "metadata.content[1].role",
    ),
    (
        _seedance(
            "doubao-seedance-1-0-lite-i2v-250428",
            "x",
            ("https://example.com/a.png", "reference_image"),
            (IMG, "first_frame"),
        ),
        "invalid_value",
        "metadata.content",
    ),
    (
        _seedance(
            "doubao-seedance-1-0-lite-i2v-250428",
            "x --rs 1080p",
            ("https://example.com/a.png", "reference_image"),
        ),
        "invalid_value",
        "--rs",
    ),
    (
        _seedance("doubao-seedance-1-0-lite-i2v-250428", "x"),
        "missing_required_parameter",
        "metadata.content",
    ),
    (
        _seedance(
            "doubao-seedance-1-0-pro-250528", "x", (IMG, "first_frame"), (IMG2, "last_frame")
        ),
        "unsupported_parameter",
        "metadata.content",
    ),
    (
        _seedance("wan2-1-14b-flf2v-250417", "x", (IMG, None)),
        "unsupported_parameter",
        "metadata.content",
    ),
    (
        _seedance("doubao-seedance-1-0-pro-250528", "x", ("ftp://example.com/a.png", None)),
        "invalid_image",
        "metadata.content[1].image_url.url",
    ),
]


@pytest.mark.parametrize(("body", "code", "param"), BAD_BODIES)
async def test_gateway_refuses_bad_bodies(
    sim: Simulator, client: httpx2.AsyncClient, body: Any, code: str, param: str | None
) -> None:
    response = await client.post("/v1/video/generations", json=body, headers=AUTH)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code, error
    assert error["param"] == param, error
    assert error["message"]
    assert sim.tasks == {}
    assert sim.calls["submit"] == 1


async def test_invalid_json_and_messages_name_valid_values(
    sim: Simulator, client: httpx2.AsyncClient
) -> None:
    response = await client.post(
        "/v1/video/generations",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    response = await client.post(
        "/v1/video/generations",
        json={"model": "sora-2", "prompt": "x", "seconds": "5"},
        headers=AUTH,
    )
    assert "'4', '8' and '12'" in response.json()["error"]["message"]
    response = await client.post(
        "/v1/video/generations",
        json={"model": "wan2.5-t2v-preview", "prompt": "x", "duration": 7},
        headers=AUTH,
    )
    assert "5 and 10" in response.json()["error"]["message"]


async def test_lenient_mode_lets_unknown_fields_through() -> None:
    sim = frozen_sim(strict_fields=False)
    async with make_client(sim) as c:
        await submit(c, {"model": "sora-2", "prompt": "x", "duration": 4, "extra": True})
        await submit(c, _seedance("doubao-seedance-1-0-pro-250528", "x --quality high"))
    assert len(sim.tasks) == 2


# --- time: the task state machine ------------------------------------------------


async def test_status_follows_the_injected_clock() -> None:
    now = [1000.0]

    def clock() -> float:
        return now[0]

    sim = Simulator(SimulatorConfig(queued_seconds=2, processing_seconds=3), clock=clock)
    async with make_client(sim) as c:
        task_id = await submit(c, {"model": "sora-2", "prompt": "x"})
        download_id = {"id": task_id}

        async def status() -> str:
            result: str = (await query(c, task_id))["status"]
            return result

        async def download_code() -> str:
            r = await c.get("/v1/video/generations/download", params=download_id, headers=AUTH)
            assert r.status_code == 400
            code: str = r.json()["error"]["code"]
            return code

        assert await status() == "queued"
        assert await download_code() == "task_queued"
        now[0] += 1.999
        assert await status() == "queued"
        now[0] += 0.001
        assert await status() == "in_progress"
        assert await download_code() == "task_in_progress"
        sim.advance(2.999)  # advance() adds to whatever the clock says
        assert await status() == "in_progress"
        sim.advance(0.001)
        assert await status() == "succeeded"
        assert sim.status(task_id) == "succeeded"
        now[0] += 10_000
        assert await status() == "succeeded"
    with pytest.raises(ValueError, match="forward"):
        sim.advance(-1)


async def test_unknown_task_is_404(client: httpx2.AsyncClient) -> None:
    response = await client.get("/v1/video/generations/video_nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "task_not_found"
    response = await client.get(
        "/v1/video/generations/download", params={"id": "video_nope"}, headers=AUTH
    )
    assert response.status_code == 404
    response = await client.get("/v1/video/generations/download", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "id"


async def test_unknown_route_and_method(client: httpx2.AsyncClient) -> None:
    response = await client.get("/v1/images/generations", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = await client.delete("/v1/video/generations/video_x", headers=AUTH)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


# --- failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "has_error", "has_metadata"),
    [("error", True, False), ("metadata", False, True), ("both", True, True)],
)
async def test_failure_marker_and_failure_styles(
    style: str, has_error: bool, has_metadata: bool
) -> None:
    sim = frozen_sim(failure_style=style)
    async with make_client(sim) as c:
        failing = await submit(c, {"model": "veo-3.0-generate-preview", "prompt": "a [fail] cat"})
        fine = await submit(c, {"model": "veo-3.0-generate-preview", "prompt": "a cat"})
        sim.advance(sim.config.queued_seconds)
        assert (await query(c, failing))["status"] == "in_progress"
        finish(sim)
        result = await query(c, failing)
        assert result["status"] == "failed"
        assert "url" not in result
        message = "Prompt contains inappropriate content"
        assert ("error" in result) is has_error
        if has_error:
            assert result["error"] == {"code": 400, "message": message}
        assert ("metadata" in result) is has_metadata
        if has_metadata:
            assert result["metadata"]["output"]["message"] == message
        assert (await query(c, fine))["status"] == "succeeded"


async def test_failure_marker_is_configurable_and_works_in_seedance_text() -> None:
    sim = frozen_sim(fail_marker="#boom", failure_code="content_policy", failure_message="Nope")
    async with make_client(sim) as c:
        task_id = await submit(c, _seedance("doubao-seedance-1-0-pro-250528", "x #boom --dur 5"))
        sora = await submit(c, {"model": "sora-2", "prompt": "#boom"})
        ok = await submit(c, {"model": "sora-2", "prompt": "[fail] is not the marker now"})
        finish(sim)
        assert (await query(c, task_id))["error"] == {"code": "content_policy", "message": "Nope"}
        assert (await query(c, ok))["status"] == "succeeded"
        response = await c.get("/v1/video/generations/download", params={"id": sora}, headers=AUTH)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "task_failed"


# --- sizes ---------------------------------------------------------------------------


async def test_video_size_from_config_and_from_prompt_marker() -> None:
    size = 200_000
    sim = frozen_sim(video_size_bytes=size)
    async with make_client(sim) as c:
        plain = await submit(c, {"model": "sora-2", "prompt": "x"})
        marked = await submit(c, {"model": "sora-2", "prompt": "x [size=64k]"})
        tiny = await submit(c, {"model": "sora-2", "prompt": "x [size=10]"})
        finish(sim)
        for task_id, expected in ((plain, size), (marked, 65536), (tiny, media.sample_size())):
            r = await c.get("/v1/video/generations/download", params={"id": task_id}, headers=AUTH)
            payload = r.json()
            assert payload["size"] == expected
            assert len(base64.b64decode(payload["base64"])) == expected
    sim = frozen_sim(size_marker=False)
    async with make_client(sim) as c:
        task_id = await submit(c, {"model": "sora-2", "prompt": "x [size=64k]"})
    assert sim.tasks[task_id].video_size == media.sample_size()


# --- signed URLs ------------------------------------------------------------------------


async def _finished_url(sim: Simulator, c: httpx2.AsyncClient) -> tuple[str, str]:
    task_id = await submit(c, {"model": "wan2.5-t2v-preview", "prompt": "x"})
    finish(sim)
    url: str = (await query(c, task_id))["url"]
    return task_id, url


async def test_signed_url_expires_after_the_ttl() -> None:
    sim = frozen_sim(url_ttl_seconds=3600)
    async with make_client(sim) as c:
        _, url = await _finished_url(sim, c)
        expires = int(httpx2.URL(url).params["Expires"])
        assert expires == int(sim.unix_time() + 3600)
        sim.advance(3599)
        assert (await c.get(url)).status_code == 200
        sim.advance(2)
        response = await c.get(url)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/xml")
        assert "<Code>AccessDenied</Code>" in response.text
        assert "Request has expired" in response.text


async def test_completion_signed_links_stay_expired_but_query_signed_ones_renew() -> None:
    sim = frozen_sim(url_ttl_seconds=60)
    async with make_client(sim) as c:
        task_id, url = await _finished_url(sim, c)
        sim.advance(61)
        assert (await query(c, task_id))["url"] == url  # the same, dead link
        assert (await c.get(url)).status_code == 403
    sim = frozen_sim(url_ttl_seconds=60, url_signed_at="query")
    async with make_client(sim) as c:
        task_id, url = await _finished_url(sim, c)
        sim.advance(61)
        assert (await c.get(url)).status_code == 403
        fresh = (await query(c, task_id))["url"]
        assert fresh != url
        assert (await c.get(fresh)).status_code == 200


async def test_default_ttl_is_a_day(sim: Simulator, client: httpx2.AsyncClient) -> None:
    _, url = await _finished_url(sim, client)
    assert int(httpx2.URL(url).params["Expires"]) == int(sim.unix_time() + 24 * 3600)


async def test_signed_url_refusals(sim: Simulator, client: httpx2.AsyncClient) -> None:
    task_id, url = await _finished_url(sim, client)
    parsed = httpx2.URL(url)
    expires = parsed.params["Expires"]
    signature = parsed.params["Signature"]
    path = f"/files/{task_id}.mp4"

    async def get(params: dict[str, str], headers: dict[str, str] | None = None) -> httpx2.Response:
        return await client.get(path, params=params, headers=headers)

    tampered = await get({"Expires": str(int(expires) + 86400), "Signature": signature})
    assert tampered.status_code == 403
    assert "<Code>SignatureDoesNotMatch</Code>" in tampered.text
    # change the first character, whatever it is (a fixed "A" matched 1 time in 64)
    first = "B" if signature.startswith("A") else "A"
    forged = await get({"Expires": expires, "Signature": first + signature[1:]})
    assert forged.status_code == 403
    assert (await get({"Expires": "soon", "Signature": signature})).status_code == 403
    missing = await get({})
    assert missing.status_code == 403
    assert "<Code>AccessDenied</Code>" in missing.text
    other = await client.get(
        f"/files/{task_id}x.mp4", params={"Expires": expires, "Signature": signature}
    )
    assert other.status_code == 403
    leaked = await get({"Expires": expires, "Signature": signature}, headers=AUTH)
    assert leaked.status_code == 400
    assert "<Code>InvalidArgument</Code>" in leaked.text
    assert KEY not in leaked.text
    assert (await get({"Expires": expires, "Signature": signature})).status_code == 200
    # a validly signed link to something that is not there
    sora = await submit(client, {"model": "sora-2", "prompt": "x"})
    finish(sim)
    missing_key = await client.get(sim.signed_url(sim.tasks[sora], BASE))
    assert missing_key.status_code == 404
    assert "<Code>NoSuchKey</Code>" in missing_key.text


async def test_file_route_can_allow_an_authorization_header() -> None:
    sim = frozen_sim(reject_authorization_on_files=False)
    async with make_client(sim) as c:
        _, url = await _finished_url(sim, c)
        assert (await c.get(url, headers=AUTH)).status_code == 200


async def test_signatures_do_not_survive_a_new_simulator() -> None:
    first = frozen_sim()
    async with make_client(first) as c:
        _, url = await _finished_url(first, c)
    second = frozen_sim()
    async with make_client(second) as c:
        assert (await c.get(url)).status_code == 403
    keyed = [frozen_sim(signing_key=b"k" * 32) for _ in range(2)]
    async with make_client(keyed[0]) as c:
        task_id, url = await _finished_url(keyed[0], c)
    assert keyed[1]._signature(task_id, 123) == keyed[0]._signature(task_id, 123)


# --- counters, control routes, construction ---------------------------------------------


async def test_calls_are_counted_per_endpoint(sim: Simulator, client: httpx2.AsyncClient) -> None:
    _, url = await _finished_url(sim, client)
    await client.get(url)
    await client.get("/v1/video/generations/download", params={"id": "video_x"}, headers=AUTH)
    await client.post("/v1/video/generations", json={})  # no key: still counted
    assert sim.calls == {"submit": 2, "query": 1, "download": 1, "file": 1}
    assert sim.calls["nothing"] == 0
    sim.reset()
    assert sim.calls == {}
    assert sim.tasks == {}


async def test_control_routes(sim: Simulator, client: httpx2.AsyncClient) -> None:
    task_id = await submit(client, {"model": "sora-2", "prompt": "x"})
    state = (await client.get("/_simulator/state")).json()
    assert state["calls"] == {"submit": 1}
    assert state["tasks"][0]["task_id"] == task_id
    assert state["tasks"][0]["status"] == "queued"

    added = await client.post(
        "/_simulator/faults",
        json={"endpoint": "query", "kind": "server_error", "times": 2, "params": {"status": 503}},
    )
    assert added.status_code == 201
    assert added.json()["fault"]["remaining"] == 2
    assert (await client.get(f"/v1/video/generations/{task_id}", headers=AUTH)).status_code == 503
    state = (await client.get("/_simulator/state")).json()
    assert state["faults"][0]["remaining"] == 1
    cleared = await client.delete("/_simulator/faults", params={"endpoint": "query"})
    assert cleared.json() == {"faults": []}
    bad = await client.post("/_simulator/faults", json={"endpoint": "file", "kind": "bad_base64"})
    assert bad.status_code == 400
    assert "applies to" in bad.json()["error"]["message"]
    bad = await client.post("/_simulator/faults", json={"endpoint": "x", "kind": "truncated"})
    assert bad.status_code == 400

    advanced = await client.post("/_simulator/advance", json={"seconds": 60})
    assert advanced.json()["now"] == 60
    assert (await client.post("/_simulator/advance", json={"seconds": "a"})).status_code == 400
    assert (await client.post("/_simulator/advance", json={"seconds": -1})).status_code == 400
    assert (await query(client, task_id))["status"] == "succeeded"
    assert (await client.post("/_simulator/reset")).json() == {"reset": True}
    assert sim.tasks == {}


async def test_control_routes_can_be_switched_off() -> None:
    sim = frozen_sim(control_routes=False)
    async with make_client(sim) as c:
        assert (await c.get("/_simulator/state")).status_code == 404


def test_create_app_exposes_the_simulator() -> None:
    app = create_app(SimulatorConfig(queued_seconds=0), clock=lambda: 5.0)
    assert isinstance(app, Starlette)
    sim = app.state.simulator
    assert isinstance(sim, Simulator)
    assert sim.now() == 5.0
    assert sim.config.queued_seconds == 0
    assert isinstance(create_app().state.simulator, Simulator)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"queued_seconds": -1}, "queued_seconds"),
        ({"chunk_bytes": 1000}, "multiple of 3"),
        ({"chunk_bytes": 0}, "multiple of 3"),
        ({"failure_style": "loud"}, "failure_style"),
        ({"video_size_bytes": 0}, "video_size_bytes"),
        ({"url_signed_at": "never"}, "url_signed_at"),
    ],
)
def test_config_checks_its_knobs(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SimulatorConfig(**bad)


def test_config_repr_hides_keys() -> None:
    text = repr(SimulatorConfig(api_keys=frozenset({"sk-hidden"}), signing_key=b"secret"))
    assert "sk-hidden" not in text
    assert "secret" not in text
