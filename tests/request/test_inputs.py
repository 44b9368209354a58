"""resolve_media(): https URLs, data URLs and local paths, and everything refused."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from gravitex_mcp.errors import InvalidArgumentsError
from gravitex_mcp.redact import redact_url
from gravitex_mcp.request.inputs import resolve as inputs
from gravitex_mcp.request.inputs.media import MAX_MEDIA_BYTES, MediaKind, ResolvedMedia
from gravitex_mcp.request.inputs.paths import read_limited
from gravitex_mcp.request.inputs.resolve import resolve_media
from gravitex_mcp.request.inputs.urls import MAX_URL_LENGTH
from tests.shared.test_images import (
    make_jpeg,
    make_png,
    make_webp_vp8,
    make_webp_vp8l,
    make_webp_vp8x,
)

FIELD = "reference_images[1]"


def _refused(
    value: str,
    *,
    kind: MediaKind = "image",
    input_dirs: Sequence[Path] = (),
    field: str = FIELD,
) -> str:
    """Resolve ``value`` expecting a refusal; return the one problem's message."""
    with pytest.raises(InvalidArgumentsError) as info:
        resolve_media(value, field=field, kind=kind, input_dirs=input_dirs)
    (problem,) = info.value.problems
    assert problem.field == field
    assert len(str(info.value)) < 1200, "error messages stay short"
    return problem.message


def _data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- https URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/cat.png",
        "https://cdn.example.com:8443/a/b%20c.jpg?X-Amz-Signature=abc&x=1#frag",
        "HTTPS://Example.COM/Upper.PNG",
        "https://8.8.8.8/image.webp",
        "https://[2606:4700:4700::1111]/image.png",
        "https://[::ffff:8.8.8.8]/mapped-public.png",
        "https://bücher.example/bild.png",
        "https://example.com",
        "https://my_bucket.example.com/x.png",
    ],
)
def test_https_url_passes_through_untouched(url: str) -> None:
    media = resolve_media(url, field="image", kind="image", input_dirs=())
    assert media.url == url
    assert media.source == "url"
    assert media.journal_value() == redact_url(url)  # no signature in the journal
    assert (media.mime_type, media.size_bytes, media.width, media.height, media.sha256) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_https_audio_url_passes_through() -> None:
    url = "https://example.com/audio.mp3"
    media = resolve_media(url, field="audio_url", kind="audio", input_dirs=())
    assert media.url == url
    assert media.source == "url"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://example.com/cat.png", "plain http://"),
        ("HTTP://example.com/cat.png", "plain http://"),
        ("file:///etc/passwd", "file:// URL"),
        ("file://localhost/etc/hosts", "file:// URL"),
        ("ftp://example.com/cat.png", "scheme 'ftp'"),
        ("javascript:alert(1)", "scheme 'javascript'"),
        ("gs://bucket/cat.png", "scheme 'gs'"),
        ("https:///cat.png", "no host"),
        ("https:cat.png", "no host"),
        ("https://:443/cat.png", "no host"),
        ("https://user:pass@example.com/cat.png", "credentials"),
        ("https://user@example.com/cat.png", "credentials"),
        ("https://:pw@example.com/cat.png", "credentials"),
        ("https://example.com:99999/cat.png", "invalid port"),
        ("https://example.com:port/cat.png", "invalid port"),
        ("https://[::1/cat.png", "not a well-formed URL"),
        ("https://exa mple.com/cat.png", "whitespace"),
        ("https://example.com/a\tb.png", "whitespace"),
        ("https://example.com/a\nb.png", "whitespace"),
        ("https://example.com/\x00.png", "control"),
        ("https://evil.example\\@good.example/cat.png", "backslash"),
        (" https://example.com/cat.png", "leading or trailing whitespace"),
        ("https://example.com/cat.png\n", "leading or trailing whitespace"),
        ("https://%6c%6fcalhost/cat.png", "percent-encoded"),
    ],
)
def test_bad_urls_are_refused(url: str, fragment: str) -> None:
    message = _refused(url)
    assert fragment in message
    assert "valid" in message


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://localhost/cat.png", "localhost"),
        ("https://LOCALHOST./cat.png", "localhost"),
        ("https://api.localhost/cat.png", "localhost"),
        # IPv4
        ("https://127.0.0.1/cat.png", "loopback"),
        ("https://127.8.9.10:8443/cat.png", "loopback"),
        ("https://10.1.2.3/cat.png", "private"),
        ("https://172.16.0.1/cat.png", "private"),
        ("https://192.168.1.1/cat.png", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://0.0.0.0/cat.png", "unspecified"),
        ("https://224.0.0.1/cat.png", "multicast"),
        ("https://240.0.0.1/cat.png", "reserved"),
        ("https://100.64.0.1/cat.png", "not publicly routable"),
        ("https://192.0.2.1/cat.png", "private"),
        # legacy numeric IPv4 spellings
        ("https://2130706433/cat.png", "loopback"),
        ("https://0x7f.1/cat.png", "loopback"),
        ("https://0x7F000001/cat.png", "loopback"),
        ("https://0177.0.0.1/cat.png", "loopback"),
        ("https://127.1/cat.png", "loopback"),
        ("https://10.0x10.1/cat.png", "private"),
        ("https://127.0.0.1./cat.png", "loopback"),
        ("https://\uff11\uff12\uff17.0.0.1/cat.png", "loopback"),  # full-width digits
        ("https://127\u30020\u30020\u30021/cat.png", "loopback"),  # ideographic full stops
        ("https://256.0.0.1/cat.png", "malformed IPv4"),
        ("https://1.2.3.4.5/cat.png", "malformed IPv4"),
        ("https://example.08/cat.png", "malformed IPv4"),
        # IPv6
        ("https://[::1]/cat.png", "loopback"),
        ("https://[::]/cat.png", "unspecified"),
        ("https://[fe80::1]/cat.png", "link-local"),
        ("https://[fe80::1%25eth0]/cat.png", "link-local"),
        ("https://[fc00::1]/cat.png", "private"),
        ("https://[fd12:3456::1]:8443/cat.png", "private"),
        ("https://[ff02::1]/cat.png", "multicast"),
        ("https://[::ffff:127.0.0.1]/cat.png", "loopback"),
        ("https://[::ffff:7f00:1]/cat.png", "loopback"),
        ("https://[::ffff:10.0.0.1]/cat.png", "private"),
        ("https://[::ffff:169.254.169.254]/cat.png", "link-local"),
        ("https://[2002:7f00:1::]/cat.png", "loopback"),  # 6to4 around 127.0.0.1
        ("https://[64:ff9b::a00:1]/cat.png", "private"),  # NAT64 around 10.0.0.1
    ],
)
def test_non_public_hosts_are_refused(url: str, fragment: str) -> None:
    message = _refused(url)
    assert fragment in message
    assert "public" in message


