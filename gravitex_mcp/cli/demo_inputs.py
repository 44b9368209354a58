"""What ``gravitex-mcp demo --model M`` sends: valid values picked from the catalog.

Every model gets arguments it accepts: the shortest duration, a landscape shape
when it has one, and a generated PNG (as a data URL) for each image its mode
needs, of exactly the request's size where the model demands that (Sora).
Nothing here names a model: it reads the catalog's data.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

from ..catalog.models import MODE_ARGUMENTS, ArgSpec, ModelSpec, parse_size
from ..domain import Mode

#: The mode the demo uses, first match wins: text alone when the model allows it.
MODE_PREFERENCE = (
    Mode.TEXT_TO_VIDEO,
    Mode.FIRST_FRAME,
    Mode.FIRST_LAST_FRAME,
    Mode.REFERENCE_IMAGES,
)
#: The shape of generated images when the model does not fix one.
DEFAULT_IMAGE_SIZE = (1280, 720)
LANDSCAPE = "16:9"


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bytes(width: int, height: int, *, hue: int = 0) -> bytes:
    """A ``width`` x ``height`` RGB PNG: a vertical gradient (``hue`` shifts its colour)."""
    rows = bytearray()
    for y in range(height):
        shade = 40 + (180 * y) // max(1, height - 1)
        pixel = bytes(
            ((shade + hue) % 256, (shade // 2 + 60) % 256, (200 - shade // 2 + hue) % 256)
        )
        rows += b"\x00" + pixel * width  # filter byte 0 (None), then the row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _chunk(b"IEND", b"")
    )


def png_data_url(width: int, height: int, *, hue: int = 0) -> str:
    """:func:`png_bytes` as a ``data:image/png;base64,`` URL."""
    payload = base64.b64encode(png_bytes(width, height, hue=hue)).decode("ascii")
    return f"data:image/png;base64,{payload}"


def demo_mode(spec: ModelSpec) -> Mode:
    """The first of :data:`MODE_PREFERENCE` the model supports."""
    for mode in MODE_PREFERENCE:
        if mode in spec.modes:
            return mode
    raise ValueError(f"model {spec.id} has no mode the demo can drive")


def _shortest(arg: ArgSpec) -> Any:
    if arg.choices:
        return min(arg.choices, key=lambda v: float(v) if isinstance(v, int | float) else 0.0)
    return arg.minimum


def _landscape_size(choices: tuple[Any, ...]) -> str:
    """The widest landscape size among ``choices`` closest to 16:9 (else the first)."""
    sizes = [(str(c), parse_size(str(c))) for c in choices]
    landscape = [(text, s) for text, s in sizes if s is not None and s[0] > s[1]]
    if not landscape:
        return str(choices[0])
    return min(landscape, key=lambda item: abs(item[1][0] / item[1][1] - 16 / 9))[0]


def demo_arguments(spec: ModelSpec, prompt: str, *, mode: Mode | None = None) -> dict[str, Any]:
    """``generate_video`` arguments (without the server-side ones) valid for ``spec``.

    ``mode`` (default :func:`demo_mode`) decides which images are generated.
    """
    args: dict[str, Any] = {"model": spec.id, "prompt": prompt}
    duration = spec.arguments.get("duration")
    if duration is not None:
        args["duration"] = _shortest(duration)
    image_size = DEFAULT_IMAGE_SIZE
    size = spec.arguments.get("size")
    aspect = spec.arguments.get("aspect_ratio")
    if size is not None and size.choices:
        # A size alone fixes the shape (and, for some models, the image's pixel size).
        args["size"] = _landscape_size(size.choices)
        image_size = parse_size(args["size"]) or DEFAULT_IMAGE_SIZE
    elif aspect is not None and LANDSCAPE in aspect.choices:
        args["aspect_ratio"] = LANDSCAPE
    elif spec.image_must_match_size and spec.default_size is not None:
        image_size = spec.default_size
    images = MODE_ARGUMENTS[mode or demo_mode(spec)]
    for hue, name in enumerate(images):
        url = png_data_url(*image_size, hue=hue * 90)
        args[name] = [url] if name == "reference_images" else url
    return args


def describe_arguments(args: dict[str, Any]) -> str:
    """The demo's arguments in one line, images shown by their pixel size only."""
    shown = []
    for name, value in args.items():
        if name in ("model", "prompt"):
            continue
        if isinstance(value, list):
            shown.append(f"{name}=[{len(value)} generated image(s)]")
        elif isinstance(value, str) and value.startswith("data:"):
            shown.append(f"{name}=<generated PNG>")
        else:
            shown.append(f"{name}={value}")
    return ", ".join(shown) or "defaults"


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "MODE_PREFERENCE",
    "demo_arguments",
    "demo_mode",
    "describe_arguments",
    "png_bytes",
    "png_data_url",
]
