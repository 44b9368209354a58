"""The server with GRAVITEX_STORAGE_URL: videos, sheets, frames and joins are objects in a
real S3-compatible store (SeaweedFS), under the configured prefix; links are presigned."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import obstore
import pytest
from mcp import Client
from mcp.types import ImageContent, ResourceLink

from gravitex_mcp.settings import load_settings
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.objects import ObjectVideoStore
from tests.conftest import S3Bucket
from tests.server_harness import connected, make_harness, structured, text_of

pytestmark = pytest.mark.slow  # a real SeaweedFS server


def _keys(bucket: S3Bucket) -> set[str]:
    settings = load_settings(bucket.storage_env())
    assert settings.storage is not None
    store = ObjectVideoStore(settings.storage)
    try:
        assert store.store is not None
        return {m["path"] for batch in obstore.list(store.store) for m in batch}
    finally:
        store.close()


async def _made(client: Client, seconds: int) -> dict[str, Any]:
    return structured(
        await client.call_tool(
            "generate_video",
            {
                "model": "veo-3.1-generate-preview",
                "prompt": f"a {seconds} s shot",
                "duration": seconds,
                "aspect_ratio": "16:9",
                "wait_seconds": 60,
                "download": True,
            },
        )
    )


async def test_saves_sheets_frames_and_joins_are_objects_under_the_prefix(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    storage = load_settings(s3_bucket.storage_env("team/a")).storage
    h = make_harness(tmp_path, storage=storage)
    base = f"s3://{s3_bucket.bucket}/team/a/"
    async with connected(h) as client:
        first = await _made(client, 4)
        second = await _made(client, 8)
        assert first["uri"].startswith(base)
        assert first["path"] == first["uri"]  # no local path: the URI stands in for it
        preview = first["preview"]
        assert preview["uri"].startswith(base)
        assert preview["uri"].endswith(".contact.jpg")
        url = first["media_url"]
        assert "X-Amz-Signature=" in url
        # Reused: checked through the object store, not downloaded again.
        reused = await client.call_tool("download_video", {"task_id": first["task_id"]})
        again = structured(reused)
        # The contact sheet is read from the store and shown; not over HTTP, the link is
        # the object's URI.
        assert any(isinstance(block, ImageContent) for block in reused.content)
        [link] = [block for block in reused.content if isinstance(block, ResourceLink)]
        assert str(link.uri) == first["uri"]
        assert again["reused"] is True
        assert again["uri"] == first["uri"]
        frames = structured(
            await client.call_tool("extract_frames", {"task_id": first["task_id"], "at": ["first"]})
        )
        frame = frames["frames"][0]["uri"]
        assert frame.startswith(base)
        # A saved frame's URI starts a video, as a saved frame's path does.
        dry = {"model": "veo-3.1-fast-generate-preview", "prompt": "on", "dry_run": True}
        started = structured(await client.call_tool("generate_video", {**dry, "image": frame}))
        assert started["payload"]["image"].startswith("data:image/png;base64,")
        for other in [
            frame.replace("/team/a/", "/team/"),  # outside the prefix
            frame.replace(s3_bucket.bucket, "another-bucket"),
            f"{base}missing.png",
        ]:
            refused = await client.call_tool("generate_video", {**dry, "image": other})
            assert refused.is_error, other
            assert "image" in text_of(refused)
        joined = structured(
            await client.call_tool(
                "join_videos", {"task_ids": [first["task_id"], second["task_id"]]}
            )
        )
        assert joined["uri"].startswith(base)
        assert joined["probe"]["duration_seconds"] == pytest.approx(12.0, abs=0.1)
    # The journal names the object by its URI, and the identity the reuse checked it by.
    journal = Journal.open(h.settings.state_dir)
    try:
        record = await journal.get(first["task_id"])
    finally:
        journal.close()
    assert record is not None
    assert record.saved_path == first["uri"]
    assert (record.saved_identity or "").startswith("0:0:")
    async with httpx2.AsyncClient() as http:
        ranged = await http.get(url, headers={"Range": "bytes=0-7"})
    assert ranged.status_code == 206
    assert ranged.content[4:8] == b"ftyp"
    keys = _keys(s3_bucket)
    assert keys
    assert all(k.startswith("team/a/") for k in keys), keys
    assert not any("/_uploads/" in k for k in keys), keys
    # Nothing went to the local output folder.
    assert not h.settings.output_dir.exists() or not any(h.settings.output_dir.iterdir())


async def test_storage_down_during_a_save_loses_nothing_and_a_later_call_finishes_it(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    storage = load_settings(s3_bucket.storage_env("team")).storage
    assert storage is not None
    quick = replace(storage, max_retries=1, retry_timeout=timedelta(seconds=3))
    h = make_harness(tmp_path, storage=quick)
    async with connected(h) as client:
        submitted = structured(
            await client.call_tool(
                "generate_video",
                {"model": "veo-3.1-generate-preview", "prompt": "a shot", "duration": 4},
            )
        )
        task_id = submitted["task_id"]
        h.sim.advance(120)
        s3_bucket.server.stop()
        try:
            failed = await client.call_tool("download_video", {"task_id": task_id})
        finally:
            s3_bucket.server.start()
        assert failed.is_error
        assert "storage unreachable; the task stays downloadable; call download_video again" in (
            text_of(failed)
        )
        assert not {k for k in _keys(s3_bucket) if not k.startswith("team/_uploads/")}
        saved = structured(await client.call_tool("download_video", {"task_id": task_id}))
    assert saved["uri"].startswith(f"s3://{s3_bucket.bucket}/team/")
    assert saved["reused"] is False