def test_url_errors_never_echo_credentials_or_query() -> None:
    message = _refused("http://alice:s3cret-pw@example.com/cat.png?X-Amz-Signature=deadbeef99")
    assert "s3cret-pw" not in message
    assert "deadbeef99" not in message
    assert "example.com/cat.png" in message
    message = _refused("https://alice:s3cret-pw@example.com/cat.png")
    assert "s3cret-pw" not in message
    assert "alice" not in message


def test_long_values_are_truncated_in_errors() -> None:
    url = "http://example.com/" + "a" * 5000 + ".png"
    message = _refused(url)
    assert "a" * 100 not in message
    assert len(message) < 500


def test_overlong_url_is_refused() -> None:
    url = "https://example.com/" + "a" * MAX_URL_LENGTH
    assert "limit is 8192" in _refused(url)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("http://example.com/a.mp3", "plain http://"),
        ("data:audio/mpeg;base64,SUQzBAAAAAAAAA==", "https URL"),
        ("/music/a.mp3", "outside the input folders"),
        ("a.mp3", "does not exist"),
        ("file:///music/a.mp3", "file:// URL"),
        ("https://127.0.0.1/a.mp3", "loopback"),
    ],
)
def test_audio_refusals(value: str, fragment: str, tmp_path: Path) -> None:
    message = _refused(value, kind="audio", field="audio_url", input_dirs=[tmp_path])
    assert fragment in message
    # each refusal names what is valid: an https URL, or a file in the input folders
    assert "https://" in message or "GRAVITEX_INPUT_DIRS" in message


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"\xff\xfb\x90\x64", "audio/mpeg"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac"),
        (b"OggS\x00\x02", "audio/ogg"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "audio/mp4"),
    ],
)
def test_local_audio_file_travels_as_data_url(head: bytes, mime: str, tmp_path: Path) -> None:
    data = head + b"\x00" * 200
    (tmp_path / "song.bin").write_bytes(data)
    media = inputs.resolve_media("song.bin", field="audio_url", kind="audio", input_dirs=[tmp_path])
    assert media.source == "path"
    assert media.mime_type == mime
    assert base64.b64decode(media.url.split(",", 1)[1]) == data
    assert media.url.startswith(f"data:{mime};base64,")
    assert media.size_bytes == len(data)
    assert "base64" not in media.journal_value()


