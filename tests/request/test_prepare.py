"""prepare_request: validation + media resolution + translation, problems reported together."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from gravitex_mcp.errors import InvalidArgumentsError
from gravitex_mcp.request.arguments import VideoArguments
from gravitex_mcp.request.prepare import PreparedRequest, prepare_request

SORA = "sora-2"
VEO_FAST = "veo-3.1-fast-generate-preview"
LITE_I2V = "doubao-seedance-1-0-lite-i2v-250428"
LITE_T2V = "doubao-seedance-1-0-lite-t2v-250428"
WAN_I2V = "wan2.5-i2v-preview"


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG: signature and IHDR chunk (all a size check reads)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def data_url(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_header(width, height)).decode()


def prepare(tmp_path: Path | None = None, **kwargs: Any) -> PreparedRequest:
    kwargs.setdefault("prompt", "A cat on a sofa")
    dirs = [tmp_path] if tmp_path is not None else []
    return prepare_request(VideoArguments(**kwargs), input_dirs=dirs)


def refused(tmp_path: Path | None = None, **kwargs: Any) -> InvalidArgumentsError:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(tmp_path, **kwargs)
    return info.value


def test_https_image_travels_untouched_and_is_journaled_without_its_query() -> None:
    url = "https://example.com/start.png?sig=abc"
    prepared = prepare(model=VEO_FAST, image=url, duration=4)
    assert prepared.spec.id == VEO_FAST
    assert prepared.body == {
        "model": VEO_FAST,
        "prompt": "A cat on a sofa",
        "durationSeconds": 4,
        "image": url,
    }
    assert prepared.journal_arguments == {
        "model": VEO_FAST,
        "prompt": "A cat on a sofa",
        "duration": 4,
        "image": "https://example.com/start.png",  # a signature stays out of the journal
    }
    assert prepared.notes == ()


@pytest.mark.parametrize(
    ("callback", "fragment"),
    [
        ("https://127.0.0.1/cb", "loopback"),
        ("https://user:pw@example.com/cb", "credentials"),
        ("https://10.0.0.5/cb", "private"),
    ],
)
def test_callback_url_must_be_public_and_without_login(callback: str, fragment: str) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare(model="doubao-seedance-1-5-pro-251215", callback_url=callback)
    problems = {p.field: p.message for p in info.value.problems}
    assert fragment in problems["callback_url"]


def test_callback_url_is_journaled_without_its_token() -> None:
    prepared = prepare(
        model="doubao-seedance-1-5-pro-251215",
        callback_url="https://example.com/cb?token=s3cret",
    )
    assert prepared.body["metadata"]["callback_url"] == "https://example.com/cb?token=s3cret"
    assert prepared.journal_arguments["callback_url"] == "https://example.com/cb"


def test_data_url_travels_but_the_journal_keeps_only_a_digest() -> None:
    image = data_url(640, 480)
    prepared = prepare(model=WAN_I2V, image=image)
    assert prepared.body["image"] == image
    journal = prepared.journal_arguments["image"]
    assert journal.startswith("sha256:")
    assert "image/png" in journal
    assert "base64" not in json.dumps(prepared.journal_arguments)


def test_local_file_travels_as_a_data_url(tmp_path: Path) -> None:
    (tmp_path / "first.png").write_bytes(png_header(720, 1280))
    prepared = prepare(tmp_path, model=SORA, image="first.png", duration=4)
    assert prepared.body["input_reference"].startswith("data:image/png;base64,")
    assert prepared.journal_arguments["image"].startswith("sha256:")
    assert "size" not in prepared.body  # the default size matched; nothing invented


def test_reference_images_are_resolved_in_order_and_journaled_as_a_list() -> None:
    refs = ["https://example.com/1.png", data_url(64, 64)]
    prepared = prepare(model=LITE_I2V, prompt="[图1] and [图2]", reference_images=refs)
    items = prepared.body["metadata"]["content"][1:]
    assert [item["image_url"]["url"] for item in items] == refs
    assert [item["role"] for item in items] == ["reference_image", "reference_image"]
    journal = prepared.journal_arguments["reference_images"]
    assert journal[0] == refs[0]
    assert journal[1].startswith("sha256:")


# --- Sora: the image must match the request size --------------------------------


def test_sora_image_must_match_the_given_size() -> None:
    error = refused(model=SORA, image=data_url(1280, 720), size="720x1280")
    (problem,) = error.problems
    assert problem.field == "image"
    assert "the image is 1280x720 pixels but the request size is 720x1280" in problem.message
    assert "set size to 1280x720" in problem.message


def test_sora_image_must_match_the_default_size() -> None:
    (problem,) = refused(model=SORA, image=data_url(1280, 720)).problems
    assert "request size is 720x1280 (the default" in problem.message


def test_sora_image_of_an_unsupported_size_names_the_valid_sizes() -> None:
    (problem,) = refused(model=SORA, image=data_url(1024, 1024), aspect_ratio="16:9").problems
    assert "the image is 1024x1024 pixels but the request size is 1280x720" in problem.message
    assert "720x1280, 1280x720" in problem.message


def test_sora_image_matching_the_aspect_ratio_size_passes() -> None:
    prepared = prepare(model=SORA, image=data_url(1280, 720), aspect_ratio="16:9")
    assert prepared.body["size"] == "1280x720"


def test_sora_https_image_size_cannot_be_checked_and_is_not() -> None:
    prepared = prepare(model=SORA, image="https://example.com/any.png", size="1280x720")
    assert prepared.body["input_reference"] == "https://example.com/any.png"


def test_other_families_do_not_check_image_size() -> None:
    prepare(model=VEO_FAST, image=data_url(100, 100), aspect_ratio="16:9")


# --- problems from validation and from media in one error ---------------------------


def test_validation_and_media_problems_come_together() -> None:
    error = refused(
        model=WAN_I2V,
        image="http://example.com/cat.png",
        audio_url="/tmp/music.mp3",
        duration=7,
    )
    assert [p.field for p in error.problems] == ["duration", "image", "audio_url"]
    assert error.model == WAN_I2V
    assert "https" in error.problems[1].message


def test_a_refused_media_argument_is_not_resolved_again() -> None:
    error = refused(model=LITE_T2V, image="http://example.com/cat.png")
    assert [p.field for p in error.problems] == ["image"]
    assert "does not take image" in error.problems[0].message


def test_each_bad_reference_image_is_named_by_index() -> None:
    error = refused(
        model=LITE_I2V,
        reference_images=["https://example.com/ok.png", "ftp://example.com/x.png", "nope.png"],
    )
    assert [p.field for p in error.problems] == ["reference_images[1]", "reference_images[2]"]


def test_unknown_model_and_unreadable_image_together(tmp_path: Path) -> None:
    error = refused(tmp_path, model="sora-3", image="missing.png")
    assert [p.field for p in error.problems] == ["model", "image"]
    assert error.model is None


def test_paths_outside_the_input_dirs_are_refused(tmp_path: Path) -> None:
    inside = tmp_path / "in"
    inside.mkdir()
    (tmp_path / "secret.png").write_bytes(png_header(720, 1280))
    error = refused(inside, model=SORA, image=str(tmp_path / "secret.png"))
    assert [p.field for p in error.problems] == ["image"]


def test_notes_travel_with_the_prepared_request() -> None:
    prepared = prepare(model=VEO_FAST, generate_audio=False)
    assert prepared.body["generateAudio"] is False
    assert len(prepared.notes) == 1
    assert "always include audio" in prepared.notes[0]
