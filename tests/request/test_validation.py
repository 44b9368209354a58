"""Validation: every refusal names the field, the model and the valid values."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gravitex_mcp.errors import InvalidArgumentsError, Problem
from gravitex_mcp.request.arguments import GenerateVideoInput, VideoArguments
from gravitex_mcp.request.validation import validate

SORA = "sora-2"
VEO_FAST = "veo-3.1-fast-generate-preview"
VEO_30 = "veo-3.0-generate-preview"
VEO_31 = "veo-3.1-generate-preview"
WAN_T2V = "wan2.5-t2v-preview"
WAN_I2V = "wan2.5-i2v-preview"
LITE_T2V = "doubao-seedance-1-0-lite-t2v-250428"
LITE_I2V = "doubao-seedance-1-0-lite-i2v-250428"
PRO = "doubao-seedance-1-0-pro-250528"
PRO_15 = "doubao-seedance-1-5-pro-251215"
FLF2V = "wan2-1-14b-flf2v-250417"
IMG = "https://example.com/a.png"
IMG2 = "https://example.com/b.png"


def refused(**kwargs: Any) -> list[Problem]:
    kwargs.setdefault("prompt", "A cat on a sofa")
    with pytest.raises(InvalidArgumentsError) as info:
        validate(VideoArguments(**kwargs))
    return list(info.value.problems)


def accepted(**kwargs: Any) -> VideoArguments:
    kwargs.setdefault("prompt", "A cat on a sofa")
    args = VideoArguments(**kwargs)
    assert validate(args).spec.id == kwargs["model"]
    return args


# (arguments, field, substrings the message must hold: the model and what is valid)
REFUSALS = [
    pytest.param(
        {"model": "sora-3"},
        "model",
        ["'sora-3' is not a known model", "valid values: sora-2, veo-3.0-fast-generate-001"],
        id="unknown-model",
    ),
    pytest.param({"model": SORA, "prompt": "  \n"}, "prompt", ["is empty"], id="blank-prompt"),
    pytest.param({"model": SORA, "duration": 6}, "duration", [SORA, "4, 8, 12"], id="sora-dur"),
    pytest.param({"model": WAN_T2V, "duration": 8}, "duration", [WAN_T2V, "5, 10"], id="wan-dur"),
    pytest.param(
        {"model": PRO_15, "duration": 13}, "duration", [PRO_15, "4 to 12"], id="seedance15-dur"
    ),
    pytest.param(
        {"model": LITE_T2V, "duration": 6}, "duration", [LITE_T2V, "5, 10"], id="lite-dur"
    ),
    pytest.param(
        {"model": VEO_FAST, "resolution": "480p"},
        "resolution",
        [VEO_FAST, "valid values: 720p, 1080p"],
        id="veo-480p",
    ),
    pytest.param(
        {"model": PRO_15, "resolution": "1080p"},
        "resolution",
        [PRO_15, "valid values: 480p, 720p"],
        id="seedance15-1080p",
    ),
    pytest.param(
        {"model": WAN_I2V, "resolution": "4k", "image": IMG},
        "resolution",
        [WAN_I2V, "480p, 720p, 1080p"],
        id="wan-4k",
    ),
    pytest.param(
        {"model": VEO_31, "aspect_ratio": "1:1"},
        "aspect_ratio",
        [VEO_31, "valid values: 16:9, 9:16"],
        id="veo-square",
    ),
    pytest.param(
        {"model": LITE_T2V, "aspect_ratio": "adaptive"},
        "aspect_ratio",
        [LITE_T2V, "valid values: 16:9, 9:16, 1:1, 4:3, 3:4"],
        id="lite-t2v-adaptive",
    ),
    pytest.param(
        {"model": PRO, "aspect_ratio": "21:9"},
        "aspect_ratio",
        [PRO, "16:9, 9:16, 1:1, 4:3, 3:4, adaptive"],
        id="seedance-21-9",
    ),
    pytest.param(
        {"model": SORA, "size": "1024x1024"},
        "size",
        [SORA, "valid values: 720x1280, 1280x720"],
        id="sora-size",
    ),
    pytest.param(
        {"model": VEO_FAST, "fps": 25}, "fps", [VEO_FAST, "valid values: 24, 30"], id="veo-fps"
    ),
    pytest.param(
        {"model": SORA, "resolution": "720p"},
        "resolution",
        ["sora-2 does not take resolution", "aspect_ratio, size"],
        id="sora-resolution",
    ),
    pytest.param(
        {"model": VEO_FAST, "size": "1280x720"},
        "size",
        ["does not take size", "models that take it: sora-2, wan2.5-t2v-preview"],
        id="veo-size",
    ),
    pytest.param(
        {"model": PRO, "camera_fixed": True},
        "camera_fixed",
        [f"{PRO} does not take camera_fixed", f"models that take it: {LITE_T2V}, {LITE_I2V}"],
        id="pro-camera-fixed",
    ),
    pytest.param(
        {"model": LITE_T2V, "image": IMG},
        "image",
        [f"{LITE_T2V} does not take image", LITE_I2V],
        id="lite-t2v-image",
    ),
    pytest.param(
        {"model": VEO_30, "image": IMG, "last_frame": IMG2},
        "last_frame",
        [f"{VEO_30} does not take last_frame", VEO_FAST, VEO_31],
        id="veo30-last-frame",
    ),
    pytest.param(
        {"model": PRO, "reference_images": [IMG]},
        "reference_images",
        ["does not take reference_images", f"models that take it: {LITE_I2V}"],
        id="pro-reference-images",
    ),
    pytest.param(
        {"model": VEO_FAST, "remix_from_video_id": "video_1"},
        "remix_from_video_id",
        ["does not take remix_from_video_id", "models that take it: sora-2"],
        id="veo-remix",
    ),
    pytest.param(
        {"model": SORA, "remix_from_video_id": "task_123"},
        "remix_from_video_id",
        [SORA, "starting with video_"],
        id="remix-prefix",
    ),
    pytest.param(
        {"model": PRO_15, "callback_url": "http://example.com/cb?token=secret"},
        "callback_url",
        [PRO_15, "an https:// URL"],
        id="callback-http",
    ),
    pytest.param(
        {"model": VEO_FAST, "return_last_frame": True},
        "return_last_frame",
        ["does not take return_last_frame", PRO_15, FLF2V],
        id="veo-return-last-frame",
    ),
    pytest.param(
        {"model": WAN_T2V, "person_generation": "dont_allow"},
        "person_generation",
        ["does not take person_generation", VEO_FAST],
        id="wan-person-generation",
    ),
    pytest.param(
        {"model": PRO, "sample_count": 2},
        "sample_count",
        ["does not take sample_count", VEO_31],
        id="seedance-sample-count",
    ),
    pytest.param(
        {"model": VEO_FAST, "smart_rewrite": True},
        "smart_rewrite",
        ["does not take smart_rewrite", WAN_T2V],
        id="veo-smart-rewrite",
    ),
    pytest.param(
        {"model": VEO_FAST, "audio_url": "https://example.com/a.mp3"},
        "audio_url",
        ["does not take audio_url", f"{WAN_T2V}, {WAN_I2V}"],
        id="veo-audio-url",
    ),
    pytest.param(
        {"model": PRO, "generate_audio": True},
        "generate_audio",
        [f"{PRO} does not take generate_audio", VEO_FAST, WAN_T2V],
        id="seedance-generate-audio",
    ),
    pytest.param(
        {"model": SORA, "seed": 1},
        "seed",
        ["sora-2 does not take seed", "arguments sora-2 takes: model, prompt, duration"],
        id="sora-seed",
    ),
    # --- modes
    pytest.param(
        {"model": WAN_I2V},
        "image",
        [f"is required by {WAN_I2V}", "first_frame (image)"],
        id="wan-i2v-no-image",
    ),
    pytest.param(
        {"model": LITE_I2V},
        "image",
        [f"is required by {LITE_I2V}", "reference_images (reference_images)"],
        id="lite-i2v-no-image",
    ),
    pytest.param(
        {"model": FLF2V, "image": IMG},
        "image",
        [f"image alone is not a mode of {FLF2V}", "first_last_frame (image + last_frame)"],
        id="flf2v-image-only",
    ),
    pytest.param(
        {"model": VEO_31, "last_frame": IMG},
        "last_frame",
        ["last_frame alone is not a mode", "first_last_frame (image + last_frame)"],
        id="last-frame-without-image",
    ),
    pytest.param(
        {"model": LITE_I2V, "image": IMG, "reference_images": [IMG2]},
        "reference_images",
        ["image + reference_images together", "reference_images (reference_images)"],
        id="image-with-reference-images",
    ),
    pytest.param(
        {"model": SORA, "image": IMG, "remix_from_video_id": "video_1"},
        "remix_from_video_id",
        ["image + remix_from_video_id together", "remix (remix_from_video_id)"],
        id="remix-with-image",
    ),
    # --- combinations
    pytest.param(
        {"model": LITE_I2V, "reference_images": [IMG], "resolution": "1080p"},
        "resolution",
        ["1080p cannot be combined with reference_images", "valid values with reference_images:"],
        id="reference-images-1080p",
    ),
    pytest.param(
        {"model": SORA, "size": "1280x720", "aspect_ratio": "9:16"},
        "size",
        ["does not match aspect_ratio 9:16", "picks 720x1280 on sora-2"],
        id="sora-size-vs-aspect",
    ),
    pytest.param(
        {"model": WAN_T2V, "resolution": "720p"},
        "aspect_ratio",
        ["resolution + aspect_ratio together", "valid values: 16:9, 9:16, 1:1, 4:3, 3:4"],
        id="wan-resolution-alone",
    ),
    pytest.param(
        {"model": WAN_T2V, "size": "1280*720", "aspect_ratio": "16:9"},
        "resolution",
        ["came without resolution", "or leave out aspect_ratio 16:9"],
        id="wan-size-with-aspect-only",
    ),
    pytest.param(
        {"model": WAN_T2V, "resolution": "480p", "aspect_ratio": "4:3"},
        "aspect_ratio",
        [f"{WAN_T2V} has no size for resolution 480p + aspect_ratio 4:3", "720p 4:3 -> 1088*832"],
        id="wan-480p-4-3",
    ),
    pytest.param(
        {"model": WAN_T2V, "size": "1280*720", "resolution": "1080p", "aspect_ratio": "16:9"},
        "size",
        ["does not match", "which picks 1920*1080"],
        id="wan-size-vs-resolution",
    ),
    # --- Seedance prompt markers
    pytest.param(
        {"model": LITE_T2V, "prompt": "A cat --dur 7"},
        "prompt",
        ["--dur 7 in the prompt", LITE_T2V, "valid values: 5, 10"],
        id="marker-dur",
    ),
    pytest.param(
        {"model": LITE_T2V, "prompt": "A cat --ratio adaptive"},
        "prompt",
        ["--ratio adaptive in the prompt", "valid values: 16:9, 9:16, 1:1, 4:3, 3:4"],
        id="marker-adaptive",
    ),
    pytest.param(
        {"model": PRO, "prompt": "A cat --camerafixed true"},
        "prompt",
        ["--camerafixed true in the prompt", f"{PRO} does not take camera_fixed"],
        id="marker-not-taken",
    ),
    pytest.param(
        {"model": PRO, "prompt": "A cat --wm maybe"},
        "prompt",
        ["--wm maybe in the prompt", "is not true or false", "valid values: true, false"],
        id="marker-bad-boolean",
    ),
    pytest.param(
        {"model": PRO, "prompt": "A cat --seed"},
        "prompt",
        ["--seed has no value", "valid range: 0 to 2147483647"],
        id="marker-without-value",
    ),
    pytest.param(
        {"model": PRO, "prompt": "A cat --fps sixty"},
        "prompt",
        ["'sixty' is not a whole number", "valid values: 24, 30"],
        id="marker-not-a-number",
    ),
    pytest.param(
        {"model": PRO, "prompt": "A cat --dur 10", "duration": 5},
        "duration",
        ["5 conflicts with --dur 10 in the prompt", "set duration once"],
        id="marker-conflicts-with-argument",
    ),
    pytest.param(
        {"model": PRO, "prompt": "A cat --rs 720p --resolution 1080p"},
        "prompt",
        ["--rs 720p and --resolution 1080p both set resolution", "keep one"],
        id="markers-conflict",
    ),
    pytest.param(
        {"model": LITE_I2V, "prompt": "[图1] dog --rs 1080p", "reference_images": [IMG]},
        "prompt",
        ["--rs 1080p in the prompt cannot be combined with reference_images", "480p, 720p"],
        id="marker-1080p-with-reference-images",
    ),
    pytest.param(
        {"model": PRO_15, "prompt": "A cat --seed -1"},
        "prompt",
        ["--seed -1 in the prompt", "valid range: 0 to 2147483647"],
        id="marker-negative-seed",
    ),
]


@pytest.mark.parametrize(("kwargs", "field", "expected"), REFUSALS)
def test_refusal(kwargs: dict[str, Any], field: str, expected: list[str]) -> None:
    problems = refused(**kwargs)
    assert [p.field for p in problems] == [field], problems
    for text in expected:
        assert text in problems[0].message, (text, problems[0].message)


def test_refusal_count() -> None:
    assert len(REFUSALS) >= 30


def test_the_message_reads_like_the_issue_asks() -> None:
    (problem,) = refused(model=VEO_FAST, duration=7)
    assert str(problem) == (
        "duration: 7 is not supported by veo-3.1-fast-generate-preview; valid values: 4, 6, 8"
    )


def test_every_problem_of_a_call_is_reported_together() -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        validate(
            VideoArguments(
                model=VEO_FAST,
                prompt="A city at dawn",
                duration=7,
                resolution="480p",
                camera_fixed=True,
                fps=60,
            )
        )
    error = info.value
    assert [p.field for p in error.problems] == ["duration", "resolution", "fps", "camera_fixed"]
    assert error.model == VEO_FAST
    text = str(error)
    assert text.startswith(f"Invalid arguments for model '{VEO_FAST}' (4 problems):")
    assert "- fps: 60 is not supported by" in text
    assert text.endswith("Nothing was sent to the Gravitex API.")


def test_unknown_model_and_blank_prompt_together() -> None:
    problems = refused(model="veo-4", prompt="")
    assert [p.field for p in problems] == ["model", "prompt"]


def test_seedance_arguments_and_markers_together() -> None:
    problems = refused(
        model=LITE_I2V,
        prompt="[图1] a dog --dur 7 --cf yes",
        reference_images=[IMG],
        image=IMG2,
        resolution="1080p",
        callback_url="ftp://example.com",
    )
    fields = [p.field for p in problems]
    assert fields == ["callback_url", "prompt", "prompt", "reference_images", "resolution"]


def test_callback_url_query_string_is_not_echoed() -> None:
    (problem,) = refused(model=PRO_15, callback_url="http://example.com/cb?token=secret")
    assert "secret" not in problem.message


# --- accepted -----------------------------------------------------------------


def test_fast_veo_accepts_generate_audio_false_with_a_note() -> None:
    args = accepted(model=VEO_FAST, generate_audio=False)
    notes = validate(args).notes
    assert len(notes) == 1
    assert "always include audio" in notes[0]
    args = accepted(model=VEO_31, generate_audio=False)
    assert validate(args).notes == ()
    args = accepted(model=VEO_FAST, generate_audio=True)
    assert validate(args).notes == ()


def test_markers_that_agree_with_arguments_are_fine() -> None:
    accepted(
        model=LITE_I2V,
        prompt="A bird --resolution 720p --duration 5 --framespersecond 24 --camerafixed false",
        resolution="720p",
        duration=5,
        fps=24,
        camera_fixed=False,
        image=IMG,
    )
    accepted(model=PRO, prompt="A cat --rs 720p --rs 720p")


def test_other_double_dash_words_are_prompt_text() -> None:
    accepted(model=PRO, prompt="A cat -- sleeping --quietly --durations 7 --dur-ation 7")
    # Markers mean nothing to other families: the prompt is just text.
    accepted(model=VEO_FAST, prompt="A cat --dur 7 --cf true")


def test_sizes_in_either_spelling() -> None:
    accepted(model=SORA, size="1280*720", aspect_ratio="16:9")
    accepted(model=WAN_T2V, size="1280x720")
    accepted(model=WAN_T2V, size="1088*832", resolution="720p", aspect_ratio="4:3")


def test_null_counts_as_not_given() -> None:
    args = accepted(model=PRO, seed=None, camera_fixed=None, generate_audio=None)
    assert args.given() == {"model": PRO, "prompt": "A cat on a sofa"}


def test_given_keeps_declaration_order_and_skips_server_arguments() -> None:
    request = GenerateVideoInput(
        model=VEO_FAST, seed=3, prompt="p", duration=4, dry_run=True, wait_seconds=0
    )
    assert list(request.given()) == ["model", "prompt", "duration", "seed"]


def test_pydantic_refuses_unknown_names_and_contract_violations() -> None:
    with pytest.raises(ValidationError):
        VideoArguments(model=SORA, prompt="p", seconds=4)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        VideoArguments(model=SORA, prompt="p", seed=-1)
    with pytest.raises(ValidationError):
        VideoArguments(model=SORA, prompt="p", sample_count=5)
    with pytest.raises(ValidationError):
        VideoArguments(model=SORA, prompt="p", resolution="2k")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        VideoArguments(model=SORA, prompt="p", reference_images=[])
    with pytest.raises(ValidationError):
        GenerateVideoInput(model=SORA, prompt="p", wait_seconds=601)


def test_generate_video_input_defaults() -> None:
    request = GenerateVideoInput(model=SORA, prompt="p")
    assert (request.dry_run, request.wait_seconds, request.download) == (False, 35, False)


def test_wan_t2v_size_outside_its_table_is_refused() -> None:
    with pytest.raises(InvalidArgumentsError) as info:
        validate(VideoArguments(model=WAN_T2V, prompt="a cat", size="5*5"))
    message = str(info.value)
    assert "size" in message
    assert "1280*720" in message
    assert "1920*1080" in message
