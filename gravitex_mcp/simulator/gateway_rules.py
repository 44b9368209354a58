"""What the simulated gateway accepts in a submit body, family by family.

This is deliberately a separate, small reading of the upstream docs, written
without looking at (or importing) the project's own catalog and validation:
when our validation or translation has a bug, the simulator answers 400 the
way the real gateway would instead of agreeing with us.

Errors look like an OpenAI-style gateway's::

    {"error": {"message": ..., "type": "invalid_request_error", "param": ..., "code": ...}}

Only the first problem is reported, as gateways do. The readers of one field or
medium, and the error itself, are in ``gateway_fields``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..domain import Family
from ..images import image_dimensions
from .gateway_fields import (
    SEED_MAX,
    GatewayError,
    check_fields,
    check_https,
    json_type,
    missing,
    not_supported,
    read_audio,
    read_bool,
    read_enum,
    read_image,
    read_int,
    read_str,
    type_error,
    unknown,
    value_error,
)

ImageMode = Literal["first_frame", "first_last_frame", "reference_image"]


@dataclass(frozen=True, slots=True)
class ModelRule:
    """The little the gateway knows about one model."""

    id: str
    family: Family
    # Veo: whether lastFrame is taken (3.1 only)
    last_frame: bool = False
    # Wan 2.5: text-to-video (size, no image) or image-to-video (image required)
    wan_i2v: bool = False
    # Seedance family
    image_modes: frozenset[ImageMode] = frozenset()
    image_required: bool = False
    durations: range = range(2, 13)
    resolutions: frozenset[str] = frozenset({"480p", "720p", "1080p"})
    adaptive_ratio: bool = True
    camera_fixed: bool = False
    reference_1080p: bool = True


_FIRST: frozenset[ImageMode] = frozenset({"first_frame"})
_FIRST_LAST: frozenset[ImageMode] = frozenset({"first_frame", "first_last_frame"})
_ALL_MODES: frozenset[ImageMode] = frozenset({"first_frame", "first_last_frame", "reference_image"})
_DUR_15 = range(4, 13)
_RES_15 = frozenset({"480p", "720p"})


def _rules() -> dict[str, ModelRule]:
    s, v, w, d = Family.SORA, Family.VEO, Family.WAN, Family.SEEDANCE
    rules = [
        ModelRule("sora-2", s),
        ModelRule("veo-3.1-generate-preview", v, last_frame=True),
        ModelRule("veo-3.1-fast-generate-preview", v, last_frame=True),
        ModelRule("veo-3.0-generate-preview", v),
        ModelRule("veo-3.0-fast-generate-001", v),
        ModelRule("wan2.5-t2v-preview", w),
        ModelRule("wan2.5-i2v-preview", w, wan_i2v=True),
        ModelRule(
            "doubao-seedance-1-0-lite-t2v-250428", d, adaptive_ratio=False, camera_fixed=True
        ),
        ModelRule(
            "doubao-seedance-1-0-lite-i2v-250428",
            d,
            image_modes=_ALL_MODES,
            image_required=True,
            camera_fixed=True,
            reference_1080p=False,
        ),
        ModelRule("doubao-seedance-1-0-pro-250528", d, image_modes=_FIRST),
        ModelRule(
            "doubao-seedance-1-5-pro-251215",
            d,
            image_modes=_FIRST_LAST,
            durations=_DUR_15,
            resolutions=_RES_15,
        ),
        ModelRule(
            "doubao-seedance-1-5-pro-251215-noAudio",
            d,
            image_modes=_FIRST_LAST,
            durations=_DUR_15,
            resolutions=_RES_15,
        ),
        ModelRule("doubao-seaweed-1-0-t2v-250428", d),
        ModelRule("wan2-1-14b-i2v-250417", d, image_modes=_FIRST, image_required=True),
        ModelRule(
            "wan2-1-14b-flf2v-250417",
            d,
            image_modes=frozenset({"first_last_frame"}),
            image_required=True,
        ),
    ]
    return {r.id: r for r in rules}


MODELS: Mapping[str, ModelRule] = _rules()


@dataclass(frozen=True, slots=True)
class Accepted:
    """A submit body the gateway took: its model and the text prompt markers are read from."""

    rule: ModelRule
    prompt: str
    body: dict[str, Any] = field(repr=False)


# --- the families ----------------------------------------------------------------

SORA_SECONDS = ("4", "8", "12")
SORA_SIZES = ("720x1280", "1280x720")
SORA_FIELDS = frozenset(
    {"model", "prompt", "seconds", "size", "width", "height", "input_reference"}
    | {"remix_from_video_id"}
)


def _sora(rule: ModelRule, body: Mapping[str, Any], strict: bool) -> str:
    check_fields(body, SORA_FIELDS, strict)
    prompt = read_str(body, "prompt", required=True)
    assert prompt is not None
    read_enum(body, "seconds", SORA_SECONDS)
    size = read_enum(body, "size", SORA_SIZES)
    width = read_int(body, "width", range(1, 100_000))
    height = read_int(body, "height", range(1, 100_000))
    if (width is None) != (height is None):
        raise missing("height" if height is None else "width")
    if width is not None:
        wh = f"{width}x{height}"
        if wh not in SORA_SIZES:
            raise value_error("width", wh, SORA_SIZES)
        if size is not None and size != wh:
            raise GatewayError(f"'size' {size!r} disagrees with width/height {wh!r}.", param="size")
        size = wh
    if "input_reference" in body and body["input_reference"] is not None:
        data = read_image(body["input_reference"], "input_reference")
        dims = image_dimensions(data) if data is not None else None
        want = size or SORA_SIZES[0]
        if dims is not None and f"{dims[0]}x{dims[1]}" != want:
            raise GatewayError(
                f"Inpaint image must match the requested width and height: the image is "
                f"{dims[0]}x{dims[1]}, the video is {want}.",
                param="input_reference",
            )
    remix = read_str(body, "remix_from_video_id")
    if remix is not None and not (remix.startswith("video_") and len(remix) > len("video_")):
        raise GatewayError(
            "Invalid 'remix_from_video_id': it must be a video id starting with 'video_'.",
            param="remix_from_video_id",
        )
    return prompt


VEO_FIELDS = frozenset(
    {"model", "prompt", "durationSeconds", "aspectRatio", "resolution", "fps", "image"}
    | {"lastFrame", "generateAudio", "personGeneration", "addWatermark", "seed", "sampleCount"}
)


def _veo(rule: ModelRule, body: Mapping[str, Any], strict: bool) -> str:
    check_fields(body, VEO_FIELDS, strict)
    prompt = read_str(body, "prompt", required=True)
    assert prompt is not None
    read_int(body, "durationSeconds", (4, 6, 8))
    read_enum(body, "aspectRatio", ("16:9", "9:16"))
    read_enum(body, "resolution", ("720p", "1080p"))
    read_int(body, "fps", range(1, 61))
    read_bool(body, "generateAudio")
    read_enum(body, "personGeneration", ("allow_all", "allow_adult", "dont_allow"))
    read_bool(body, "addWatermark")
    read_int(body, "seed", range(4_294_967_296))
    read_int(body, "sampleCount", range(1, 5))
    has_image = body.get("image") is not None
    if has_image:
        read_image(body["image"], "image")
    if body.get("lastFrame") is not None:
        if not rule.last_frame:
            raise not_supported("lastFrame", rule.id)
        if not has_image:
            raise GatewayError("'lastFrame' needs a first frame in 'image'.", param="image")
        read_image(body["lastFrame"], "lastFrame")
    return prompt


WAN_T2V_SIZES = frozenset(
    {"832*480", "480*832", "624*624"}
    | {"1280*720", "720*1280", "960*960", "1088*832", "832*1088"}
    | {"1920*1080", "1080*1920", "1440*1440", "1632*1248", "1248*1632"}
)
WAN_FIELDS = frozenset(
    {"model", "prompt", "duration", "resolution", "size", "image", "smart_rewrite"}
    | {"generate_audio", "audio_url", "seed"}
)


def _wan(rule: ModelRule, body: Mapping[str, Any], strict: bool) -> str:
    check_fields(body, WAN_FIELDS, strict)
    prompt = read_str(body, "prompt", required=True)
    assert prompt is not None
    read_int(body, "duration", (5, 10))
    read_enum(body, "resolution", ("480p", "720p", "1080p"))
    read_bool(body, "smart_rewrite")
    read_bool(body, "generate_audio")
    read_int(body, "seed", range(SEED_MAX + 1))
    if body.get("audio_url") is not None:
        read_audio(body["audio_url"], "audio_url")
    if rule.wan_i2v:
        if body.get("size") is not None:
            raise not_supported("size", rule.id)
        if body.get("image") is None:
            raise missing("image")
        read_image(body["image"], "image")
    else:
        if body.get("image") is not None:
            raise not_supported("image", rule.id)
        read_enum(body, "size", WAN_T2V_SIZES)
    return prompt


SEEDANCE_FIELDS = frozenset({"model", "metadata", "prompt"})
SEEDANCE_METADATA_FIELDS = frozenset({"content", "return_last_frame", "callback_url"})
SEEDANCE_RATIOS = ("16:9", "9:16", "1:1", "4:3", "3:4", "adaptive")
SEEDANCE_ROLES = ("first_frame", "last_frame", "reference_image")
_FLAG_NAMES = {
    "rs": "resolution",
    "resolution": "resolution",
    "ratio": "ratio",
    "dur": "duration",
    "duration": "duration",
    "fps": "fps",
    "framespersecond": "fps",
    "seed": "seed",
    "wm": "watermark",
    "watermark": "watermark",
    "cf": "camerafixed",
    "camerafixed": "camerafixed",
}
_FLAG = re.compile(r"(?<!\S)--([A-Za-z]+)(?:[ \t]+(?!--)(\S+))?")


def parse_flags(text: str) -> tuple[str, dict[str, tuple[str, str | None]]]:
    """Split a Seedance text into the prompt and its ``--flag value`` markers.

    Returns (prompt without markers, {canonical name or raw unknown name:
    (the name as written, value or None)}).
    """
    flags: dict[str, tuple[str, str | None]] = {}
    for match in _FLAG.finditer(text):
        written, value = match.group(1), match.group(2)
        flags[_FLAG_NAMES.get(written.lower(), written)] = (written, value)
    return " ".join(_FLAG.sub(" ", text).split()), flags


def _flag_int(param: str, value: str, valid: range) -> int:
    if not re.fullmatch(r"-?\d+", value) or int(value) not in valid:
        raise value_error(param, value, f"integers from {valid.start} to {valid.stop - 1}")
    return int(value)


def _seedance_flags(rule: ModelRule, text: str, strict: bool) -> dict[str, str]:
    _, flags = parse_flags(text)
    seen: dict[str, str] = {}
    for name, (written, value) in flags.items():
        param = f"--{written}"
        if name not in _FLAG_NAMES.values():
            if strict:
                raise GatewayError(
                    f"Unknown parameter marker '{param}' in the prompt text.",
                    code="unknown_parameter",
                    param="metadata.content[0].text",
                )
            continue
        if value is None:
            raise GatewayError(
                f"Parameter marker '{param}' has no value.", param="metadata.content[0].text"
            )
        if name == "resolution" and value not in rule.resolutions:
            raise value_error(param, value, sorted(rule.resolutions))
        if name == "ratio":
            ratios = [r for r in SEEDANCE_RATIOS if rule.adaptive_ratio or r != "adaptive"]
            if value not in ratios:
                raise value_error(param, value, ratios)
        if name == "duration":
            _flag_int(param, value, rule.durations)
        if name == "fps":
            _flag_int(param, value, range(1, 61))
        if name == "seed":
            _flag_int(param, value, range(-1, 4_294_967_296))
        if name in ("watermark", "camerafixed") and value not in ("true", "false"):
            raise value_error(param, value, ("true", "false"))
        if name == "camerafixed" and not rule.camera_fixed:
            raise not_supported(param, rule.id)
        seen[name] = value
    return seen


def _seedance_images(rule: ModelRule, items: list[Any]) -> ImageMode | None:
    roles: list[str | None] = []
    for index, item in enumerate(items, start=1):
        where = f"metadata.content[{index}]"
        if not isinstance(item, dict):
            raise type_error(where, "an object", item)
        if item.get("type") != "image_url":
            raise GatewayError(
                f"'{where}.type' must be 'image_url' (only the first item is text).",
                param=f"{where}.type",
            )
        for key in item:
            if key not in ("type", "image_url", "role"):
                raise unknown(f"{where}.{key}")
        image_url = item.get("image_url")
        if not isinstance(image_url, dict):
            raise type_error(f"{where}.image_url", "an object", image_url)
        if "url" not in image_url:
            raise missing(f"{where}.image_url.url")
        read_image(image_url["url"], f"{where}.image_url.url")
        role = item.get("role")
        if role is not None and role not in SEEDANCE_ROLES:
            raise value_error(f"{where}.role", role, SEEDANCE_ROLES)
        roles.append(role)
    if not roles:
        if rule.image_required:
            raise GatewayError(
                f"Model '{rule.id}' needs at least one image_url item in metadata.content.",
                code="missing_required_parameter",
                param="metadata.content",
            )
        return None
    mode: ImageMode
    if "reference_image" in roles:
        if any(r != "reference_image" for r in roles):
            raise GatewayError(
                "Reference images cannot be mixed with first/last frame images.",
                param="metadata.content",
            )
        if len(roles) > 4:
            raise GatewayError(
                "At most 4 reference images are supported.", param="metadata.content"
            )
        mode = "reference_image"
    elif len(roles) == 1:
        if roles[0] == "last_frame":
            raise GatewayError(
                "A last_frame image needs a first_frame image.", param="metadata.content[1].role"
            )
        mode = "first_frame"
    elif len(roles) == 2 and sorted(r or "" for r in roles) == ["first_frame", "last_frame"]:
        mode = "first_last_frame"
    else:
        raise GatewayError(
            "Two images must be marked role 'first_frame' and role 'last_frame'; "
            "more images are only allowed as reference_image.",
            param="metadata.content",
        )
    if mode not in rule.image_modes:
        if not rule.image_modes:
            raise GatewayError(
                f"Model '{rule.id}' does not support image input.",
                code="unsupported_parameter",
                param="metadata.content",
            )
        raise GatewayError(
            f"Model '{rule.id}' does not support {mode} mode; "
            f"supported: {', '.join(sorted(rule.image_modes))}.",
            code="unsupported_parameter",
            param="metadata.content",
        )
    return mode


def _seedance(rule: ModelRule, body: Mapping[str, Any], strict: bool) -> str:
    check_fields(body, SEEDANCE_FIELDS, strict)
    read_str(body, "prompt")  # tolerated, not used: the prompt is the text item
    metadata = body.get("metadata")
    if metadata is None:
        raise missing("metadata")
    if not isinstance(metadata, dict):
        raise type_error("metadata", "an object", metadata)
    for key in metadata:
        if strict and key not in SEEDANCE_METADATA_FIELDS:
            raise unknown(f"metadata.{key}")
    read_bool(metadata, "return_last_frame")
    if metadata.get("callback_url") is not None:
        check_https(metadata["callback_url"], "metadata.callback_url")
    content = metadata.get("content")
    if content is None:
        raise missing("metadata.content")
    if not isinstance(content, list):
        raise type_error("metadata.content", "an array", content)
    if not content:
        raise GatewayError(
            "'metadata.content' must start with a text item.",
            code="missing_required_parameter",
            param="metadata.content[0]",
        )
    first = content[0]
    if not isinstance(first, dict) or first.get("type") != "text":
        raise GatewayError(
            '\'metadata.content[0]\' must be a text item: {"type": "text", "text": ...}.',
            param="metadata.content[0]",
        )
    for key in first:
        if key not in ("type", "text"):
            raise unknown(f"metadata.content[0].{key}")
    text = read_str(first, "text", required=True)
    assert text is not None
    flags = _seedance_flags(rule, text, strict)
    mode = _seedance_images(rule, content[1:])
    if (
        mode == "reference_image"
        and not rule.reference_1080p
        and flags.get("resolution") == "1080p"
    ):
        raise GatewayError(
            f"Reference image mode of '{rule.id}' does not support 1080p.", param="--rs"
        )
    return text


_VALIDATORS = {Family.SORA: _sora, Family.VEO: _veo, Family.WAN: _wan, Family.SEEDANCE: _seedance}


def validate_submit(body: object, *, strict: bool = True) -> Accepted:
    """Accept a parsed JSON submit body or raise :class:`GatewayError` (400).

    ``strict`` refuses fields (and Seedance ``--markers``) the family does not
    document, which is what catches a translation that sends the wrong name.
    """
    if not isinstance(body, dict):
        raise GatewayError(
            f"The request body must be a JSON object, not {json_type(body)}.",
            code="invalid_request_body",
        )
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str):
        raise type_error("model", "a string", model)
    rule = MODELS.get(model)
    if rule is None:
        raise GatewayError(
            f"The model '{model}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    prompt = _VALIDATORS[rule.family](rule, body, strict)
    return Accepted(rule=rule, prompt=prompt, body=body)
