"""The model catalog: every model id in the Gravitex docs and what it accepts, as data.

One table (:data:`CATALOG`) says, for each model, its family, its modes, every
unified argument it takes with the valid values or range, and its combination
rules. Validation, translation, ``list_models``, the ``gravitex://models``
resource and the generated JSON Schemas all read this table; none of them
branch on a model id.

The only source of truth is the vendor page ``upstream-api/video-generation.txt``.
Where it contradicts itself or is silent, the choice made is written next to
the data, naming the passage followed. The general rule: prefer the reading
that lets the requests the docs show as valid through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal

from ..domain import Delivery, Family, Mode
from ..errors import InvalidArgumentsError, Problem
from ..redact import clip

Value = str | int | bool
JSONType = Literal["string", "integer", "boolean", "array"]

SEED_MAX: Final = 2_147_483_647

#: JSON type of every unified argument, in the contract's order (the order
#: used wherever arguments are listed: describe(), schemas, messages).
ARGUMENT_TYPES: Final[Mapping[str, JSONType]] = MappingProxyType(
    {
        "duration": "integer",
        "resolution": "string",
        "aspect_ratio": "string",
        "size": "string",
        "image": "string",
        "last_frame": "string",
        "reference_images": "array",
        "remix_from_video_id": "string",
        "generate_audio": "boolean",
        "audio_url": "string",
        "seed": "integer",
        "fps": "integer",
        "watermark": "boolean",
        "person_generation": "string",
        "sample_count": "integer",
        "smart_rewrite": "boolean",
        "camera_fixed": "boolean",
        "return_last_frame": "boolean",
        "callback_url": "string",
    }
)

#: Arguments whose values are media, resolved by ``inputs.resolve_media``.
MEDIA_KINDS: Final[Mapping[str, Literal["image", "audio"]]] = MappingProxyType(
    {"image": "image", "last_frame": "image", "reference_images": "image", "audio_url": "audio"}
)

#: Which arguments make up each mode. A call's mode is the one whose set equals
#: the set of these arguments the call gives; a model takes the arguments of
#: its modes (so "image refused on lite t2v" needs no rule of its own).
MODE_ARGUMENTS: Final[Mapping[Mode, tuple[str, ...]]] = MappingProxyType(
    {
        Mode.TEXT_TO_VIDEO: (),
        Mode.FIRST_FRAME: ("image",),
        Mode.FIRST_LAST_FRAME: ("image", "last_frame"),
        Mode.REFERENCE_IMAGES: ("reference_images",),
        Mode.REMIX: ("remix_from_video_id",),
    }
)
MODE_DEFINING_ARGUMENTS: Final = tuple(
    dict.fromkeys(name for names in MODE_ARGUMENTS.values() for name in names)
)


# --- the shapes of the data ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """The values one model accepts for one unified argument.

    No ``choices``, bounds or ``pattern`` means any value of the argument's
    type (booleans, media). ``note`` is shown to callers by ``list_models``.
    """

    choices: tuple[Value, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    pattern_hint: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Setting:
    """An argument, optionally with one value (``None``: any value given)."""

    argument: str
    value: Value | None = None

    def matches(self, settings: Mapping[str, object]) -> bool:
        """True when ``settings`` (argument -> value given) has this setting."""
        if self.argument not in settings:
            return False
        return self.value is None or settings[self.argument] == self.value

    def __str__(self) -> str:
        if self.value is None:
            return self.argument
        return f"{self.argument} {format_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Two settings a model refuses together; ``reason`` says why, for callers."""

    first: Setting
    second: Setting
    reason: str


@dataclass(frozen=True, slots=True)
class Advisory:
    """A setting that is accepted but does not do what it says: the note tells the caller."""

    setting: Setting
    note: str


@dataclass(frozen=True, slots=True)
class SizeDerivation:
    """How the upstream ``size`` is picked from other unified arguments.

    ``table`` maps the values of the ``by`` arguments (in that order) to
    ``(width, height)``. Given ``size`` must agree with what ``by`` picks.
    """

    by: tuple[str, ...]
    table: Mapping[tuple[str, ...], tuple[int, int]]


