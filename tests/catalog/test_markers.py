"""Seedance prompt markers are found however the caller spells them."""

from __future__ import annotations

import pytest

from gravitex_mcp.catalog.markers import find_prompt_markers
from gravitex_mcp.domain import Family
from gravitex_mcp.errors import InvalidArgumentsError
from gravitex_mcp.request.arguments import VideoArguments
from gravitex_mcp.request.validation import validate

LITE_I2V = "doubao-seedance-1-0-lite-i2v-250428"


@pytest.mark.parametrize(
    ("prompt", "argument", "raw"),
    [
        ("a cat --rs 720p", "resolution", "720p"),
        ("a cat --RS 1080p", "resolution", "1080p"),
        ("a cat --Dur=7", "duration", "7"),
        ("a cat --ratio=16:9 more", "aspect_ratio", "16:9"),
        ("a cat --wm", "watermark", None),
    ],
)
def test_markers_are_found_in_any_case_and_with_equals(
    prompt: str, argument: str, raw: str | None
) -> None:
    (marker,) = find_prompt_markers(prompt, Family.SEEDANCE)
    assert marker.argument == argument
    assert marker.raw == raw


def test_ordinary_double_dash_words_are_prompt_text() -> None:
    assert find_prompt_markers("a cat --very-fast --rsx 5", Family.SEEDANCE) == []


def test_upper_case_marker_cannot_bypass_the_reference_image_rule() -> None:
    args = VideoArguments(
        model=LITE_I2V,
        prompt="[图1] a boy --RS 1080p",
        reference_images=["https://example.com/ref1.png"],
    )
    with pytest.raises(InvalidArgumentsError) as info:
        validate(args)
    assert "1080p" in str(info.value)


def test_equals_marker_value_is_checked() -> None:
    args = VideoArguments(model=LITE_I2V, prompt="a bird --dur=7", image="https://e.com/a.png")
    with pytest.raises(InvalidArgumentsError) as info:
        validate(args)
    assert "5, 10" in str(info.value)


def test_upper_case_marker_conflicting_with_an_argument_is_refused() -> None:
    args = VideoArguments(
        model=LITE_I2V,
        prompt="a bird --RS 480p",
        resolution="720p",
        image="https://example.com/a.png",
    )
    with pytest.raises(InvalidArgumentsError, match="resolution"):
        validate(args)
