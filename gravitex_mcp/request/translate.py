"""Translation: unified arguments -> the exact upstream JSON body of the model's family.

Only the arguments the caller gave appear in the body; no defaults are
invented. The one kind of value the server computes is ``size`` picked from
other arguments the caller gave (Sora: ``aspect_ratio``; Wan 2.5 t2v:
``resolution`` + ``aspect_ratio``), by the catalog's size tables: that is the
caller's own choice spelled the way the upstream wants it.

Media arrive already resolved (:class:`MediaURLs`: https URLs untouched or
data URLs), so this module never reads files and the golden tests can feed it
the docs' placeholder data URLs verbatim.

Seedance marker order. The docs' examples write the ``--markers`` in several
orders ("--ratio 16:9 --dur 5 --rs 720p --wm false", "--rs 720p --dur 5 --fps
24 --cf false --wm false --seed 67890", "--rs 720p --dur 5 --ratio 16:9 --wm
false"); the first and last put ``--ratio`` and ``--rs`` in opposite orders, so
no fixed order reproduces them all, and the upstream reads markers in any
order. The server therefore appends the markers it writes in one documented
order (:data:`~gravitex_mcp.catalog.models.PROMPT_MARKERS`: the docs' body sketch and
most examples), after the prompt. A caller who wants another order writes the
markers into the prompt, exactly as the docs tell Seedance users to: markers
already in the prompt are kept verbatim (and checked like arguments by
:mod:`gravitex_mcp.request.validation`), and an explicit argument with the same value
is not written twice. The golden tests reproduce the differently ordered
examples that way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..catalog.models import MEDIA_KINDS, PROMPT_MARKERS, format_size, format_value
from ..domain import Family, Mode
from .validation import CheckedRequest


@dataclass(frozen=True, slots=True)
class MediaURLs:
    """What travels upstream for each media argument the caller gave.

    Each is an https URL exactly as given or a data URL (see
    ``inputs.resolve_media``); ``reference_images`` keeps the caller's order.
    """

    image: str | None = None
    last_frame: str | None = None
    reference_images: tuple[str, ...] = ()
    audio_url: str | None = None


# --- the families ----------------------------------------------------------------------

# Flat families: (unified argument, upstream key), in the key order of the docs'
# examples. "size" stands for the given or the picked size.
_SORA_FIELDS: Final = (
    ("duration", "seconds"),
    ("size", "size"),
    ("image", "input_reference"),
    ("remix_from_video_id", "remix_from_video_id"),
)
_VEO_FIELDS: Final = (
    ("duration", "durationSeconds"),
    ("aspect_ratio", "aspectRatio"),
    ("resolution", "resolution"),
    ("fps", "fps"),
    ("image", "image"),
    ("last_frame", "lastFrame"),
    ("generate_audio", "generateAudio"),
    ("person_generation", "personGeneration"),
    ("watermark", "addWatermark"),
    ("seed", "seed"),
    ("sample_count", "sampleCount"),
)
_WAN_FIELDS: Final = (
    ("duration", "duration"),
    ("size", "size"),
    ("resolution", "resolution"),
    ("smart_rewrite", "smart_rewrite"),
    ("generate_audio", "generate_audio"),
    ("audio_url", "audio_url"),
    ("image", "image"),
    ("seed", "seed"),
)
# Sora wants its duration as a string ("seconds": "4"); everything else keeps its JSON type.
_SORA_TEXT: Final = frozenset({"duration"})
# Seedance settings that are not markers live in metadata under the same name.
_SEEDANCE_METADATA: Final = ("return_last_frame", "callback_url")


def _media_url(media: MediaURLs, argument: str) -> str:
    url: str | None = getattr(media, argument)
    if url is None:
        raise ValueError(f"build_body needs the resolved URL of {argument}")
    return url


def _flat_body(
    request: CheckedRequest,
    media: MediaURLs,
    fields: tuple[tuple[str, str], ...],
    as_text: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    spec, given = request.spec, request.arguments
    body: dict[str, Any] = {"model": spec.id, "prompt": request.prompt}
    # Arguments that pick the size travel as size, not under their own names.
    consumed = set(spec.size_from.by) if spec.size_from is not None else set()
    carried = set(consumed)
    for argument, key in fields:
        if argument == "size":
            if request.size is not None:
                body[key] = format_size(request.size, spec.size_separator)
                carried.add("size")
        elif argument in given and argument not in consumed:
            value = _media_url(media, argument) if argument in MEDIA_KINDS else given[argument]
            body[key] = str(value) if argument in as_text else value
            carried.add(argument)
    _check_all_carried(request, carried)
    return body


def _sora_body(request: CheckedRequest, media: MediaURLs) -> dict[str, Any]:
    return _flat_body(request, media, _SORA_FIELDS, _SORA_TEXT)


def _veo_body(request: CheckedRequest, media: MediaURLs) -> dict[str, Any]:
    return _flat_body(request, media, _VEO_FIELDS)


def _wan_body(request: CheckedRequest, media: MediaURLs) -> dict[str, Any]:
    return _flat_body(request, media, _WAN_FIELDS)


def seedance_text(request: CheckedRequest) -> str:
    """The prompt with a marker appended for each given setting it does not already carry."""
    added = [
        f"--{marker.names[0]} {format_value(request.arguments[marker.argument])}"
        for marker in PROMPT_MARKERS.get(request.spec.family, ())
        if marker.argument in request.arguments and marker.argument not in request.in_prompt
    ]
    if not added:
        return request.prompt
    return f"{request.prompt.rstrip()} {' '.join(added)}"


def _image_item(url: str, role: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if role is not None:
        item["role"] = role
    return item


def _seedance_body(request: CheckedRequest, media: MediaURLs) -> dict[str, Any]:
    given = request.arguments
    content: list[dict[str, Any]] = [{"type": "text", "text": seedance_text(request)}]
    # A lone image is the first frame without a role (as in the docs); the role
    # is needed only to tell it from a last frame.
    if "image" in given:
        role = "first_frame" if request.mode is Mode.FIRST_LAST_FRAME else None
        content.append(_image_item(_media_url(media, "image"), role))
    if "last_frame" in given:
        content.append(_image_item(_media_url(media, "last_frame"), "last_frame"))
    if "reference_images" in given:
        if len(media.reference_images) != len(given["reference_images"]):
            raise ValueError("build_body needs one resolved URL per reference image")
        content.extend(_image_item(url, "reference_image") for url in media.reference_images)
    metadata: dict[str, Any] = {"content": content}
    for argument in _SEEDANCE_METADATA:
        if argument in given:
            metadata[argument] = given[argument]
    markers = PROMPT_MARKERS.get(request.spec.family, ())
    carried = {
        "image",
        "last_frame",
        "reference_images",
        *_SEEDANCE_METADATA,
        *(m.argument for m in markers),
    }
    _check_all_carried(request, carried)
    return {"model": request.spec.id, "metadata": metadata}


_BUILDERS: Final[Mapping[Family, Callable[[CheckedRequest, MediaURLs], dict[str, Any]]]] = {
    Family.SORA: _sora_body,
    Family.VEO: _veo_body,
    Family.WAN: _wan_body,
    Family.SEEDANCE: _seedance_body,
}


def _check_all_carried(request: CheckedRequest, carried: set[str]) -> None:
    # Dropping an argument silently would send a different request than asked.
    left = [name for name in request.arguments if name not in carried]
    if left:
        family = request.spec.family.value
        raise ValueError(f"{request.spec.id}: the {family} body cannot carry {left}")


def build_body(request: CheckedRequest, media: MediaURLs) -> dict[str, Any]:
    """The exact JSON body to POST to ``/v1/video/generations`` for a checked request.

    ``request`` comes from :func:`gravitex_mcp.request.validation.validate`; ``media``
    holds the resolved URL of every media argument given. Raises ``ValueError``
    for arguments the family cannot carry (a validation bug).
    """
    return _BUILDERS[request.spec.family](request, media)
