"""The incremental strict base64 decoder of Sora's download body (b64stream.py)."""

from __future__ import annotations

import base64
import json
import os
import random
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from gravitex_mcp.b64stream import (
    MAX_CAPTURE_BYTES,
    MAX_DEPTH,
    SoraDownload,
    SoraDownloadDecoder,
    decode_sora_body,
)
from gravitex_mcp.errors import DownloadError, TruncatedDownloadError, VideoIntegrityError

TASK = "video_69095b4ce0048190893a01510c0c98b0"


def sora_body(
    video: bytes,
    *,
    order: tuple[str, ...] = ("success", "generation_id", "task_id", "format", "size", "base64"),
    data_url: bool = True,
    indent: int | None = None,
    escape_slashes: bool = False,
    **override: Any,
) -> bytes:
    b64 = base64.b64encode(video).decode()
    fields: dict[str, Any] = {
        "success": True,
        "generation_id": TASK,
        "task_id": TASK,
        "format": "mp4",
        "size": len(video),
        "base64": b64,
    }
    fields.update(override)
    obj = {k: fields[k] for k in order if k in fields}
    if data_url:
        obj["data_url"] = "data:video/mp4;base64," + b64
    text = json.dumps(obj, indent=indent)
    if escape_slashes:
        text = text.replace("/", "\\/")  # what PHP's json_encode does by default
    return text.encode()


def decode(body: bytes, cuts: list[int] | None = None) -> tuple[bytes, SoraDownload]:
    out = bytearray()
    decoder = SoraDownloadDecoder(out.extend)
    last = 0
    for cut in [*(cuts or []), len(body)]:
        decoder.feed(body[last:cut])
        last = cut
    result = decoder.close()
    return bytes(out), result


def chunked(body: bytes, size: int) -> list[int]:
    return list(range(size, len(body), size))


def payload(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    return rng.randbytes(n)


# --- byte-exact decoding -------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 1000, (1 << 20) + 7])
def test_sizes_decode_byte_exact(n: int) -> None:
    video = payload(n, seed=n)
    body = sora_body(video)
    got, result = decode(body, chunked(body, 65536))
    assert got == video
    assert result.decoded_size == n
    assert result.body_size == len(body)
    assert result.fields["size"] == n
    result.verify(task_id=TASK)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 1000])
@pytest.mark.parametrize("chunk", [1, 2, 3, 4, 5, 6, 7])
def test_every_chunk_size(n: int, chunk: int) -> None:
    video = payload(n, seed=n)
    body = sora_body(video, escape_slashes=n % 2 == 0)
    got, result = decode(body, chunked(body, chunk))
    assert got == video
    result.verify(task_id=TASK)


def test_split_at_every_offset() -> None:
    video = bytes(range(256))[:53]  # base64 with '+' and '/' in it
    body = sora_body(video, escape_slashes=True, indent=1)
    for cut in range(len(body) + 1):
        got, result = decode(body, [cut])
        assert got == video, cut
        assert result.fields["task_id"] == TASK


def test_split_at_every_pair_of_offsets() -> None:
    video = b"\xfb\xff\xbf-video"  # encodes to '+/+/...'
    body = sora_body(video, escape_slashes=True, data_url=False)
    for a in range(len(body)):
        for b in range(a, len(body)):
            got, _ = decode(body, [a, b])
            assert got == video


def test_random_splits_random_bodies() -> None:
    rng = random.Random(2024)
    for i in range(300):
        video = payload(rng.choice([0, 1, 2, 3, 7, 100, rng.randrange(4000)]), seed=i)
        order = ["success", "task_id", "format", "size", "base64", "generation_id"]
        rng.shuffle(order)
        body = sora_body(
            video,
            order=tuple(order),
            indent=rng.choice([None, 0, 2]),
            escape_slashes=rng.random() < 0.3,
            data_url=rng.random() < 0.8,
        )
        cuts = sorted(rng.sample(range(len(body) + 1), rng.randrange(0, 10)))
        got, result = decode(body, cuts)
        assert got == video
        result.verify(task_id=TASK)


# --- field order, whitespace, escapes, other values -------------------------------------


def test_data_url_before_base64_and_not_captured() -> None:
    video = payload(3000)
    b64 = base64.b64encode(video).decode()
    body = json.dumps(
        {"data_url": "data:video/mp4;base64," + b64, "size": 3000, "base64": b64}
    ).encode()
    got, result = decode(body, chunked(body, 100))
    assert got == video
    assert "data_url" not in result.fields
    assert result.keys == ("data_url", "size", "base64")


def test_base64_first_and_whitespace_everywhere() -> None:
    video = b"hello world!"
    b64 = base64.b64encode(video).decode()
    body = (
        f' \r\n\t{{ \n "base64"\t:\r\n "{b64}" \n,\n "size" : 12 ,"success":true ,'
        f'"format"  :  "mp4"\n}}\n\n '
    ).encode()
    got, result = decode(body, chunked(body, 3))
    assert got == video
    assert result.fields == {"size": 12, "success": True, "format": "mp4"}