def test_local_non_audio_file_is_refused_as_audio(tmp_path: Path) -> None:
    (tmp_path / "notes.mp3").write_text("just some text, not audio at all")
    message = _refused("notes.mp3", kind="audio", field="audio_url", input_dirs=[tmp_path])
    assert "not an audio file" in message
    assert "MP3" in message


def test_local_audio_outside_roots_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (tmp_path / "secret.mp3").write_bytes(b"ID3" + b"\x00" * 64)
    message = _refused(
        str(root / ".." / "secret.mp3"), kind="audio", field="audio_url", input_dirs=[root]
    )
    assert "outside the input folders" in message


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_empty_value_is_refused(value: str) -> None:
    assert "is empty" in _refused(value)


# --- data URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime", "size"),
    [
        (make_png(64, 48), "image/png", (64, 48)),
        (make_jpeg(640, 360), "image/jpeg", (640, 360)),
        (make_webp_vp8(320, 200), "image/webp", (320, 200)),
        (make_webp_vp8l(7, 9), "image/webp", (7, 9)),
        (make_webp_vp8x(1280, 720), "image/webp", (1280, 720)),
    ],
)
def test_data_url_accepted(data: bytes, mime: str, size: tuple[int, int]) -> None:
    url = _data_url(data, mime)
    media = resolve_media(url, field="image", kind="image", input_dirs=())
    assert media.url == url
    assert media.source == "data_url"
    assert media.mime_type == mime
    assert media.size_bytes == len(data)
    assert (media.width, media.height) == size
    assert media.sha256 == hashlib.sha256(data).hexdigest()


def test_data_url_jpg_alias_and_params_are_normalised() -> None:
    data = make_jpeg(10, 20)
    payload = base64.b64encode(data).decode()
    media = resolve_media(
        f"DATA:Image/JPG;name=photo.jpg;BASE64,{payload}",
        field="image",
        kind="image",
        input_dirs=(),
    )
    assert media.mime_type == "image/jpeg"
    assert media.url == f"data:image/jpeg;base64,{payload}"
    assert (media.width, media.height) == (10, 20)


def test_journal_value_never_holds_the_payload() -> None:
    data = make_png(300, 200)
    url = _data_url(data)
    payload = url.split(",", 1)[1]
    media = resolve_media(url, field="image", kind="image", input_dirs=())
    journal = media.journal_value()
    assert payload not in journal
    assert payload[:16] not in journal
    assert "base64" not in journal
    assert journal == f"sha256:{hashlib.sha256(data).hexdigest()} (image/png, {len(data)} bytes)"