@dataclass(frozen=True, slots=True)
class PromptMarker:
    """A ``--name value`` setting written inside the prompt (Seedance family).

    ``names[0]`` is the spelling the server writes; all are recognised.
    """

    argument: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the server knows about one model id.

    ``arguments`` holds every unified argument the model takes besides
    ``model`` and ``prompt`` (media arguments come from its ``modes``).
    """

    id: str
    family: Family
    summary: str
    modes: frozenset[Mode]
    arguments: Mapping[str, ArgSpec]
    exclusions: tuple[Exclusion, ...] = ()
    advisories: tuple[Advisory, ...] = ()
    size_from: SizeDerivation | None = None
    #: how the upstream spells a size: ``720x1280`` (Sora) or ``1280*720`` (Wan)
    size_separator: str = "x"
    #: image-to-video needs the image's pixel size to equal the request size
    image_must_match_size: bool = False
    #: the size the upstream uses when none is asked for (for that check)
    default_size: tuple[int, int] | None = None
    #: where the finished video is fetched from
    delivery: Delivery = Delivery.TASK_URL
    notes: tuple[str, ...] = field(default=())

    def takes(self, argument: str) -> bool:
        """True when the model takes the unified ``argument``."""
        return argument in ("model", "prompt") or argument in self.arguments


# --- small helpers shared by validation and translation ------------------------

_SIZE_RE: Final = re.compile(r"([0-9]{1,5})[x*]([0-9]{1,5})")


def derived_size(spec: ModelSpec, values: Mapping[str, Any]) -> tuple[int, int] | None:
    """The ``(width, height)`` the model's ``size_from`` table picks for ``values``
    (``None``: the model has no table, or ``values`` lacks one of its arguments)."""
    derivation = spec.size_from
    if derivation is None or not all(name in values for name in derivation.by):
        return None
    return derivation.table.get(tuple(str(values[name]) for name in derivation.by))


def parse_size(text: str) -> tuple[int, int] | None:
    """``"1280x720"`` or ``"1280*720"`` -> ``(1280, 720)``; ``None`` if not a size."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if width < 1 or height < 1:
        return None
    return width, height


def format_size(size: tuple[int, int], separator: str = "x") -> str:
    """``(1280, 720)`` -> ``"1280x720"`` (or ``"1280*720"`` with ``separator="*"``)."""
    return f"{size[0]}{separator}{size[1]}"


