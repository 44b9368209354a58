"""Raw tool arguments: type, enum and name problems reported with the model's rules."""

from __future__ import annotations

from typing import Any

import pytest

from gravitex_mcp.errors import InvalidArgumentsError
from gravitex_mcp.request.validation import parse_request

VEO = "veo-3.1-fast-generate-preview"


def _problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidArgumentsError) as info:
        parse_request(raw)
    return {p.field: p.message for p in info.value.problems}


def test_enum_error_names_the_models_values_and_is_reported_with_the_rest() -> None:
    problems = _problems(
        {"model": "sora-2", "prompt": "a cat", "aspect_ratio": "2:1", "duration": 5}
    )
    assert set(problems) == {"aspect_ratio", "duration"}
    assert "sora-2" in problems["aspect_ratio"]
    assert "16:9, 9:16" in problems["aspect_ratio"]
    assert "21:9" not in problems["aspect_ratio"]  # sora does not take it
    assert "4, 8, 12" in problems["duration"]


def test_message_names_the_model() -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        parse_request({"model": "sora-2", "prompt": "a cat", "aspect_ratio": "2:1"})
    assert "sora-2" in str(info.value)
    assert "errors.pydantic.dev" not in str(info.value)


@pytest.mark.parametrize("field", ["seed", "sample_count", "duration", "fps"])
def test_booleans_are_not_integers(field: str) -> None:
    problems = _problems({"model": "veo-3.1-fast-generate-preview", "prompt": "a cat", field: True})
    assert field in problems
    assert "true" in problems[field].lower()


def test_numeric_strings_are_not_integers() -> None:
    problems = _problems({"model": "sora-2", "prompt": "a cat", "duration": "8"})
    assert "duration" in problems


def test_unknown_names_listed_with_the_models_arguments() -> None:
    problems = _problems(
        {"model": "sora-2", "prompt": "a cat", "seconds": "4", "aspectRatio": "16:9"}
    )
    assert set(problems) == {"seconds", "aspectRatio"}
    assert "duration" in problems["seconds"]
    assert "wait_seconds" in problems["seconds"]


def test_argument_the_model_does_not_take_with_a_bad_value() -> None:
    problems = _problems({"model": "sora-2", "prompt": "a cat", "sample_count": 9})
    assert "sora-2 does not take sample_count" in problems["sample_count"]


def test_missing_prompt_and_model() -> None:
    assert "describe the video" in _problems({"model": "sora-2"})["prompt"]
    missing_model = _problems({"prompt": "x"})["model"]
    assert "is required" in missing_model
    assert "veo-3.1-generate-preview" in missing_model


def test_unknown_model_with_a_type_error_elsewhere() -> None:
    problems = _problems({"model": "sora-3", "prompt": "x", "seed": "abc"})
    assert "sora-2" in problems["model"]
    assert "seed" in problems


def test_server_side_bounds() -> None:
    problems = _problems({"model": "sora-2", "prompt": "a cat", "wait_seconds": 9999})
    assert "600" in problems["wait_seconds"]


def test_bad_list_item_is_named_by_position() -> None:
    problems = _problems(
        {
            "model": "doubao-seedance-1-0-lite-i2v-250428",
            "prompt": "x",
            "reference_images": ["https://example.com/a.png", 5],
        }
    )
    assert "reference_images[1]" in problems


def test_valid_input_passes_through() -> None:
    request = parse_request({"model": "sora-2", "prompt": "a cat", "duration": 8})
    assert request.duration == 8
    assert request.given() == {"model": "sora-2", "prompt": "a cat", "duration": 8}


@pytest.mark.parametrize(
    ("model", "field", "value", "expected"),
    [
        (
            "sora-2",
            "duration",
            "4",
            '"4" is a string, not an integer (write 4, without quotes); '
            "sora-2's valid values: 4, 8, 12",
        ),
        ("sora-2", "duration", True, "true is a boolean, not an integer; sora-2's valid"),
        ("sora-2", "duration", 4.5, "4.5 is a number, not an integer; sora-2's valid"),
        (VEO, "seed", "12", '"12" is a string, not an integer (write 12, without quotes)'),
        (
            VEO,
            "generate_audio",
            "true",
            '"true" is a string, not true or false (write true, without quotes)',
        ),
        (VEO, "aspect_ratio", 16, "16 is an integer, not a string"),
        (VEO, "duration", "eight", '"eight" is a string, not an integer; '),
    ],
    ids=[
        "str-duration",
        "bool-duration",
        "float-duration",
        "str-seed",
        "str-bool",
        "int-str",
        "word",
    ],
)
def test_a_value_of_the_wrong_type_is_told_as_its_json_type(
    model: str, field: str, value: Any, expected: str
) -> None:
    """The value is echoed as JSON writes it, so "4" never reads as the valid 4."""
    message = _problems({"model": model, "prompt": "a cat", field: value})[field]
    assert message.startswith(expected), message
