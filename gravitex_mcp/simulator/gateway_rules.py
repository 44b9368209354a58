"""What the simulated gateway accepts in a submit body, family by family.

This is deliberately a separate, small reading of the upstream docs, written
without looking at (or importing) the project's own catalog and validation:
when our validation or translation has a bug, the simulator answers 400 the
way the real gateway would instead of agreeing with us.

Errors look like an OpenAI-style gateway's::

    {"error": {"message": ..., "type": "invalid_request_error", "param": ..., "code": ...}}

Only the first problem is reported, as gateways do.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..domain import Family
from ..images import JPEG, PNG, WEBP, image_dimensions, sniff_image_type

MAX_IMAGE_BYTES = 10 * 1024 * 1024
SEED_MAX = 2_147_483_647


class GatewayError(Exception):
    """A refusal, with the HTTP status and the JSON error object to send."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_value",
        param: str | None = None,
        status: int = 400,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.status = status
        self.error_type = error_type

    def to_json(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


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


# --- small readers ------------------------------------------------------------


_JSON_TYPES: dict[type, str] = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), "an unknown type")


def _type_error(param: str, expected: str, value: object) -> GatewayError:
    return GatewayError(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        code="invalid_type",
        param=param,
    )


def _value_error(param: str, value: object, valid: Collection[object] | str) -> GatewayError:
    if isinstance(valid, str):
        supported = valid
    else:
        items = [f"'{v}'" if isinstance(v, str) else str(v) for v in valid]
        supported = ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1]
    return GatewayError(
        f"Invalid value for '{param}': {value!r}. Supported values are: {supported}.", param=param
    )


def _missing(param: str) -> GatewayError:
    return GatewayError(
        f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param
    )


def _unknown(param: str) -> GatewayError:
    return GatewayError(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param)


def _not_supported(param: str, model: str) -> GatewayError:
    return GatewayError(
        f"Parameter '{param}' is not supported by model '{model}'.",
        code="unsupported_parameter",
        param=param,
    )


def _check_fields(body: Mapping[str, Any], allowed: Collection[str], strict: bool) -> None:
    if not strict:
        return
    for name in body:
        if name not in allowed:
            raise _unknown(name)


def _str(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    if name not in body or body[name] is None:
        if required:
            raise _missing(name)
        return None
    value = body[name]
    if not isinstance(value, str):
        raise _type_error(name, "a string", value)
    if required and not value.strip():
        raise GatewayError(f"'{name}' must not be empty.", param=name)
    return value


def _int(body: Mapping[str, Any], name: str, valid: range | Collection[int]) -> int | None:
    if name not in body or body[name] is None:
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "an integer", value)
    if value not in valid:
        if isinstance(valid, range):
            raise _value_error(name, value, f"integers from {valid.start} to {valid.stop - 1}")
        ordered = list(valid) if isinstance(valid, tuple | list) else sorted(valid)
        raise _value_error(name, value, ordered)
    return value


def _bool(body: Mapping[str, Any], name: str) -> bool | None:
    if name not in body or body[name] is None:
        return None
    value = body[name]
    if not isinstance(value, bool):
        raise _type_error(name, "a boolean", value)
    return value


def _enum(body: Mapping[str, Any], name: str, valid: Collection[str]) -> str | None:
    value = _str(body, name)
    if value is not None and value not in valid:
        ordered = list(valid) if isinstance(valid, tuple | list) else sorted(valid)
        raise _value_error(name, value, ordered)
    return value


# --- media references -----------------------------------------------------------

