"""SoraBody: the video out of the download endpoint's JSON, streamed (sora_body.py)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from gravitex_mcp.errors import DownloadError, TruncatedDownloadError, VideoIntegrityError
from gravitex_mcp.upstream.sora_body import MAX_SMALL_PART, SoraBody

TASK = "video_1"


def body_of(video: bytes, *, escape_slashes: bool = True, **fields: Any) -> bytes:
    b64 = base64.b64encode(video).decode()
    data = {"success": True, "task_id": TASK, "size": len(video), "base64": b64}
    data |= {"data_url": "data:video/mp4;base64," + b64} | fields
    text = json.dumps(data)
    return (text.replace("/", "\\/") if escape_slashes else text).encode()


def run(body: bytes, piece: int = 4096) -> tuple[bytes, dict[str, Any], SoraBody]:
    out = bytearray()
    parser = SoraBody(out.extend)
    for i in range(0, len(body), piece):
        parser.feed(body[i : i + piece])
    fields = parser.close(task_id=TASK)
    return bytes(out), fields, parser


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 4096, 1 << 20])
@pytest.mark.parametrize("escape_slashes", [True, False])
def test_the_video_comes_out_whole(piece: int, escape_slashes: bool) -> None:
    video = os.urandom(3000 if piece < 10 else 200_000)
    body = body_of(video, escape_slashes=escape_slashes)
    out, fields, parser = run(body, piece)
    assert out == video
    assert parser.decoded == len(video)
    # The two large values are emptied in what is kept and parsed.
    assert fields == {"success": True, "task_id": TASK, "size": len(video), "base64": "",
                      "data_url": ""}  # fmt: skip


def test_memory_stays_bounded_by_a_piece() -> None:
    video = os.urandom(4 << 20)
    _, _, parser = run(body_of(video), piece=65536)
    assert len(parser._small) < 300  # the small fields only, not the 11 MiB body


def test_a_nested_base64_key_is_not_the_video() -> None:
    body = json.dumps({"meta": {"base64": "QUJD"}, "size": 0}).encode()
    with pytest.raises(VideoIntegrityError, match="no 'base64' field"):
        run(body)


def test_a_huge_value_outside_the_two_fields_is_refused() -> None:
    body = json.dumps({"note": "x" * (MAX_SMALL_PART + 10), "base64": ""}).encode()
    with pytest.raises(VideoIntegrityError, match="outside the video"):
        run(body)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b'{"base64": "QUJD", "base64": "QUJD"}', "a second 'base64' field"),
        (b'{"base64": "QQ==QUJD"}', "after the padding"),
        (b'{"base64": "QUJ"}', "left over"),
        (b'{"base64": "QU\\nJD"}', "escape other than"),
        (b'{"base64": "QU JD"}', "strict base64"),
        (b'{"size": 1} trailing', "after the end"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_bad_bodies_are_refused(body: bytes, match: str) -> None:
    with pytest.raises(VideoIntegrityError, match=match) as info:
        run(body, piece=3)
    assert not isinstance(info.value, TruncatedDownloadError)


@pytest.mark.parametrize("cut", [0, 1, 20, 60])
def test_a_body_cut_short_is_truncated(cut: int) -> None:
    body = body_of(b"x" * 30)
    with pytest.raises(TruncatedDownloadError):
        run(body[:cut])


def test_an_upstream_failure_is_a_download_error() -> None:
    with pytest.raises(DownloadError, match="not ready") as info:
        run(b'{"success": false, "error": {"message": "not ready"}}')
    assert not isinstance(info.value, VideoIntegrityError)


def test_another_tasks_video_is_refused() -> None:
    with pytest.raises(VideoIntegrityError, match="another task"):
        run(body_of(b"abc", generation_id="video_2"))


def test_what_the_sink_raises_propagates() -> None:
    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    parser = SoraBody(full)
    with pytest.raises(OSError, match="No space"):
        parser.feed(body_of(b"abc" * 100))
