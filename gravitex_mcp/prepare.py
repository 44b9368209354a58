"""From unified arguments to a request ready to submit: validate, resolve media, translate.

:func:`prepare_request` is the one entry point the tool layer calls. Every
problem of the call, from validation and from reading the media alike, comes
back in one :class:`InvalidArgumentsError`, so the caller can fix everything
in one go; nothing is sent upstream when there is any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arguments import VideoArguments
from .catalog import CATALOG, MEDIA_KINDS, ModelSpec, format_size
from .errors import InvalidArgumentsError, Problem
from .inputs import MediaKind, ResolvedMedia, check_https_url, resolve_media
from .redact import redact_url
from .translate import MediaURLs, build_body, picked_size
from .validation import advisory_notes, validate

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

    Raises :class:`InvalidArgumentsError` with every problem found.
    """
    problems: list[Problem] = []
    spec: ModelSpec | None = None
    try:
        spec = validate(args)
    except InvalidArgumentsError as exc:
        problems.extend(exc.problems)
    refused = {p.field for p in problems}
    resolved = _resolve_all(args, input_dirs, refused, problems)
    if args.callback_url is not None and "callback_url" not in refused:
        # The provider will call it: same rules as media URLs (public host, no login).
        try:
            check_https_url(args.callback_url, field="callback_url", valid=_VALID_CALLBACK)
        except InvalidArgumentsError as exc:
            problems.extend(exc.problems)
    if spec is not None and not problems:
        problems.extend(_check_image_size(spec, args, resolved))
    if problems:
        known = args.model if args.model in CATALOG else None
        raise InvalidArgumentsError(problems, model=known)
    assert spec is not None  # no problems means validate() returned
    media = MediaURLs(
        image=_url(resolved.get("image")),
        last_frame=_url(resolved.get("last_frame")),
        reference_images=tuple(m.url for m in resolved.get("reference_images", [])),
        audio_url=_url(resolved.get("audio_url")),
    )
    return PreparedRequest(
        spec=spec,
        body=build_body(spec, args, media),
        journal_arguments=_journal_arguments(args, resolved),
        notes=advisory_notes(spec, args),
    )


def _resolve_all(
    args: VideoArguments,
    input_dirs: Sequence[Path],
    refused: set[str],
    problems: list[Problem],
) -> dict[str, Any]:
    """Resolve every media argument not already refused; collect problems."""
    given = args.given()
    resolved: dict[str, Any] = {}
    for name, kind in MEDIA_KINDS.items():
        if name not in given or name in refused:
            continue
        value = given[name]
        if isinstance(value, list):
            items: list[ResolvedMedia] = []
            for index, item in enumerate(value):
                one = _resolve_one(item, f"{name}[{index}]", kind, input_dirs, problems)
                if one is not None:
                    items.append(one)
            resolved[name] = items
        else:
            single = _resolve_one(value, name, kind, input_dirs, problems)
            if single is not None:
                resolved[name] = single
    return resolved


def _resolve_one(
    value: str,
    field_name: str,
    kind: MediaKind,
    input_dirs: Sequence[Path],
    problems: list[Problem],
) -> ResolvedMedia | None:
    try:
        return resolve_media(value, field=field_name, kind=kind, input_dirs=input_dirs)
    except InvalidArgumentsError as exc:
        problems.extend(exc.problems)
        return None


def _check_image_size(
    spec: ModelSpec, args: VideoArguments, resolved: dict[str, Any]
) -> list[Problem]:
    """Sora image-to-video: the image's pixel size must equal the request size.

    Only checkable for bytes we hold (data URL or local file); an https image
    is the provider's to check.
    """
    image = resolved.get("image")
    if not spec.image_must_match_size or not isinstance(image, ResolvedMedia):
        return []
    if image.width is None or image.height is None:
        return []
    requested = picked_size(spec, args.given())
    default = requested is None
    wanted = requested or spec.default_size
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


def _journal_arguments(args: VideoArguments, resolved: dict[str, Any]) -> dict[str, Any]:
    journal = args.given()
    if args.callback_url is not None:
        journal["callback_url"] = redact_url(args.callback_url)
    for name, media in resolved.items():
        if isinstance(media, list):
            journal[name] = [m.journal_value() for m in media]
        else:
            journal[name] = media.journal_value()
    return journal