_DATA_IMAGE = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_DATA_AUDIO = re.compile(r"data:(audio/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_IMAGE_TYPES = {"image/png": PNG, "image/jpeg": JPEG, "image/jpg": JPEG, "image/webp": WEBP}


def _image(value: object, param: str) -> bytes | None:
    """Check an image reference; the decoded bytes for a data URL, ``None`` for a URL."""
    if not isinstance(value, str):
        raise _type_error(param, "a string", value)
    if value.startswith(("https://", "http://")):
        return None
    match = _DATA_IMAGE.fullmatch(value)
    if match is None:
        raise GatewayError(
            f"Invalid image for '{param}': expected an http(s) URL or a base64 data URL "
            "(data:image/png;base64,...).",
            code="invalid_image",
            param=param,
        )
    declared = _IMAGE_TYPES.get(match.group(1).lower())
    if declared is None:
        raise GatewayError(
            f"Unsupported image type {match.group(1)!r} for '{param}': use PNG, JPEG or WEBP.",
            code="invalid_image",
            param=param,
        )
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise GatewayError(
            f"Invalid base64 image data for '{param}'.", code="invalid_image", param=param
        ) from None
    if len(data) > MAX_IMAGE_BYTES:
        raise GatewayError(
            f"Image for '{param}' is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} bytes.",
            code="image_too_large",
            param=param,
        )
    actual = sniff_image_type(data)
    if actual is None:
        raise GatewayError(
            f"The data for '{param}' is not a PNG, JPEG or WEBP image.",
            code="invalid_image",
            param=param,
        )
    if actual != declared:
        raise GatewayError(
            f"The data for '{param}' is a {actual.removeprefix('image/').upper()} image but is "
            f"labelled {match.group(1)}.",
            code="invalid_image",
            param=param,
        )
    return data


def _audio(value: object, param: str) -> None:
    if not isinstance(value, str):
        raise _type_error(param, "a string", value)
    if value.startswith("https://"):
        return
    match = _DATA_AUDIO.fullmatch(value)
    if match is not None:
        try:
            base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise GatewayError(
                f"Invalid base64 audio data for '{param}'.", code="invalid_audio", param=param
            ) from None
        return
    raise GatewayError(
        f"Invalid audio for '{param}': expected an https URL.", code="invalid_audio", param=param
    )


def _https(value: object, param: str) -> None:
    if not isinstance(value, str):
        raise _type_error(param, "a string", value)
    if not value.startswith("https://"):
        raise GatewayError(f"Invalid URL for '{param}': an https URL is required.", param=param)


# --- the families ----------------------------------------------------------------

SORA_SECONDS = ("4", "8", "12")
SORA_SIZES = ("720x1280", "1280x720")
SORA_FIELDS = frozenset(
    {"model", "prompt", "seconds", "size", "width", "height", "input_reference"}
    | {"remix_from_video_id"}
)


def _sora(rule: ModelRule, body: Mapping[str, Any], strict: bool) -> str:
    _check_fields(body, SORA_FIELDS, strict)
    prompt = _str(body, "prompt", required=True)
    assert prompt is not None
    _enum(body, "seconds", SORA_SECONDS)
    size = _enum(body, "size", SORA_SIZES)
    width = _int(body, "width", range(1, 100_000))
    height = _int(body, "height", range(1, 100_000))
    if (width is None) != (height is None):
        raise _missing("height" if height is None else "width")
    if width is not None:
        wh = f"{width}x{height}"
        if wh not in SORA_SIZES:
            raise _value_error("width", wh, SORA_SIZES)
        if size is not None and size != wh:
            raise GatewayError(f"'size' {size!r} disagrees with width/height {wh!r}.", param="size")
        size = wh
    if "input_reference" in body and body["input_reference"] is not None:
        data = _image(body["input_reference"], "input_reference")
        dims = image_dimensions(data) if data is not None else None
        want = size or SORA_SIZES[0]
        if dims is not None and f"{dims[0]}x{dims[1]}" != want:
            raise GatewayError(
                f"Inpaint image must match the requested width and height: the image is "
                f"{dims[0]}x{dims[1]}, the video is {want}.",
                param="input_reference",
            )
    remix = _str(body, "remix_from_video_id")
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
    _check_fields(body, VEO_FIELDS, strict)
    prompt = _str(body, "prompt", required=True)
    assert prompt is not None
    _int(body, "durationSeconds", (4, 6, 8))
    _enum(body, "aspectRatio", ("16:9", "9:16"))
    _enum(body, "resolution", ("720p", "1080p"))
    _int(body, "fps", range(1, 61))
    _bool(body, "generateAudio")
    _enum(body, "personGeneration", ("allow_all", "allow_adult", "dont_allow"))
    _bool(body, "addWatermark")
    _int(body, "seed", range(4_294_967_296))
    _int(body, "sampleCount", range(1, 5))
    has_image = body.get("image") is not None
    if has_image:
        _image(body["image"], "image")
    if body.get("lastFrame") is not None:
        if not rule.last_frame:
            raise _not_supported("lastFrame", rule.id)
        if not has_image:
            raise GatewayError("'lastFrame' needs a first frame in 'image'.", param="image")
        _image(body["lastFrame"], "lastFrame")
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
    _check_fields(body, WAN_FIELDS, strict)
    prompt = _str(body, "prompt", required=True)
    assert prompt is not None
    _int(body, "duration", (5, 10))
    _enum(body, "resolution", ("480p", "720p", "1080p"))
    _bool(body, "smart_rewrite")
    _bool(body, "generate_audio")
    _int(body, "seed", range(SEED_MAX + 1))
    if body.get("audio_url") is not None:
        _audio(body["audio_url"], "audio_url")
    if rule.wan_i2v:
        if body.get("size") is not None:
            raise _not_supported("size", rule.id)
        if body.get("image") is None:
            raise _missing("image")
        _image(body["image"], "image")
    else:
        if body.get("image") is not None:
            raise _not_supported("image", rule.id)
        _enum(body, "size", WAN_T2V_SIZES)
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
        raise _value_error(param, value, f"integers from {valid.start} to {valid.stop - 1}")
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
            raise _value_error(param, value, sorted(rule.resolutions))
        if name == "ratio":
            ratios = [r for r in SEEDANCE_RATIOS if rule.adaptive_ratio or r != "adaptive"]
            if value not in ratios:
                raise _value_error(param, value, ratios)
        if name == "duration":
            _flag_int(param, value, rule.durations)
        if name == "fps":
            _flag_int(param, value, range(1, 61))
        if name == "seed":
            _flag_int(param, value, range(-1, 4_294_967_296))
        if name in ("watermark", "camerafixed") and value not in ("true", "false"):
            raise _value_error(param, value, ("true", "false"))
        if name == "camerafixed" and not rule.camera_fixed:
            raise _not_supported(param, rule.id)
        seen[name] = value
    return seen


def _seedance_images(rule: ModelRule, items: list[Any]) -> ImageMode | None:
    roles: list[str | None] = []
    for index, item in enumerate(items, start=1):
        where = f"metadata.content[{index}]"
        if not isinstance(item, dict):
            raise _type_error(where, "an object", item)
        if item.get("type") != "image_url":
            raise GatewayError(
                f"'{where}.type' must be 'image_url' (only the first item is text).",
                param=f"{where}.type",
            )
        for key in item:
            if key not in ("type", "image_url", "role"):
                raise _unknown(f"{where}.{key}")
        image_url = item.get("image_url")
        if not isinstance(image_url, dict):
            raise _type_error(f"{where}.image_url", "an object", image_url)
        if "url" not in image_url:
            raise _missing(f"{where}.image_url.url")
        _image(image_url["url"], f"{where}.image_url.url")
        role = item.get("role")
        if role is not None and role not in SEEDANCE_ROLES:
            raise _value_error(f"{where}.role", role, SEEDANCE_ROLES)
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
    _check_fields(body, SEEDANCE_FIELDS, strict)
    _str(body, "prompt")  # tolerated, not used: the prompt is the text item
    metadata = body.get("metadata")
    if metadata is None:
        raise _missing("metadata")
    if not isinstance(metadata, dict):
        raise _type_error("metadata", "an object", metadata)
    for key in metadata:
        if strict and key not in SEEDANCE_METADATA_FIELDS:
            raise _unknown(f"metadata.{key}")
    _bool(metadata, "return_last_frame")
    if metadata.get("callback_url") is not None:
        _https(metadata["callback_url"], "metadata.callback_url")
    content = metadata.get("content")
    if content is None:
        raise _missing("metadata.content")
    if not isinstance(content, list):
        raise _type_error("metadata.content", "an array", content)
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
            raise _unknown(f"metadata.content[0].{key}")
    text = _str(first, "text", required=True)
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
            f"The request body must be a JSON object, not {_json_type(body)}.",
            code="invalid_request_body",
        )
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _type_error("model", "a string", model)
    rule = MODELS.get(model)
    if rule is None:
        raise GatewayError(
            f"The model '{model}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    prompt = _VALIDATORS[rule.family](rule, body, strict)
    return Accepted(rule=rule, prompt=prompt, body=body)