def format_value(value: object) -> str:
    """A value as callers write it in JSON: ``true``/``false`` for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- shared argument sets ----------------------------------------------------------

_MEDIA: Final = ArgSpec()
_FLAG: Final = ArgSpec()
_SEED: Final = ArgSpec(minimum=0, maximum=SEED_MAX)
# "Frame rate, default 24" (Veo) and "--fps: Frame rate (e.g. 24, 30)" (Seedance):
# the docs name no other value, so these two are the valid ones.
_FPS: Final = ArgSpec(choices=(24, 30))
_REMIX_ID: Final = ArgSpec(
    pattern=r"^video_\S+$",
    pattern_hint="the id of an earlier sora-2 video, starting with video_ "
    "(e.g. video_69095b4ce0048190893a01510c0c98b0)",
)
_HTTPS_URL: Final = ArgSpec(
    pattern=r"^https://[^\s/?#@]+[^\s]*$",
    pattern_hint="an https:// URL (e.g. https://your-domain.com/callback)",
)

# The Gravitex docs name no count; ByteDance's reference-to-video mode takes 1 to 4
# images. A cap also bounds the work a single request can ask for.
_REFERENCE_IMAGES: Final = ArgSpec(maximum=4, note="1 to 4 images")

#: Media arguments and their specs, added to a model from its modes.
_MODE_ARGUMENT_SPECS: Final[Mapping[str, ArgSpec]] = MappingProxyType(
    {
        "image": _MEDIA,
        "last_frame": _MEDIA,
        "reference_images": _REFERENCE_IMAGES,
        "remix_from_video_id": _REMIX_ID,
    }
)

# Sora 2: "seconds ... 4, 8, 12", "size ... 720x1280 (portrait), 1280x720 (landscape)".
# The contract routes resolution "only via size", so resolution is not taken.
_SORA_SIZES: Final[Mapping[tuple[str, ...], tuple[int, int]]] = MappingProxyType(
    {("16:9",): (1280, 720), ("9:16",): (720, 1280)}
)
_SORA_ARGS: Final[Mapping[str, ArgSpec]] = {
    "duration": ArgSpec(choices=(4, 8, 12), note="sent as the string seconds; default 4"),
    "aspect_ratio": ArgSpec(
        choices=("16:9", "9:16"), note="picks size: 16:9 -> 1280x720, 9:16 -> 720x1280"
    ),
    "size": ArgSpec(
        choices=("720x1280", "1280x720"), note="WxH or W*H; the upstream default is 720x1280"
    ),
}

# Veo: "durationSeconds ... 4, 6, 8", "aspectRatio ... only supports 16:9, 9:16",
# "resolution ... 720p, 1080p", "Number of videos ... 1-4". The docs give no seed
# range for Veo; the contract's 0..2147483647 (the Wan passage) is used.
_VEO_ARGS: Final[Mapping[str, ArgSpec]] = {
    "duration": ArgSpec(choices=(4, 6, 8)),
    "resolution": ArgSpec(choices=("720p", "1080p")),
    "aspect_ratio": ArgSpec(choices=("16:9", "9:16")),
    "generate_audio": _FLAG,
    "seed": _SEED,
    "fps": ArgSpec(choices=(24, 30), note="default 24"),
    "watermark": _FLAG,
    "person_generation": ArgSpec(choices=("allow_all", "allow_adult", "dont_allow")),
    "sample_count": ArgSpec(minimum=1, maximum=4),
}
# "Fast models ignore this parameter and always include audio". Refusing
# generate_audio=false would refuse the docs' own second Veo example (sent to
# veo-3.1-fast-generate-preview with "generateAudio": false), and the upstream
# ignores rather than rejects it. So false is accepted, sent as given, and the
# caller gets a note (an Advisory) saying the video will have audio anyway.
_FAST_AUDIO_NOTE: Final = (
    "fast Veo models ignore generate_audio and always include audio; "
    "generate_audio=false is sent but the video will still have sound"
)
_VEO_FAST_ARGS: Final[Mapping[str, ArgSpec]] = {
    **_VEO_ARGS,
    "generate_audio": ArgSpec(note=_FAST_AUDIO_NOTE),
}
_VEO_FAST_ADVISORIES: Final = (Advisory(Setting("generate_audio", False), _FAST_AUDIO_NOTE),)

# Wan 2.5: "duration ... 5, 10", "resolution ... 480p, 720p, 1080p", "size (t2v
# mode only), format: width*height, e.g. 1280*720". The parameter list is the
# family's, so audio_url (shown in an i2v example) is taken by t2v too.
_WAN_COMMON: Final[Mapping[str, ArgSpec]] = {
    "duration": ArgSpec(choices=(5, 10)),
    "resolution": ArgSpec(choices=("480p", "720p", "1080p")),
    "generate_audio": _FLAG,
    "audio_url": ArgSpec(note="an https URL, or a local audio file inside GRAVITEX_INPUT_DIRS"),
    "seed": _SEED,
    "smart_rewrite": _FLAG,
}
# t2v takes no resolution upstream: resolution + aspect_ratio pick its size.
# The docs show only 1280*720 and 1920*1080; the rest are the sizes Alibaba's
# Wan API lists for each tier (its 480p tier has no 4:3 or 3:4 size).
_WAN_T2V_SIZES: Final[Mapping[tuple[str, ...], tuple[int, int]]] = MappingProxyType(
    {
        ("480p", "16:9"): (832, 480),
        ("480p", "9:16"): (480, 832),
        ("480p", "1:1"): (624, 624),
        ("720p", "16:9"): (1280, 720),
        ("720p", "9:16"): (720, 1280),
        ("720p", "1:1"): (960, 960),
        ("720p", "4:3"): (1088, 832),
        ("720p", "3:4"): (832, 1088),
        ("1080p", "16:9"): (1920, 1080),
        ("1080p", "9:16"): (1080, 1920),
        ("1080p", "1:1"): (1440, 1440),
        ("1080p", "4:3"): (1632, 1248),
        ("1080p", "3:4"): (1248, 1632),
    }
)
_WAN_T2V_ARGS: Final[Mapping[str, ArgSpec]] = {
    **_WAN_COMMON,
    "resolution": ArgSpec(
        choices=("480p", "720p", "1080p"), note="with aspect_ratio, picks size (t2v)"
    ),
    "aspect_ratio": ArgSpec(
        choices=("16:9", "9:16", "1:1", "4:3", "3:4"),
        note="with resolution, picks size (t2v); 480p has no 4:3 or 3:4 size",
    ),
    # The sizes of the table only: Wan renders no other (and a typo such as 5*5
    # should not reach the paid API).
    "size": ArgSpec(
        choices=tuple(dict.fromkeys(f"{w}*{h}" for w, h in _WAN_T2V_SIZES.values())),
        note="W*H (WxH is accepted too), or leave it out and give resolution + aspect_ratio",
    ),
}

# Doubao Seedance (and the Ark models listed with it): "--rs 480p, 720p, 1080p",
# "--ratio 16:9, 9:16, 1:1, 4:3, 3:4, adaptive" (no 21:9), "--dur (seconds,
# e.g. 5, 10)": the 1.0 and Ark models get 5 and 10, the only durations named
# for them; 1.5 pro has its own "duration 4-12s, resolution 480p/720p".
# return_last_frame is marked "(1.5 Pro series)" in the body sketch, but it is a
# field of the family's metadata object; it is accepted on every model of the
# family, as is callback_url ("Optional callback URL").
_SEEDANCE_RATIOS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4", "adaptive")
_SEEDANCE_ARGS: Final[Mapping[str, ArgSpec]] = {
    "duration": ArgSpec(choices=(5, 10)),
    "resolution": ArgSpec(choices=("480p", "720p", "1080p")),
    "aspect_ratio": ArgSpec(choices=_SEEDANCE_RATIOS),
    "seed": _SEED,
    "fps": _FPS,
    "watermark": _FLAG,
    "return_last_frame": _FLAG,
    "callback_url": _HTTPS_URL,
}
# "--cf ... only lite models support".
_SEEDANCE_LITE_ARGS: Final[Mapping[str, ArgSpec]] = {**_SEEDANCE_ARGS, "camera_fixed": _FLAG}
_SEEDANCE_15_ARGS: Final[Mapping[str, ArgSpec]] = {
    **_SEEDANCE_ARGS,
    "duration": ArgSpec(minimum=4, maximum=12),
    "resolution": ArgSpec(choices=("480p", "720p")),
}

#: The Seedance family's prompt markers, in the order the server writes them:
#: the order of the docs' body sketch ("--ratio 16:9 --dur 5 --rs 720p --wm
#: false") and of most examples, with --fps, --cf and --seed placed where the
#: examples that use them put them ("--fps 30 --wm true --seed 12345",
#: "--fps 24 --cf false --wm false --seed 67890").
PROMPT_MARKERS: Final[Mapping[Family, tuple[PromptMarker, ...]]] = MappingProxyType(
    {
        Family.SEEDANCE: (
            PromptMarker("aspect_ratio", ("ratio",)),
            PromptMarker("duration", ("dur", "duration")),
            PromptMarker("resolution", ("rs", "resolution")),
            PromptMarker("fps", ("fps", "framespersecond")),
            PromptMarker("camera_fixed", ("cf", "camerafixed")),
            PromptMarker("watermark", ("wm", "watermark")),
            PromptMarker("seed", ("seed",)),
        )
    }
)

_SEEDANCE_NOTE: Final = (
    "Settings travel as --markers in the prompt text (--ratio, --dur, --rs, --fps, --cf, "
    "--wm, --seed); markers already written in the prompt are kept and checked like arguments."
)
_T2V: Final = frozenset({Mode.TEXT_TO_VIDEO})
_T2V_I2V: Final = frozenset({Mode.TEXT_TO_VIDEO, Mode.FIRST_FRAME})
_T2V_I2V_FLF: Final = frozenset({Mode.TEXT_TO_VIDEO, Mode.FIRST_FRAME, Mode.FIRST_LAST_FRAME})


def _model(
    model_id: str,
    family: Family,
    summary: str,
    modes: frozenset[Mode],
    arguments: Mapping[str, ArgSpec],
    **extra: Any,
) -> ModelSpec:
    """One row: adds the media arguments of ``modes`` and orders arguments canonically."""
    merged = dict(arguments)
    for mode in modes:
        for name in MODE_ARGUMENTS[mode]:
            merged[name] = _MODE_ARGUMENT_SPECS[name]
    ordered = {name: merged[name] for name in ARGUMENT_TYPES if name in merged}
    unknown = set(merged) - set(ordered)
    if unknown:  # a typo in the table, caught at import
        raise ValueError(f"{model_id}: unknown arguments {sorted(unknown)}")
    return ModelSpec(
        id=model_id,
        family=family,
        summary=summary,
        modes=modes,
        arguments=MappingProxyType(ordered),
        **extra,
    )


# --- THE table ---------------------------------------------------------------------------

_MODELS: Final[tuple[ModelSpec, ...]] = (
    _model(
        "sora-2",
        Family.SORA,
        "Sora 2: text-to-video, image-to-video, remix of an earlier Sora video",
        frozenset({Mode.TEXT_TO_VIDEO, Mode.FIRST_FRAME, Mode.REMIX}),
        _SORA_ARGS,
        size_from=SizeDerivation(("aspect_ratio",), _SORA_SIZES),
        size_separator="x",
        image_must_match_size=True,
        default_size=(720, 1280),
        delivery=Delivery.DOWNLOAD_ENDPOINT,
        notes=(
            "For image-to-video the image's pixel size must equal size exactly "
            "(720x1280 unless size or aspect_ratio says otherwise).",
            "Remix (remix_from_video_id) regenerates an earlier sora-2 video; it takes no image.",
            "The finished video is fetched through the download endpoint.",
        ),
    ),
    # "veo-3.0-fast-generate-001 - Text-to-video (first frame mode)" is read as
    # text-to-video plus first-frame image-to-video, per the Veo series section
    # ("Image-to-video (supports first frame and last frame constraints)") and
    # "lastFrame ... only veo-3.1 series supports".
    _model(
        "veo-3.0-fast-generate-001",
        Family.VEO,
        "Google Veo 3.0 fast: text-to-video and first-frame image-to-video, always with audio",
        _T2V_I2V,
        _VEO_FAST_ARGS,
        advisories=_VEO_FAST_ADVISORIES,
        notes=(_FAST_AUDIO_NOTE,),
    ),
    _model(
        "veo-3.0-generate-preview",
        Family.VEO,
        "Google Veo 3.0: text-to-video and first-frame image-to-video",
        _T2V_I2V,
        _VEO_ARGS,
    ),
    _model(
        "veo-3.1-fast-generate-preview",
        Family.VEO,
        "Google Veo 3.1 fast: text-to-video, first frame, first/last frame; always with audio",
        _T2V_I2V_FLF,
        _VEO_FAST_ARGS,
        advisories=_VEO_FAST_ADVISORIES,
        notes=(_FAST_AUDIO_NOTE,),
    ),
    _model(
        "veo-3.1-generate-preview",
        Family.VEO,
        "Google Veo 3.1: text-to-video, first frame, first/last frame",
        _T2V_I2V_FLF,
        _VEO_ARGS,
    ),
    _model(
        "wan2.5-t2v-preview",
        Family.WAN,
        "Alibaba Wan 2.5 text-to-video, with optional generated or custom audio",
        _T2V,
        _WAN_T2V_ARGS,
        size_from=SizeDerivation(("resolution", "aspect_ratio"), _WAN_T2V_SIZES),
        size_separator="*",
        notes=("Give size (W*H), or resolution and aspect_ratio together, which pick the size.",),
    ),
    _model(
        "wan2.5-i2v-preview",
        Family.WAN,
        "Alibaba Wan 2.5 image-to-video (first frame), with optional generated or custom audio",
        frozenset({Mode.FIRST_FRAME}),
        _WAN_COMMON,
        size_separator="*",
        notes=("Needs image; the aspect ratio follows the image.",),
    ),
    # "--ratio ... note that doubao-seedance-1-0-lite-t2v-250428 does not support
    # adaptive"; "does not support image input".
    _model(
        "doubao-seedance-1-0-lite-t2v-250428",
        Family.SEEDANCE,
        "Doubao Seedance 1.0 lite text-to-video",
        _T2V,
        {
            **_SEEDANCE_LITE_ARGS,
            "aspect_ratio": ArgSpec(
                choices=("16:9", "9:16", "1:1", "4:3", "3:4"), note="no adaptive on this model"
            ),
        },
        notes=(_SEEDANCE_NOTE,),
    ),
    _model(
        "doubao-seedance-1-0-lite-i2v-250428",
        Family.SEEDANCE,
        "Doubao Seedance 1.0 lite image-to-video: first frame, first/last frame, reference images",
        frozenset({Mode.FIRST_FRAME, Mode.FIRST_LAST_FRAME, Mode.REFERENCE_IMAGES}),
        _SEEDANCE_LITE_ARGS,
        # "Reference image mode of doubao-seedance-1-0-lite-i2v-250428 does not support 1080p"
        exclusions=(
            Exclusion(
                Setting("reference_images"),
                Setting("resolution", "1080p"),
                "reference image mode does not support 1080p",
            ),
        ),
        notes=(
            _SEEDANCE_NOTE,
            "Reference images are named in the prompt by position: [图1], [图2], ...",
        ),
    ),
    # The table says "Text-to-video (first frame mode)" and the notes "only
    # supports first frame mode", but the Supported Models section says "supports
    # text-to-video and image-to-video (first frame mode)" and the Complete
    # Examples send it a text-only request: text-to-video + first frame.
    _model(
        "doubao-seedance-1-0-pro-250528",
        Family.SEEDANCE,
        "Doubao Seedance 1.0 pro: text-to-video and first-frame image-to-video",
        _T2V_I2V,
        _SEEDANCE_ARGS,
        notes=(_SEEDANCE_NOTE,),
    ),
    # The FAQ says first/last frame is "only" lite-i2v and wan2-1-14b-flf2v, but
    # the model table lists it for 1.5 pro and example 8 uses it: allowed.
    _model(
        "doubao-seedance-1-5-pro-251215",
        Family.SEEDANCE,
        "Doubao Seedance 1.5 pro with audio: text-to-video, first frame, first/last frame",
        _T2V_I2V_FLF,
        _SEEDANCE_15_ARGS,
        notes=(_SEEDANCE_NOTE, "Duration 4-12 s, resolution 480p or 720p; the video has audio."),
    ),
    _model(
        "doubao-seedance-1-5-pro-251215-noAudio",
        Family.SEEDANCE,
        "Doubao Seedance 1.5 pro, silent: text-to-video, first frame, first/last frame",
        _T2V_I2V_FLF,
        _SEEDANCE_15_ARGS,
        notes=(_SEEDANCE_NOTE, "Duration 4-12 s, resolution 480p or 720p; the video is silent."),
    ),
    # The three Ark models "listed with" Seedance take the family's request shape
    # and its marker values (the docs give them no values of their own).
    _model(
        "doubao-seaweed-1-0-t2v-250428",
        Family.SEEDANCE,
        "Doubao Seaweed 1.0 text-to-video (Seedance request shape)",
        _T2V,
        _SEEDANCE_ARGS,
        notes=(_SEEDANCE_NOTE,),
    ),
    _model(
        "wan2-1-14b-i2v-250417",
        Family.SEEDANCE,
        "Wan 2.1 14B image-to-video on Ark (first frame; Seedance request shape)",
        frozenset({Mode.FIRST_FRAME}),
        _SEEDANCE_ARGS,
        notes=(_SEEDANCE_NOTE,),
    ),
    _model(
        "wan2-1-14b-flf2v-250417",
        Family.SEEDANCE,
        "Wan 2.1 14B first/last frame to video on Ark (Seedance request shape)",
        frozenset({Mode.FIRST_LAST_FRAME}),
        _SEEDANCE_ARGS,
        notes=(_SEEDANCE_NOTE, "Needs both image (first frame) and last_frame."),
    ),
)

#: Every model id in the docs, in doc order.
CATALOG: Final[Mapping[str, ModelSpec]] = MappingProxyType({m.id: m for m in _MODELS})
MODEL_IDS: Final[tuple[str, ...]] = tuple(CATALOG)


def get_model(model_id: str) -> ModelSpec:
    """The spec of ``model_id``, or :class:`InvalidArgumentsError` naming the valid ids."""
    spec = CATALOG.get(model_id)
    if spec is None:
        raise InvalidArgumentsError([unknown_model_problem(model_id)])
    return spec


def unknown_model_problem(model_id: str) -> Problem:
    """The problem reported for a model id that is not in the catalog."""
    shown = clip(model_id, 80)
    return Problem("model", f"{shown!r} is not a known model; valid values: {', '.join(MODEL_IDS)}")


def models(family: Family | None = None) -> list[ModelSpec]:
    """Every model (of ``family`` when given), in doc order."""
    return [m for m in _MODELS if family is None or m.family == family]


def takers(argument: str) -> list[str]:
    """The ids of the models that take ``argument``."""
    return [m.id for m in _MODELS if m.takes(argument)]


def job_seconds(model: object, duration: object) -> float:
    """Seconds of video one job asks for: ``duration`` when given, else ``model``'s
    default (its shortest) from the catalog; 0 for an unknown model (refused anyway).
    What confirmation and budgets both count (a batch: the sum over its jobs)."""
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        return float(duration)
    if not isinstance(model, str) or model not in CATALOG:
        return 0.0
    arg = CATALOG[model].arguments.get("duration")
    if arg is not None:
        numbers = [c for c in arg.choices if isinstance(c, int | float)]
        if numbers:
            return float(min(numbers))
        if arg.minimum is not None:
            return float(arg.minimum)
    return 0.0
