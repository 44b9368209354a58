"""Bounded work per request: counts and cheap rules before any file is read, capped totals."""

from __future__ import annotations

import base64
import contextlib
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gravitex_mcp.catalog.markers import FoundMarker, find_prompt_markers
from gravitex_mcp.domain import Family
from gravitex_mcp.errors import InvalidArgumentsError
from gravitex_mcp.request import validation
from gravitex_mcp.request.arguments import MAX_PROMPT_CHARS, VideoArguments
from gravitex_mcp.request.inputs.media import MAX_REQUEST_MEDIA_BYTES
from gravitex_mcp.request.prepare import prepare_request
from gravitex_mcp.request.validation import validate
from tests.request.test_prepare import png_header
from tests.server_harness import connected, make_harness, text_of

LITE_I2V = "doubao-seedance-1-0-lite-i2v-250428"
VEO_31 = "veo-3.1-generate-preview"
BIG = 9_500_000  # under the 10 MB limit of one image
MB = 1024 * 1024


def big_png(folder: Path, name: str) -> str:
    """A PNG of ``BIG`` bytes: a real header, then a hole (sparse: no disk is used)."""
    path = folder / name
    path.write_bytes(png_header(64, 64))
    with path.open("r+b") as file:
        file.truncate(BIG)
    return name


@pytest.fixture
def peak_growth() -> Iterator[Callable[[Callable[[], Any]], int]]:
    """Measure the peak of Python allocations above the start, while ``call`` runs."""
    tracemalloc.start()

    def measure(call: Callable[[], Any]) -> int:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with contextlib.suppress(InvalidArgumentsError):
            call()
        return tracemalloc.get_traced_memory()[1] - start

    yield measure
    tracemalloc.stop()


def refusal(tmp_path: Path, **kwargs: Any) -> InvalidArgumentsError:
    with pytest.raises(InvalidArgumentsError) as info:
        prepare_request(VideoArguments(**kwargs), input_dirs=[tmp_path])
    return info.value


def test_sixty_large_reference_images_are_refused_without_reading_them(
    tmp_path: Path, peak_growth: Callable[[Callable[[], Any]], int]
) -> None:
    refs = [big_png(tmp_path, f"ref{i}.png") for i in range(60)]
    args = VideoArguments(model=LITE_I2V, prompt="[图1] a boy", reference_images=refs)
    growth = peak_growth(lambda: prepare_request(args, input_dirs=[tmp_path]))
    assert growth < 50 * MB
    error = refusal(tmp_path, model=LITE_I2V, prompt="[图1] a boy", reference_images=refs)
    (problem,) = error.problems
    assert problem.field == "reference_images"
    assert "60 items" in problem.message
    assert "1 to 4" in problem.message


def test_inline_media_over_the_request_cap_are_refused_before_reading(
    tmp_path: Path, peak_growth: Callable[[Callable[[], Any]], int]
) -> None:
    refs = [big_png(tmp_path, f"ref{i}.png") for i in range(4)]
    assert 4 * BIG > MAX_REQUEST_MEDIA_BYTES
    args = VideoArguments(model=LITE_I2V, prompt="[图1] a boy", reference_images=refs)
    assert peak_growth(lambda: prepare_request(args, input_dirs=[tmp_path])) < 5 * MB
    error = refusal(tmp_path, model=LITE_I2V, prompt="[图1] a boy", reference_images=refs)
    (problem,) = error.problems
    assert problem.field == "reference_images[2]"  # the first one past the cap
    assert f"add up to {4 * BIG} bytes" in problem.message
    assert str(MAX_REQUEST_MEDIA_BYTES) in problem.message
    assert "https://" in problem.message


def test_data_urls_count_toward_the_cap_and_are_not_decoded_when_over_it(
    peak_growth: Callable[[Callable[[], Any]], int],
) -> None:
    data = png_header(64, 64) + bytes(8_000_000)
    refs = ["data:image/png;base64," + base64.b64encode(data).decode()] * 3
    args = VideoArguments(model=LITE_I2V, prompt="[图1] a boy", reference_images=refs)
    assert peak_growth(lambda: prepare_request(args, input_dirs=[])) < 5 * MB
    with pytest.raises(InvalidArgumentsError) as info:
        prepare_request(args, input_dirs=[])
    (problem,) = info.value.problems
    assert problem.field == "reference_images[2]"
    assert f"add up to {3 * len(data)} bytes" in problem.message


def test_a_cheap_problem_refuses_the_call_before_any_file_is_read(
    tmp_path: Path, peak_growth: Callable[[Callable[[], Any]], int]
) -> None:
    first, last = big_png(tmp_path, "first.png"), big_png(tmp_path, "last.png")
    args = VideoArguments(model=VEO_31, prompt="p", image=first, last_frame=last, duration=7)
    assert peak_growth(lambda: prepare_request(args, input_dirs=[tmp_path])) < 5 * MB
    error = refusal(tmp_path, model=VEO_31, prompt="p", image=first, last_frame=last, duration=7)
    assert [p.field for p in error.problems] == ["duration"]


