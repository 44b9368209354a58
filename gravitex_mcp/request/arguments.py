"""The unified arguments of ``generate_video``: one set of names for every model.

:class:`VideoArguments` holds exactly the names of the contract table; pydantic
checks only types and the contract-wide enums and bounds. What each *model*
accepts is checked by :mod:`gravitex_mcp.request.validation` against the catalog, so a
call gets every problem at once with the model's valid values named.

The JSON Schema is kept friendly to LLM clients: enums are plain ``enum``
lists, bounds are ``minimum``/``maximum``, optional fields are not spelled
``anyOf [..., null]`` (``null`` is still accepted and means "not given").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeAlias, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ..catalog.argument_docs import markers_text, refused_values_text, takers_text
from ..catalog.models import CATALOG, MODEL_IDS, SEED_MAX, ArgSpec, takers
from .inputs.media import MAX_MEDIA_BYTES, MAX_REQUEST_MEDIA_BYTES

DEFAULT_WAIT_SECONDS: Final = 35
"""Default wait of ``generate_video``: keeps the whole call under 50 s."""
MAX_WAIT_SECONDS: Final = 600
MB: Final = 1024 * 1024
MAX_PROMPT_CHARS: Final = 10_000
"""The longest prompt accepted: far above what the models read, far below what hurts."""
PREVIEW_DESCRIPTION: Final = (
    "With a saved video: put its contact sheet (frames spread over the clip, one JPEG) in the "
    "result as an image. false leaves the image out (probe, notes and the sheet's path stay)."
)
"""The ``preview`` argument of every tool that saves a video."""


#: The contract table's unified values, in its order; each model's subset is in the
#: catalog (the descriptions name the values no model takes: "No model takes 4k.").
Resolution = Literal["480p", "720p", "1080p", "4k"]
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive"]


def _one_rule(name: str) -> ArgSpec:
    """``name``'s values in the catalog, where every model that takes it takes the same."""
    [rule] = {CATALOG[model].arguments[name] for model in takers(name)}
    return rule


_PERSON_GENERATION, _SAMPLE_COUNT = _one_rule("person_generation"), _one_rule("sample_count")
if TYPE_CHECKING:  # made at run time, from the catalog
    PersonGeneration: TypeAlias = str
else:
    PersonGeneration = Literal[_PERSON_GENERATION.choices]

_SEEDANCE = "Seedance-family models (doubao-*, wan2-1-14b-*)"
_IMAGE_FORMS = (
    "an https URL, a data:image/png|jpeg|webp;base64,... URL, or the path of a PNG/JPEG/WEBP "
    f"file inside the server's allowed input folders ({MAX_MEDIA_BYTES // MB} MB each; data URLs "
    f"and files add up to {MAX_REQUEST_MEDIA_BYTES // MB} MB per request at most)"
)