PNG_B64 = base64.b64encode(make_png(2, 2)).decode()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("data:image/png,rawbytes", "not base64-encoded"),
        ("data:image/png;charset=utf-8,abc", "not base64-encoded"),
        ("data:,hello", "not base64-encoded"),
        ("data:image/png;base64", "no ','"),
        ("data:;base64," + PNG_B64, "no MIME type"),
        ("data:image/gif;base64," + PNG_B64, "'image/gif' is not accepted"),
        ("data:text/plain;base64," + PNG_B64, "'text/plain' is not accepted"),
        ("data:image/svg+xml;base64," + PNG_B64, "is not accepted"),
        ("data:image/png;base64,", "no data"),
        ("data:image/png;base64," + PNG_B64[:20] + "!" + PNG_B64[20:], "'!' at position 20"),
        ("data:image/png;base64," + PNG_B64[:8] + "\n" + PNG_B64[8:], "whitespace"),
        ("data:image/png;base64," + PNG_B64[:8] + " " + PNG_B64[8:], "whitespace"),
        ("data:image/png;base64," + PNG_B64[:8] + "-_" + PNG_B64[10:], "URL-safe"),
        ("data:image/png;base64," + PNG_B64[:8] + "%2B" + PNG_B64[11:], "percent"),
        ("data:image/png;base64," + PNG_B64.rstrip("="), "padding"),  # padding dropped
        ("data:image/png;base64," + PNG_B64 + "A", "padding"),  # data after the padding
        ("data:image/png;base64,AAAA==", "padding"),  # excess padding
        ("data:image/png;base64,AAA", "padding"),  # missing padding
        ("data:image/png;base64,A===", "padding"),
        ("data:image/png;base64,AA=A", "padding"),  # '=' in the middle
    ],
)
def test_bad_data_urls_are_refused(value: str, fragment: str) -> None:
    message = _refused(value)
    assert fragment in message
    assert PNG_B64[:24] not in message, "the payload is never echoed"


@pytest.mark.parametrize(
    ("data", "declared", "fragment"),
    [
        (make_png(2, 2), "image/jpeg", "PNG image (image/png)"),
        (make_jpeg(2, 2), "image/png", "JPEG image (image/jpeg)"),
        (make_webp_vp8l(2, 2), "image/jpg", "WEBP image (image/webp)"),
        (make_png(2, 2), "image/webp", "data:image/png;base64"),
    ],
)
def test_data_url_type_mismatch_names_the_real_type(
    data: bytes, declared: str, fragment: str
) -> None:
    url = _data_url(data, declared)
    message = _refused(url)
    assert fragment in message
    assert url.split(",", 1)[1][:24] not in message


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"this is not an image at all, just words\n", "text"),
        (b"GIF89a\x01\x00\x01\x00\x80\x00\x00", "GIF"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated or damaged"),
        (make_jpeg(5, 5)[:30], "truncated or damaged"),
    ],
)
def test_data_url_bytes_must_really_be_an_image(data: bytes, fragment: str) -> None:
    assert fragment in _refused(_data_url(data, "image/png" if b"PNG" in data else "image/jpeg"))


