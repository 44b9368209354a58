"""From unified arguments to a request ready to submit: validate, resolve media, translate.

:func:`prepare_request` is the one entry point the tool layer calls. Every
problem of the call, from validation and from the media alike, comes back in
one :class:`InvalidArgumentsError`, so the caller can fix everything in one go;
nothing is sent upstream when there is any.

The work a request may cost is bounded before it is spent: the cheap rules
(counts, values, URL and path checks, the size of every inline image from its
length or ``stat``) run first, and no file is read nor data URL decoded unless
all of them pass and the inline media total at most
:data:`~gravitex_mcp.request.inputs.media.MAX_REQUEST_MEDIA_BYTES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Any

from ..catalog.models import CATALOG, MEDIA_KINDS, ModelSpec, format_size
from ..errors import InvalidArgumentsError, Problem
from ..redact import redact_url
from .arguments import VideoArguments
from .inputs.media import MAX_MEDIA_BYTES, MAX_REQUEST_MEDIA_BYTES, ResolvedMedia
from .inputs.objects import SavedObjects
from .inputs.resolve import LocatedMedia, locate_media
from .inputs.urls import check_https_url
from .translate import MediaURLs, build_body
from .validation import CheckedRequest, check_given

_MB = 1024 * 1024
_VALID_CALLBACK = "valid: an https:// URL on a public host, e.g. https://your-domain.com/callback"


@dataclass(frozen=True)
class PreparedRequest:
    """A checked request: the model, the exact upstream body, and what to journal.

    ``journal_arguments`` are the given arguments with every media value
    replaced by its ``journal_value()`` (a URL, or a digest of data: never the
    image bytes). ``notes`` are things the caller should know about settings
    that were accepted but will not do what they say.
    """

    spec: ModelSpec
    body: dict[str, Any]
    journal_arguments: dict[str, Any]
    notes: tuple[str, ...] = field(default=())


def prepare_request(
    args: VideoArguments,
    *,
    input_dirs: Sequence[Path],
    saved_dir: Path | None = None,
    saved_objects: SavedObjects | None = None,
) -> PreparedRequest:
    """Validate ``args``, resolve its media from ``input_dirs``, and build the upstream body.

    ``args`` may be a :class:`~gravitex_mcp.request.arguments.GenerateVideoInput`: only
    its unified arguments (``given()``) are read.

    Raises :class:`InvalidArgumentsError` with every problem found.
    """
    given = args.given()
    problems: list[Problem] = []
    checked: CheckedRequest | None = None
    try:
        checked = check_given(given)
    except InvalidArgumentsError as exc:
        problems.extend(exc.problems)
    refused = {p.field for p in problems}
    located = _locate_all(given, input_dirs, saved_dir, saved_objects, refused, problems)
    callback = given.get("callback_url")
    if callback is not None and "callback_url" not in refused:
        # The provider will call it: same rules as media URLs (public host, no login).
        try:
            check_https_url(callback, field="callback_url", valid=_VALID_CALLBACK)
        except InvalidArgumentsError as exc:
            problems.extend(exc.problems)
    problems.extend(_check_inline_total(located))
    resolved: dict[str, list[ResolvedMedia]] = {}
    if not problems:  # only now is any file read or data URL decoded
        resolved = _resolve_all(located, problems)
    if checked is not None and not problems:
        problems.extend(_check_image_size(checked, resolved))
    if problems:
        known = args.model if args.model in CATALOG else None
        raise InvalidArgumentsError(problems, model=known)
    assert checked is not None  # no problems means validation passed
    urls = {name: [m.url for m in items] for name, items in resolved.items()}
    media = MediaURLs(
        image=urls.get("image", [None])[0],
        last_frame=urls.get("last_frame", [None])[0],
        reference_images=tuple(urls.get("reference_images", ())),
        audio_url=urls.get("audio_url", [None])[0],
    )
    return PreparedRequest(
        spec=checked.spec,
        body=build_body(checked, media),
        journal_arguments=_journal_arguments(given, resolved),
        notes=checked.notes,
    )


def _locate_all(
    given: Mapping[str, Any],
    input_dirs: Sequence[Path],
    saved_dir: Path | None,
    saved_objects: SavedObjects | None,
    refused: set[str],
    problems: list[Problem],
) -> list[LocatedMedia]:
    """Check every media argument not already refused, reading nothing; collect problems."""
    located: list[LocatedMedia] = []
    for name, kind in MEDIA_KINDS.items():
        if name not in given or name in refused:
            continue
        value = given[name]
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            where = name if index is None else f"{name}[{index}]"
            try:
                located.append(
                    locate_media(
                        item,
                        field=where,
                        kind=kind,
                        input_dirs=input_dirs,
                        saved_dir=saved_dir,
                        saved_objects=saved_objects,
                    )
                )
            except InvalidArgumentsError as exc:
                problems.extend(exc.problems)
    return located


def _check_inline_total(located: Sequence[LocatedMedia]) -> list[Problem]:
    """One problem, on the item that crosses it, when the inline media exceed the request cap."""
    total = sum(m.inline_bytes for m in located)
    if total <= MAX_REQUEST_MEDIA_BYTES:
        return []
    running = accumulate(m.inline_bytes for m in located)
    crossing = next(
        m for m, sum_ in zip(located, running, strict=True) if sum_ > MAX_REQUEST_MEDIA_BYTES
    )
    return [
        Problem(
            crossing.field,
            f"the images and audio held in this request (data URLs and local files) "
            f"add up to {total} bytes; the limit is {MAX_REQUEST_MEDIA_BYTES} bytes "
            f"({MAX_REQUEST_MEDIA_BYTES // _MB} MB) per request, "
            f"{MAX_MEDIA_BYTES // _MB} MB per file. Give some as https:// URLs, which "
            "travel untouched and do not count, or use smaller files",
        )
    ]


def _resolve_all(
    located: Sequence[LocatedMedia], problems: list[Problem]
) -> dict[str, list[ResolvedMedia]]:
    """Read and check every located media argument, by argument name; collect problems."""
    resolved: dict[str, list[ResolvedMedia]] = {}
    for media in located:
        try:
            one = media.resolve()
        except InvalidArgumentsError as exc:
            problems.extend(exc.problems)
            continue
        resolved.setdefault(media.field.partition("[")[0], []).append(one)
    return resolved


def _check_image_size(
    request: CheckedRequest, resolved: Mapping[str, list[ResolvedMedia]]
) -> list[Problem]:
    """Sora image-to-video: the image's pixel size must equal the request size.

    Only checkable for bytes we hold (data URL or local file); an https image
    is the provider's to check.
    """
    spec = request.spec
    image = resolved.get("image", [None])[0]
    if not spec.image_must_match_size or image is None:
        return []
    if image.width is None or image.height is None:
        return []
    default = request.size is None
    wanted = request.size or spec.default_size
    got = (image.width, image.height)
    if wanted is None or got == wanted:
        return []
    valid = spec.arguments["size"].choices if "size" in spec.arguments else ()
    if format_size(got) in valid:
        fix = f"set size to {format_size(got)}, or use a {format_size(wanted)} image"
    else:
        sizes = ", ".join(str(v) for v in valid)
        fix = f"resize the image to one of the valid sizes ({sizes})"
    which = " (the default: no size or aspect_ratio given)" if default else ""
    return [
        Problem(
            "image",
            f"the image is {format_size(got)} pixels but the request size is "
            f"{format_size(wanted)}{which}; {spec.id} needs them to be equal: {fix}",
        )
    ]


def _journal_arguments(
    given: Mapping[str, Any], resolved: Mapping[str, list[ResolvedMedia]]
) -> dict[str, Any]:
    journal = dict(given)
    if "callback_url" in journal:
        journal["callback_url"] = redact_url(journal["callback_url"])
    for name, media in resolved.items():
        values = [m.journal_value() for m in media]
        journal[name] = values if isinstance(given[name], list) else values[0]
    return journal