def test_unicode_escapes_in_base64_and_keys() -> None:
    video = payload(60)
    b64 = base64.b64encode(video).decode()
    escaped = "".join(f"\\u{ord(c):04x}" if i % 3 == 0 else c for i, c in enumerate(b64))
    body = ('{"base\\u0036\\u0034": "' + escaped + '", "si\\u007ae": 60}').encode()
    for chunk in (1, 2, 5, 7, 64):
        got, result = decode(body, chunked(body, chunk))
        assert got == video
        assert result.fields["size"] == 60


def test_nested_values_and_tricky_strings_are_skipped() -> None:
    video = payload(99)
    obj = {
        "meta": {"a": [1, 2, {"b": '}]"{['}], "c": "\\\\", "d": []},
        "list": [[[]], 'x"y', {"z": None}],
        "note": 'quote " and backslash \\ and brace } ]',
        "empty": "",
        "n": -1.5e3,
        "flags": [True, False, None],
        "base64": base64.b64encode(video).decode(),
        "size": 99,
        "error": {"code": None, "message": "none"},
    }
    body = json.dumps(obj).encode()
    for chunk in (1, 3, 8, 1000):
        got, result = decode(body, chunked(body, chunk))
        assert got == video
        assert result.fields["error"] == {"code": None, "message": "none"}
        assert "meta" not in result.fields


def test_long_keys_and_big_captured_values_are_skipped() -> None:
    video = b"abc"
    body = json.dumps(
        {
            "k" * 1000: "v",
            "message": "m" * (MAX_CAPTURE_BYTES + 10),
            "base64": base64.b64encode(video).decode(),
            "size": 3,
        }
    ).encode()
    got, result = decode(body, chunked(body, 77))
    assert got == video
    assert "message" not in result.fields
    assert result.keys[0] == "<long key>"


def test_memory_stays_bounded_on_a_large_body() -> None:
    size = 6 << 20
    b64 = base64.b64encode(bytes(size))  # zeros: cheap to generate lazily

    def body_chunks() -> Iterator[bytes]:
        yield b'{"success": true, "size": %d, "data_url": "data:video/mp4;base64,' % size
        for i in range(0, len(b64), 65536):
            yield b64[i : i + 65536]
        yield b'", "base64": "'
        for i in range(0, len(b64), 65536):
            yield b64[i : i + 65536]
        yield b'"}'

    count = 0

    def sink(data: bytes) -> None:
        nonlocal count
        count += len(data)

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        decoder = SoraDownloadDecoder(sink)
        for chunk in body_chunks():
            decoder.feed(chunk)
        decoder.close().verify()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == size
    assert peak < 1 << 20, f"peak {peak} bytes for a {size}-byte video"


def test_decode_sora_body_helper() -> None:
    video = payload(10)
    out = bytearray()
    result = decode_sora_body([sora_body(video)], out.extend, task_id=TASK)
    assert bytes(out) == video
    assert result.decoded_size == 10


# --- truncation ---------------------------------------------------------------------------


def test_truncated_at_every_offset() -> None:
    video = payload(40)
    body = sora_body(video, escape_slashes=True)
    for end in range(len(body)):
        decoder = SoraDownloadDecoder(lambda _: None)
        decoder.feed(body[:end])
        with pytest.raises(TruncatedDownloadError):
            decoder.close()


def test_truncated_message_says_where() -> None:
    body = sora_body(payload(300))
    decoder = SoraDownloadDecoder(lambda _: None)
    decoder.feed(body[: body.index(b'"base64"') + 30])
    with pytest.raises(TruncatedDownloadError, match="inside the base64 value"):
        decoder.close()


def test_empty_body_is_truncated() -> None:
    with pytest.raises(TruncatedDownloadError, match="empty"):
        SoraDownloadDecoder(lambda _: None).close()


# --- strict base64 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b64", "match"),
    [
        ("QUJD!ERG", "not valid strict base64"),
        ("QUJD-_-_", "not valid strict base64"),  # URL-safe alphabet
        ("QUJD REVG", "not valid strict base64"),  # a space inside
        ("QUJDREV", "not a multiple of 4"),
        ("QUJDRE", "not a multiple of 4"),
        ("QUJDR", "not a multiple of 4"),
        ("QQ=A", "not valid strict base64"),  # padding in the middle of a quantum
        ("QQ==QUJD", "(?i)after padding|after the '=' padding"),
        ("QQ===", "not valid strict base64"),
        ("====", "not valid strict base64"),
        ("QR==", "padding bits"),  # non-canonical: low bits of 'R' set
        ("QUF=", "padding bits"),
        ("QUJD\\nREVG", "not in the base64 alphabet"),  # an escaped newline
        ("QUJD\\u00e9REV", "not in the base64 alphabet"),
        ('QUJD\\"REVG', "not in the base64 alphabet"),
        ("QUJD\\xREVG", "invalid JSON escape"),
        ("QUJD\\u12", "invalid JSON escape"),
    ],
)
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_bad_base64_is_refused(b64: str, match: str, chunk: int) -> None:
    body = ('{"size": 6, "base64": "' + b64 + '", "success": true}').encode()
    with pytest.raises(VideoIntegrityError, match=match) as info:
        decode(body, chunked(body, chunk))
    assert not isinstance(info.value, TruncatedDownloadError)