def test_two_full_size_frames_fit_the_request_cap(tmp_path: Path) -> None:
    first, last = big_png(tmp_path, "first.png"), big_png(tmp_path, "last.png")
    args = VideoArguments(model=VEO_31, prompt="p", image=first, last_frame=last)
    prepared = prepare_request(args, input_dirs=[tmp_path])
    assert prepared.body["image"].startswith("data:image/png;base64,")
    assert prepared.body["lastFrame"].startswith("data:image/png;base64,")


def test_five_reference_urls_are_refused_by_count() -> None:
    refs = [f"https://example.com/{i}.png" for i in range(5)]
    with pytest.raises(InvalidArgumentsError) as info:
        validate(VideoArguments(model=LITE_I2V, prompt="[图1]", reference_images=refs))
    (problem,) = info.value.problems
    assert problem.field == "reference_images"
    assert "valid: 1 to 4 items" in problem.message
    validate(VideoArguments(model=LITE_I2V, prompt="[图1]", reference_images=refs[:4]))


# --- the prompt ----------------------------------------------------------------------


def test_a_prompt_over_the_limit_is_refused_naming_the_limit() -> None:
    validate(VideoArguments(model=VEO_31, prompt="a" * MAX_PROMPT_CHARS))
    with pytest.raises(InvalidArgumentsError) as info:
        validate(VideoArguments(model=VEO_31, prompt="a" * (MAX_PROMPT_CHARS + 1)))
    (problem,) = info.value.problems
    assert problem.field == "prompt"
    assert f"is {MAX_PROMPT_CHARS + 1} characters long" in problem.message
    assert f"the limit is {MAX_PROMPT_CHARS}" in problem.message


def test_a_five_megabyte_prompt_is_refused_without_reading_its_markers() -> None:
    huge = "--rs 9000p " * 500_000  # each marker would be a problem if it were read
    with pytest.raises(InvalidArgumentsError) as info:
        validate(VideoArguments(model=LITE_I2V, prompt=huge, image="https://e.com/a.png"))
    assert [p.field for p in info.value.problems] == ["prompt"]
    assert len(str(info.value)) < 1000  # the prompt is not echoed


@pytest.mark.parametrize(
    "prompt",
    [
        "\u200b\u200c\u200d\u2060",  # zero-width space, non-joiner, joiner, word joiner
        "\ufeff \u200b",  # byte order mark and spaces
        "\x00\x01\x1b\x7f",  # C0 controls and DEL
        "\u202e\u2066\u2069",  # bidi controls
        "\u3164\u2800\u00a0",  # Hangul filler, Braille blank, no-break space
    ],
)
def test_a_prompt_without_a_visible_character_is_refused(prompt: str) -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        validate(VideoArguments(model=VEO_31, prompt=prompt))
    (problem,) = info.value.problems
    assert problem.field == "prompt"
    assert "no visible character" in problem.message


@pytest.mark.parametrize("prompt", ["🎬", "\u200ba cat\u200b", "猫", "é"])
def test_a_prompt_with_one_visible_character_is_accepted(prompt: str) -> None:
    validate(VideoArguments(model=VEO_31, prompt=prompt))


def test_the_readme_states_the_limits_the_code_applies() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"at most {MAX_REQUEST_MEDIA_BYTES // MB} MB" in readme
    assert f"at most {MAX_PROMPT_CHARS:,} characters" in readme
    assert "1 to 4" in readme


async def test_the_tool_refuses_sixty_large_images_and_an_invisible_prompt(tmp_path: Path) -> None:
    h = make_harness(tmp_path)
    (folder,) = h.settings.input_dirs
    refs = [big_png(folder, f"ref{i}.png") for i in range(60)]
    async with connected(h) as client:
        images = await client.call_tool(
            "generate_video", {"model": LITE_I2V, "prompt": "[图1]", "reference_images": refs}
        )
        blank = await client.call_tool(
            "generate_video", {"model": VEO_31, "prompt": "\u200b\u2060\u200b"}
        )
    assert images.is_error
    assert "1 to 4" in text_of(images)
    assert blank.is_error
    assert "no visible character" in text_of(blank)
    assert h.sim.calls["submit"] == 0


def test_given_and_the_marker_parser_run_once_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"given": 0, "markers": 0}
    given, find = VideoArguments.given, find_prompt_markers

    def counted_given(self: VideoArguments) -> dict[str, Any]:
        calls["given"] += 1
        return given(self)

    def counted_find(prompt: str, family: Family) -> list[FoundMarker]:
        calls["markers"] += 1
        return find(prompt, family)

    monkeypatch.setattr(VideoArguments, "given", counted_given)
    monkeypatch.setattr(validation, "find_prompt_markers", counted_find)
    args = VideoArguments(
        model=LITE_I2V, prompt="a bird --rs 720p", duration=5, image="https://e.com/a.png"
    )
    prepared = prepare_request(args, input_dirs=[])
    assert prepared.body["metadata"]["content"][0]["text"] == "a bird --rs 720p --dur 5"
    assert calls == {"given": 1, "markers": 1}
