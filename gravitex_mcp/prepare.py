"""From unified arguments to a request ready to submit: validate, resolve media, translate.

:func:`prepare_request` is the one entry point the tool layer calls. Every
problem of the call, from validation and from the media alike, comes back in
one :class:`InvalidArgumentsError`, so the caller can fix everything in one go;
nothing is sent upstream when there is any.

The work a request may cost is bounded before it is spent: the cheap rules
(counts, values, URL and path checks, the size of every inline image from its
length or ``stat``) run first, and no file is read nor data URL decoded unless
all of them pass and the inline media total at most
:data:`~gravitex_mcp.inputs.MAX_REQUEST_MEDIA_BYTES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arguments import VideoArguments
from .catalog import CATALOG, MEDIA_KINDS, ModelSpec, format_size
from .errors import InvalidArgumentsError, Problem
from .inputs import (
    MAX_MEDIA_BYTES,
    MAX_REQUEST_MEDIA_BYTES,
    LocatedMedia,
    ResolvedMedia,
    check_https_url,
    locate_media,
)
from .redact import redact_url
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


def prepare_request(args: VideoArguments, *, input_dirs: Sequence[Path]) -> PreparedRequest:
    """Validate ``args``, resolve its media from ``input_dirs``, and build the upstream body.

    ``args`` may be a :class:`~gravitex_mcp.arguments.GenerateVideoInput`: only
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
    located = _locate_all(given, input_dirs, refused, problems)
    callback = given.get("callback_url")
    if callback is not None and "callback_url" not in refused:
        # The provider will call it: same rules as media URLs (public host, no login).
        try:
            check_https_url(callback, field="callback_url", valid=_VALID_CALLBACK)
        except InvalidArgumentsError as exc:
            problems.extend(exc.problems)
    problems.extend(_check_inline_total(located))
    resolved: dict[str, Any] = {}
    if not problems:  # only now is any file read or data URL decoded
        resolved = _resolve_all(located, problems)
    if checked is not None and not problems:
        problems.extend(_check_image_size(checked, resolved))
    if problems:
        known = args.model if args.model in CATALOG else None
        raise InvalidArgumentsError(problems, model=known)
    assert checked is not None  # no problems means validation passed
    media = MediaURLs(
        image=_url(resolved.get("image")),
        last_frame=_url(resolved.get("last_frame")),
        reference_images=tuple(m.url for m in resolved.get("reference_images", [])),
        audio_url=_url(resolved.get("audio_url")),
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
    refused: set[str],
    problems: list[Problem],
) -> dict[str, list[LocatedMedia] | LocatedMedia]:
    """Check every media argument not already refused, reading nothing; collect problems."""
    located: dict[str, list[LocatedMedia] | LocatedMedia] = {}
    for name, kind in MEDIA_KINDS.items():
        if name not in given or name in refused:
            continue
        value = given[name]
        items = value if isinstance(value, list) else [value]
        found: list[LocatedMedia] = []
        for index, item in enumerate(items):
            where = f"{name}[{index}]" if isinstance(value, list) else name
            try:
                found.append(locate_media(item, field=where, kind=kind, input_dirs=input_dirs))
            except InvalidArgumentsError as exc:
                problems.extend(exc.problems)
        if isinstance(value, list):
            located[name] = found
        elif found:
            located[name] = found[0]
    return located


def _flat(located: Mapping[str, list[LocatedMedia] | LocatedMedia]) -> list[LocatedMedia]:
    return [m for v in located.values() for m in (v if isinstance(v, list) else [v])]


def _check_inline_total(located: Mapping[str, list[LocatedMedia] | LocatedMedia]) -> list[Problem]:
    """One problem, on the item that crosses it, when the inline media exceed the request cap."""
    total = 0
    for media in _flat(located):
        total += media.inline_bytes
        if total > MAX_REQUEST_MEDIA_BYTES:
            every = sum(m.inline_bytes for m in _flat(located))
            return [
                Problem(
                    media.field,
                    f"the images and audio held in this request (data URLs and local files) "
                    f"add up to {every} bytes; the limit is {MAX_REQUEST_MEDIA_BYTES} bytes "
                    f"({MAX_REQUEST_MEDIA_BYTES // _MB} MB) per request, "
                    f"{MAX_MEDIA_BYTES // _MB} MB per file. Give some as https:// URLs, which "
                    "travel untouched and do not count, or use smaller files",
                )
            ]
    return []


def _resolve_all(
    located: Mapping[str, list[LocatedMedia] | LocatedMedia], problems: list[Problem]
) -> dict[str, Any]:
    """Read and check every located media argument; collect problems."""
    resolved: dict[str, Any] = {}
    for name, value in located.items():
        items: list[ResolvedMedia] = []
        for media in value if isinstance(value, list) else [value]:
            try:
                items.append(media.resolve())
            except InvalidArgumentsError as exc:
                problems.extend(exc.problems)
        if isinstance(value, list):
            resolved[name] = items
        elif items:
            resolved[name] = items[0]
    return resolved


def _check_image_size(request: CheckedRequest, resolved: dict[str, Any]) -> list[Problem]:
    """Sora image-to-video: the image's pixel size must equal the request size.

    Only checkable for bytes we hold (data URL or local file); an https image
    is the provider's to check.
    """
    spec = request.spec
    image = resolved.get("image")
    if not spec.image_must_match_size or not isinstance(image, ResolvedMedia):
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


def _url(media: ResolvedMedia | None) -> str | None:
    return None if media is None else media.url


def _journal_arguments(given: Mapping[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    journal = dict(given)
    if "callback_url" in journal:
        journal["callback_url"] = redact_url(journal["callback_url"])
    for name, media in resolved.items():
        if isinstance(media, list):
            journal[name] = [m.journal_value() for m in media]
        else:
            journal[name] = media.journal_value()
    return journal