def test_padding_then_more_data_across_chunks() -> None:
    body = b'{"base64": "QQ==QUJD"}'
    decoder = SoraDownloadDecoder(lambda _: None)
    decoder.feed(body[:16])
    with pytest.raises(VideoIntegrityError, match="padding"):
        decoder.feed(body[16:])


def test_decoder_refuses_input_after_an_error() -> None:
    decoder = SoraDownloadDecoder(lambda _: None)
    with pytest.raises(VideoIntegrityError):
        decoder.feed(b'{"base64": "!!!!"')
    with pytest.raises(VideoIntegrityError, match="already refused"):
        decoder.feed(b"}")
    with pytest.raises(VideoIntegrityError, match="already refused"):
        decoder.close()


def test_sink_errors_propagate() -> None:
    def sink(_: bytes) -> None:
        raise OSError(28, "No space left on device")

    decoder = SoraDownloadDecoder(sink)
    with pytest.raises(OSError, match="No space"):
        decoder.feed(sora_body(b"abc"))


# --- the JSON itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML page"),
        (b"  <html>", "HTML page"),
        (b'["base64"]', "not a JSON object"),
        (b'{"base64": "QUJD"} trailing', "after the end of the JSON object"),
        (b'{"base64": "QUJD"}{}', "after the end of the JSON object"),
        (b'{"base64": "QUJD", "base64": "QUJD"}', "appears twice"),
        (b'{"base64": null}', "not a JSON string"),
        (b'{"base64": ["QUJD"]}', "not a JSON string"),
        (b'{"size" 3, "base64": "QUJD"}', "expected ':'"),
        (b'{"size": 3 "base64": "QUJD"}', "expected ',' or '}'"),
        (b'{"size": 3,, "base64": "QUJD"}', "expected a key"),
        (b'{"size": 3, }', "expected a key"),
        (b'{"size": tru, "base64": "QUJD"}', "not valid JSON"),
        (b'{"size": NaN, "base64": "QUJD"}', "value"),
        (b'{"size": 0x10, "base64": "QUJD"}', "not valid JSON"),
        (b'{"size": @, "base64": "QUJD"}', "unexpected"),
        (b'{"meta": {"a": [1}, "base64": "QUJD"}', "mismatched"),
        (b'{"meta": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", "deeper"),
        (b'{"k\\q": 1, "base64": "QUJD"}', "key is not a valid JSON string"),
    ],
)
def test_malformed_json_is_refused(body: bytes, match: str) -> None:
    with pytest.raises(VideoIntegrityError, match=match) as info:
        decode(body, chunked(body, 4))
    assert not isinstance(info.value, TruncatedDownloadError)


def test_missing_base64_field() -> None:
    body = b'{"success": true, "size": 3, "data_url": "data:video/mp4;base64,QUJD"}'
    with pytest.raises(VideoIntegrityError, match="no 'base64' field") as info:
        decode(body)
    assert "data_url" in str(info.value)


def test_success_false_reports_upstream_message() -> None:
    body = b'{"success": false, "message": "video not found"}'
    with pytest.raises(DownloadError, match=r"success=false.*video not found") as info:
        decode(body)
    assert not isinstance(info.value, VideoIntegrityError)


def test_empty_object_has_no_video() -> None:
    with pytest.raises(VideoIntegrityError, match="fields: none"):
        decode(b"{}")


# --- verify ---------------------------------------------------------------------------------


def test_verify_size_mismatch() -> None:
    _, result = decode(sora_body(b"abcd", size=5))
    with pytest.raises(VideoIntegrityError, match="4 bytes but the download body says size=5"):
        result.verify()


@pytest.mark.parametrize("size", ["4", 4.0, True, -4, None])
def test_verify_size_must_be_a_count(size: Any) -> None:
    _, result = decode(sora_body(b"abcd", size=size))
    with pytest.raises(VideoIntegrityError, match="size"):
        result.verify()


def test_verify_missing_size_is_accepted() -> None:
    _, result = decode(sora_body(b"abcd", order=("base64",)))
    result.verify(task_id=TASK)


def test_verify_format_and_task() -> None:
    _, result = decode(sora_body(b"abcd", format="webm"))
    with pytest.raises(VideoIntegrityError, match="format"):
        result.verify()
    _, result = decode(sora_body(b"abcd", task_id="video_other"))
    with pytest.raises(VideoIntegrityError, match="another task"):
        result.verify(task_id=TASK)
    result.verify()  # without an expected task id the field is not compared


def test_verify_success_must_be_true() -> None:
    _, result = decode(sora_body(b"abcd", success="yes"))
    with pytest.raises(DownloadError, match='success="yes"'):
        result.verify()


def test_os_urandom_large_odd() -> None:
    video = os.urandom(3 * 65536 + 2)
    body = sora_body(video, escape_slashes=True)
    rng = random.Random(5)
    cuts = sorted(rng.sample(range(len(body)), 50))
    got, _ = decode(body, cuts)
    assert got == video