def test_oversized_data_url_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("an oversized payload must not be decoded")

    monkeypatch.setattr(base64, "b64decode", no_decoding)
    payload = "A" * (4 * (MAX_MEDIA_BYTES // 3 + 2))
    message = _refused("data:image/png;base64," + payload)
    assert "limit is 10 MB" in message
    assert "AAAAAAAA" not in message


def _padded_png(total: int) -> bytes:
    png = make_png(8, 8)
    return png + b"\x00" * (total - len(png))


def test_data_url_decoded_size_limit_is_exact() -> None:
    # MAX + 1 bytes still fit the encoded-length bound: the decoded check catches it.
    too_big = _data_url(_padded_png(MAX_MEDIA_BYTES + 1))
    assert len(too_big.split(",", 1)[1]) <= 4 * ((MAX_MEDIA_BYTES + 2) // 3)
    assert "limit is 10 MB" in _refused(too_big)
    media = resolve_media(
        _data_url(_padded_png(MAX_MEDIA_BYTES)), field="image", kind="image", input_dirs=()
    )
    assert media.size_bytes == MAX_MEDIA_BYTES
    assert (media.width, media.height) == (8, 8)


# --- local paths --------------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(input dir, a sibling dir outside it)."""
    inside = tmp_path / "inputs"
    outside = tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    return inside, outside


@pytest.mark.parametrize(
    ("name", "data", "mime", "size"),
    [
        ("a.png", make_png(16, 9), "image/png", (16, 9)),
        ("b.jpg", make_jpeg(1280, 720), "image/jpeg", (1280, 720)),
        ("c.webp", make_webp_vp8x(720, 1280), "image/webp", (720, 1280)),
        ("really-a-jpeg.png", make_jpeg(30, 40), "image/jpeg", (30, 40)),
        ("no-extension", make_webp_vp8(50, 60), "image/webp", (50, 60)),
    ],
)
def test_path_inside_input_dir_becomes_data_url(
    roots: tuple[Path, Path], name: str, data: bytes, mime: str, size: tuple[int, int]
) -> None:
    inside, _ = roots
    (inside / name).write_bytes(data)
    media = resolve_media(str(inside / name), field="image", kind="image", input_dirs=[inside])
    assert media.source == "path"
    assert media.mime_type == mime  # by content, never by extension
    assert media.url == f"data:{mime};base64,{base64.b64encode(data).decode()}"
    assert media.size_bytes == len(data)
    assert (media.width, media.height) == size
    assert media.sha256 == hashlib.sha256(data).hexdigest()
    journal = media.journal_value()
    assert journal == f"sha256:{media.sha256} ({mime}, {len(data)} bytes)"
    assert base64.b64encode(data).decode()[:16] not in journal


def test_relative_path_is_looked_up_in_each_input_dir(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    (second / "sub").mkdir(parents=True)
    first.mkdir()
    (second / "sub" / "pic.png").write_bytes(make_png(5, 6))
    media = resolve_media("sub/pic.png", field="image", kind="image", input_dirs=[first, second])
    assert (media.width, media.height) == (5, 6)
    # The first dir that has it wins.
    (first / "sub").mkdir()
    (first / "sub" / "pic.png").write_bytes(make_png(7, 8))
    media = resolve_media("sub/pic.png", field="image", kind="image", input_dirs=[first, second])
    assert (media.width, media.height) == (7, 8)


def test_tilde_is_expanded(roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    inside, _ = roots
    monkeypatch.setenv("HOME", str(inside))
    (inside / "me.png").write_bytes(make_png(3, 3))
    media = resolve_media("~/me.png", field="image", kind="image", input_dirs=[inside])
    assert media.mime_type == "image/png"


def test_input_dir_given_through_a_symlink(roots: tuple[Path, Path], tmp_path: Path) -> None:
    inside, _ = roots
    (inside / "x.png").write_bytes(make_png(2, 2))
    alias = tmp_path / "alias"
    alias.symlink_to(inside, target_is_directory=True)
    media = resolve_media(str(alias / "x.png"), field="image", kind="image", input_dirs=[alias])
    assert media.mime_type == "image/png"


def test_no_input_dirs_refuses_every_path(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    (inside / "a.png").write_bytes(make_png(2, 2))
    for value in (str(inside / "a.png"), "a.png", "./a.png", "~/a.png"):
        assert "GRAVITEX_INPUT_DIRS is not set" in _refused(value, input_dirs=())


def test_path_outside_input_dirs_is_refused(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    (outside / "a.png").write_bytes(make_png(2, 2))
    message = _refused(str(outside / "a.png"), input_dirs=[inside])
    assert "outside the input folders" in message
    assert str(inside) in message
    # A missing file outside gets the same answer: nothing outside can be probed.
    assert "outside the input folders" in _refused(
        str(outside / "missing.png"), input_dirs=[inside]
    )
    assert "outside the input folders" in _refused("/etc/passwd", input_dirs=[inside])


def test_dotdot_traversal_is_refused(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    (outside / "a.png").write_bytes(make_png(2, 2))
    assert "outside" in _refused("../elsewhere/a.png", input_dirs=[inside])
    assert "outside" in _refused(f"{inside}/../elsewhere/a.png", input_dirs=[inside])
    (inside / "sub").mkdir()
    assert "outside" in _refused("sub/../../elsewhere/a.png", input_dirs=[inside])


def test_dotdot_that_stays_inside_is_fine(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    (inside / "sub").mkdir()
    (inside / "a.png").write_bytes(make_png(2, 2))
    media = resolve_media("sub/../a.png", field="image", kind="image", input_dirs=[inside])
    assert media.mime_type == "image/png"


def test_symlink_that_escapes_is_refused(roots: tuple[Path, Path]) -> None:
    inside, outside = roots
    (outside / "secret.png").write_bytes(make_png(2, 2))
    (inside / "link.png").symlink_to(outside / "secret.png")
    assert "outside" in _refused(str(inside / "link.png"), input_dirs=[inside])
    assert "outside" in _refused("link.png", input_dirs=[inside])
    (inside / "dirlink").symlink_to(outside, target_is_directory=True)
    assert "outside" in _refused("dirlink/secret.png", input_dirs=[inside])
    # A dangling link pointing out is refused as outside too.
    (inside / "dangling.png").symlink_to(outside / "not-there.png")
    assert "outside" in _refused("dangling.png", input_dirs=[inside])


def test_symlink_that_stays_inside_is_accepted(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    (inside / "real").mkdir()
    (inside / "real" / "img.webp").write_bytes(make_webp_vp8l(11, 12))
    (inside / "link.webp").symlink_to(inside / "real" / "img.webp")
    media = resolve_media(
        str(inside / "link.webp"), field="image", kind="image", input_dirs=[inside]
    )
    assert (media.mime_type, media.width, media.height) == ("image/webp", 11, 12)


def test_symlink_into_another_input_dir_is_accepted(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    (second / "img.png").write_bytes(make_png(4, 4))
    (first / "link.png").symlink_to(second / "img.png")
    media = resolve_media("link.png", field="image", kind="image", input_dirs=[first, second])
    assert media.mime_type == "image/png"


def test_text_file_named_png_is_refused(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    (inside / "notes.png").write_text("definitely not a picture\n")
    message = _refused(str(inside / "notes.png"), input_dirs=[inside])
    assert "is not a PNG, JPEG or WEBP image" in message
    assert "text" in message


def test_other_image_types_are_refused(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    (inside / "anim.gif").write_bytes(b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00" * 20)
    assert "GIF" in _refused("anim.gif", input_dirs=[inside])


def test_empty_and_truncated_files_are_refused(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    (inside / "empty.png").write_bytes(b"")
    assert "empty" in _refused("empty.png", input_dirs=[inside])
    (inside / "cut.png").write_bytes(make_png(9, 9)[:18])
    assert "truncated or damaged" in _refused("cut.png", input_dirs=[inside])


def test_oversized_file_is_refused_before_reading(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    inside, _ = roots
    big = inside / "big.png"
    big.write_bytes(make_png(8, 8))
    os.truncate(big, MAX_MEDIA_BYTES + 1)  # sparse: nothing is really written

    def no_reading(*args: object) -> bytes:
        raise AssertionError("an oversized file must not be read")

    monkeypatch.setattr(os, "read", no_reading)
    message = _refused(str(big), input_dirs=[inside])
    assert f"{MAX_MEDIA_BYTES + 1} bytes" in message
    assert "limit is 10 MB" in message


def test_file_of_exactly_the_limit_is_accepted(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    edge = inside / "edge.png"
    edge.write_bytes(make_png(8, 8))
    os.truncate(edge, MAX_MEDIA_BYTES)
    media = resolve_media(str(edge), field="image", kind="image", input_dirs=[inside])
    assert media.size_bytes == MAX_MEDIA_BYTES


def test_missing_file_inside_is_reported(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    message = _refused("nope.png", input_dirs=[inside])
    assert "does not exist" in message
    assert str(inside) in message


def test_directory_is_refused(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    (inside / "folder.png").mkdir()
    assert "is a directory" in _refused("folder.png", input_dirs=[inside])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_without_blocking(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    os.mkfifo(inside / "pipe.png")
    assert "not a regular file" in _refused("pipe.png", input_dirs=[inside])


def test_path_errors_truncate_long_values(roots: tuple[Path, Path]) -> None:
    inside, _ = roots
    message = _refused("x" * 200 + ".png", input_dirs=[inside])
    assert "x" * 100 not in message


def test_resolved_media_is_frozen() -> None:
    media = ResolvedMedia(
        url="https://example.com/a.png",
        source="url",
        mime_type=None,
        size_bytes=None,
        width=None,
        height=None,
        sha256=None,
    )
    with pytest.raises(AttributeError):
        media.url = "https://example.com/b.png"  # type: ignore[misc]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc/self/fd")
def test_folder_swapped_for_a_symlink_after_the_check_is_caught(tmp_path: Path) -> None:
    # read_limited runs after the containment check; give it a path whose folder
    # has become a symlink out of the root, as a swap in between would.
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.png").write_bytes(make_png(4, 4))
    (root / "sub").symlink_to(outside)
    with pytest.raises(InvalidArgumentsError, match="outside the input folders"):
        read_limited(root / "sub" / "a.png", field="image", shown="a.png", roots=[root])