def _about(name: str, intro: str, unified_values: Iterable[str] = ()) -> str:
    """A field description: what it is, then which models take it with which values."""
    parts = [intro, takers_text(name), refused_values_text(name, unified_values)]
    return " ".join(part for part in parts if part)


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    """Leave ``"default": null`` out of the schema: omitting the field says the same."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict) and "default" in prop and prop["default"] is None:
            del prop["default"]


class VideoArguments(BaseModel):
    """What to generate, in the unified names; only ``model`` and ``prompt`` are required."""

    # Strict: a value is the JSON type its schema names ("4" is not 4, "true" not true),
    # as every integer already was; one rule, so no message contradicts another.
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_drop_null_defaults)

    model: Annotated[
        str,
        Field(
            description=(
                "The video model. sora-2 (OpenAI Sora 2), veo-* (Google Veo), wan2.5-* "
                f"(Alibaba Wan 2.5), and the {_SEEDANCE}. Each takes different arguments: "
                "call list_models to see them."
            ),
            json_schema_extra={"enum": list(MODEL_IDS)},
        ),
    ]
    prompt: Annotated[
        str,
        Field(
            description=(
                "What the video shows: scene, action, camera. For the "
                f"{_SEEDANCE} it may also carry settings as markers ({markers_text()}, "
                "e.g. --ratio 16:9 --dur 5), checked like the matching arguments; reference "
                "images are named [图1], [图2], ... by position. "
                f"At most {MAX_PROMPT_CHARS} characters, with at least one visible character."
            ),
            json_schema_extra={"maxLength": MAX_PROMPT_CHARS},
        ),
    ]
    duration: Annotated[
        Annotated[int, Field(ge=1, strict=True)] | SkipJsonSchema[None],
        Field(description=_about("duration", "Length in seconds.")),
    ] = None
    resolution: Annotated[
        Resolution | SkipJsonSchema[None],
        Field(description=_about("resolution", "Output resolution.", get_args(Resolution))),
    ] = None
    aspect_ratio: Annotated[
        AspectRatio | SkipJsonSchema[None],
        Field(description=_about("aspect_ratio", "Frame shape.", get_args(AspectRatio))),
    ] = None
    size: Annotated[
        Annotated[str, Field(pattern=r"^[0-9]+[x*][0-9]+$")] | SkipJsonSchema[None],
        Field(description=_about("size", "Exact frame size as WxH or W*H (either spelling).")),
    ] = None
    image: Annotated[
        str | SkipJsonSchema[None],
        Field(description=_about("image", f"First frame (image-to-video): {_IMAGE_FORMS}.")),
    ] = None
    last_frame: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=_about(
                "last_frame", "Last frame, with image (first/last frame mode); same forms as image."
            )
        ),
    ] = None
    reference_images: Annotated[
        Annotated[list[str], Field(min_length=1)] | SkipJsonSchema[None],
        Field(
            description=_about(
                "reference_images",
                "Reference images for subjects and style, without image or last_frame; same "
                "forms as image. Name them in the prompt by position: [图1], [图2], ...",
            )
        ),
    ] = None
    remix_from_video_id: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=_about(
                "remix_from_video_id",
                "Remix: the id of an earlier sora-2 video (video_...) to regenerate following "
                "the new prompt. Not together with image.",
            ),
            json_schema_extra={"pattern": "^video_"},
        ),
    ] = None
    generate_audio: Annotated[
        bool | SkipJsonSchema[None],
        Field(description=_about("generate_audio", "Generate synchronized audio.")),
    ] = None
    audio_url: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=_about(
                "audio_url",
                "A custom audio track: an https URL, or the path of an MP3/WAV/M4A/OGG/FLAC "
                f"file (at most {MAX_MEDIA_BYTES // MB} MB) inside GRAVITEX_INPUT_DIRS.",
            )
        ),
    ] = None
    seed: Annotated[
        Annotated[int, Field(ge=0, le=SEED_MAX, strict=True)] | SkipJsonSchema[None],
        Field(description=_about("seed", "Random seed for reproducible results.")),
    ] = None
    fps: Annotated[
        Annotated[int, Field(ge=1, strict=True)] | SkipJsonSchema[None],
        Field(description=_about("fps", "Frames per second.")),
    ] = None
    watermark: Annotated[
        bool | SkipJsonSchema[None],
        Field(description=_about("watermark", "Add a watermark.")),
    ] = None
    person_generation: Annotated[
        PersonGeneration | SkipJsonSchema[None],
        Field(
            description=_about(
                "person_generation",
                "allow_all (people of all ages), allow_adult (adults only), "
                "dont_allow (no people).",
            )
        ),
    ] = None
    sample_count: Annotated[
        Annotated[int, Field(ge=_SAMPLE_COUNT.minimum, le=_SAMPLE_COUNT.maximum, strict=True)]
        | SkipJsonSchema[None],
        Field(description=_about("sample_count", "How many videos to generate in this request.")),
    ] = None
    smart_rewrite: Annotated[
        bool | SkipJsonSchema[None],
        Field(description=_about("smart_rewrite", "Let the provider expand the prompt.")),
    ] = None
    camera_fixed: Annotated[
        bool | SkipJsonSchema[None],
        Field(description=_about("camera_fixed", "Keep the camera still.")),
    ] = None
    return_last_frame: Annotated[
        bool | SkipJsonSchema[None],
        Field(description=_about("return_last_frame", "Also return the video's last frame.")),
    ] = None
    callback_url: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=_about(
                "callback_url",
                "An https:// URL the provider calls when the task's status changes.",
            ),
            json_schema_extra={"pattern": "^https://"},
        ),
    ] = None

    def given(self) -> dict[str, Any]:
        """The unified arguments the caller set, in declaration order.

        An explicit ``null`` counts as not given (LLM clients often send them).
        Server-side fields of subclasses are not included.
        """
        return {
            name: getattr(self, name)
            for name in VideoArguments.model_fields
            if name in self.model_fields_set and getattr(self, name) is not None
        }


#: The confirm argument of generate_video and generate_videos (GRAVITEX_CONFIRM_OVER_SECONDS).
CONFIRM_DESCRIPTION: Final = (
    "true: the person has approved spending on this submission. Needed only where the "
    "server asks before large submissions and this client cannot show its question."
)


class GenerateVideoInput(VideoArguments):
    """The generate_video tool's input: the unified arguments plus server-side ones."""

    dry_run: Annotated[
        bool,
        Field(
            description=(
                "Validate and return the exact upstream body as payload; submit nothing (no cost)."
            )
        ),
    ] = False
    wait_seconds: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_WAIT_SECONDS,
            strict=True,
            description=(
                "Wait at most this long for the video, sending progress notifications, then "
                "return whatever status the task has (check_video_task keeps waiting). The "
                f"default {DEFAULT_WAIT_SECONDS} keeps the whole call under 50 s; 0 returns "
                "right after submitting."
            ),
        ),
    ] = DEFAULT_WAIT_SECONDS
    download: Annotated[
        bool,
        Field(description="Save the video to the output folder when it finishes within the wait."),
    ] = False
    preview: Annotated[bool, Field(description=PREVIEW_DESCRIPTION)] = True
    confirm: Annotated[
        bool,
        Field(description=CONFIRM_DESCRIPTION),
    ] = False

    idempotency_key: Annotated[
        str | SkipJsonSchema[None],
        Field(
            min_length=1,
            max_length=100,
            description=(
                "Makes retries safe: a repeat with the same key and the same arguments "
                "returns the first call's task (even after a restart) and submits nothing; "
                "the same key with other arguments is refused. Not sent upstream."
            ),
        ),
    ] = None


#: The arguments the server acts on itself (never sent upstream).
SERVER_ARGUMENTS: Final = tuple(
    n for n in GenerateVideoInput.model_fields if n not in VideoArguments.model_fields
)
