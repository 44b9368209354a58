"""The simulated gateway's readers of one submit body: field types and values, media
references (data URLs, https URLs), and the refusal itself (:class:`GatewayError`).

Like ``gateway_rules``, a reading of the upstream docs written without the project's
own validation, so our bugs meet a refusal here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from typing import Any

from ..images import JPEG, PNG, WEBP, sniff_image_type

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


def json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), "an unknown type")


def type_error(param: str, expected: str, value: object) -> GatewayError:
    return GatewayError(
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        code="invalid_type",
        param=param,
    )


def value_error(param: str, value: object, valid: Collection[object] | str) -> GatewayError:
    if isinstance(valid, str):
        supported = valid
    else:
        items = [f"'{v}'" if isinstance(v, str) else str(v) for v in valid]
        supported = ", ".join(items[:-1]) + (" and " if len(items) > 1 else "") + items[-1]
    return GatewayError(
        f"Invalid value for '{param}': {value!r}. Supported values are: {supported}.", param=param
    )


def missing(param: str) -> GatewayError:
    return GatewayError(
        f"Missing required parameter: '{param}'.", code="missing_required_parameter", param=param
    )


def unknown(param: str) -> GatewayError:
    return GatewayError(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param)


def not_supported(param: str, model: str) -> GatewayError:
    return GatewayError(
        f"Parameter '{param}' is not supported by model '{model}'.",
        code="unsupported_parameter",
        param=param,
    )


def check_fields(body: Mapping[str, Any], allowed: Collection[str], strict: bool) -> None:
    if not strict:
        return
    for name in body:
        if name not in allowed:
            raise unknown(name)


def read_str(body: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    if name not in body or body[name] is None:
        if required:
            raise missing(name)
        return None
    value = body[name]
    if not isinstance(value, str):
        raise type_error(name, "a string", value)
    if required and not value.strip():
        raise GatewayError(f"'{name}' must not be empty.", param=name)
    return value


def read_int(body: Mapping[str, Any], name: str, valid: range | Collection[int]) -> int | None:
    if name not in body or body[name] is None:
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(name, "an integer", value)
    if value not in valid:
        if isinstance(valid, range):
            raise value_error(name, value, f"integers from {valid.start} to {valid.stop - 1}")
        ordered = list(valid) if isinstance(valid, tuple | list) else sorted(valid)
        raise value_error(name, value, ordered)
    return value


def read_bool(body: Mapping[str, Any], name: str) -> bool | None:
    if name not in body or body[name] is None:
        return None
    value = body[name]
    if not isinstance(value, bool):
        raise type_error(name, "a boolean", value)
    return value


def read_enum(body: Mapping[str, Any], name: str, valid: Collection[str]) -> str | None:
    value = read_str(body, name)
    if value is not None and value not in valid:
        ordered = list(valid) if isinstance(valid, tuple | list) else sorted(valid)
        raise value_error(name, value, ordered)
    return value


# --- media references -----------------------------------------------------------

_DATA_IMAGE = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_DATA_AUDIO = re.compile(r"data:(audio/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_IMAGE_TYPES = {"image/png": PNG, "image/jpeg": JPEG, "image/jpg": JPEG, "image/webp": WEBP}


def read_image(value: object, param: str) -> bytes | None:
    """Check an image reference; the decoded bytes for a data URL, ``None`` for a URL."""
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
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


def read_audio(value: object, param: str) -> None:
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
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


def check_https(value: object, param: str) -> None:
    if not isinstance(value, str):
        raise type_error(param, "a string", value)
    if not value.startswith("https://"):
        raise GatewayError(f"Invalid URL for '{param}': an https URL is required.", param=param)
