"""The unified arguments of ``generate_video``: one set of names for every model.

:class:`VideoArguments` holds exactly the names of the contract table; pydantic
checks only types and the contract-wide enums and bounds. What each *model*
accepts is checked by :mod:`gravitex_mcp.validation` against the catalog, so a
call gets every problem at once with the model's valid values named.

The JSON Schema is kept friendly to LLM clients: enums are plain ``enum``
lists, bounds are ``minimum``/``maximum``, optional fields are not spelled
``anyOf [..., null]`` (``null`` is still accepted and means "not given").
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from .catalog import MODEL_IDS, SEED_MAX

DEFAULT_WAIT_SECONDS: Final = 35
"""Default wait of ``generate_video``: keeps the whole call under 50 s."""
MAX_WAIT_SECONDS: Final = 600

Resolution = Literal["480p", "720p", "1080p", "4k"]
AspectRatio = Literal["16:9", "9:16", "1:1", "4:3", "3:4", "21:9", "adaptive"]
PersonGeneration = Literal["allow_all", "allow_adult", "dont_allow"]

_SEEDANCE = "Seedance-family models (doubao-*, wan2-1-14b-*)"
_IMAGE_FORMS = (
    "an https URL, a data:image/png|jpeg|webp;base64,... URL, or the path of a PNG/JPEG/WEBP "
    "file (10 MB max) inside the server's allowed input folders"
)


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    """Leave ``"default": null`` out of the schema: omitting the field says the same."""
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict) and "default" in prop and prop["default"] is None:
            del prop["default"]


class VideoArguments(BaseModel):
    """What to generate, in the unified names; only ``model`` and ``prompt`` are required."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_null_defaults)

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
                f"{_SEEDANCE} it may also carry settings as markers (--ratio 16:9 --dur 5 "
                "--rs 720p --fps 24 --wm false --seed 1 --cf false), checked like the "
                "matching arguments; reference images are named [图1], [图2], ... by position."
            )
        ),
    ]
    duration: Annotated[
        Annotated[int, Field(ge=1, strict=True)] | SkipJsonSchema[None],
        Field(
            description=(
                "Length in seconds. sora-2: 4, 8, 12. veo-*: 4, 6, 8. wan2.5-*: 5, 10. "
                "doubao-seedance-1-5-pro-*: 4 to 12. Other Seedance-family models: 5, 10."
            )
        ),
    ] = None
    resolution: Annotated[
        Resolution | SkipJsonSchema[None],
        Field(
            description=(
                "veo-*: 720p, 1080p. wan2.5-*: 480p, 720p, 1080p (wan2.5-t2v-preview: together "
                "with aspect_ratio it picks size). Seedance family: 480p, 720p, 1080p "
                "(doubao-seedance-1-5-pro-*: 480p, 720p; not 1080p with reference_images). "
                "sora-2 does not take it: use size. No model takes 4k."
            )
        ),
    ] = None
    aspect_ratio: Annotated[
        AspectRatio | SkipJsonSchema[None],
        Field(
            description=(
                "sora-2: 16:9 (size 1280x720) or 9:16 (size 720x1280). veo-*: 16:9, 9:16. "
                "wan2.5-t2v-preview: 16:9, 9:16, 1:1, 4:3, 3:4 (with resolution it picks size). "
                "Seedance family: 16:9, 9:16, 1:1, 4:3, 3:4, adaptive (no adaptive on "
                "doubao-seedance-1-0-lite-t2v-250428). wan2.5-i2v-preview follows its image. "
                "No model takes 21:9."
            )
        ),
    ] = None
    size: Annotated[
        Annotated[str, Field(pattern=r"^[0-9]+[x*][0-9]+$")] | SkipJsonSchema[None],
        Field(
            description=(
                "Exact frame size as WxH or W*H. sora-2: 720x1280 or 1280x720. "
                "wan2.5-t2v-preview: width*height such as 1280*720 or 1920*1080. "
                "No other model takes it."
            )
        ),
    ] = None
    image: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=(
                f"First frame (image-to-video): {_IMAGE_FORMS}. sora-2 (its pixel size must "
                "equal size), veo-*, wan2.5-i2v-preview (required), and the Seedance-family "
                "models with an image mode (required by doubao-seedance-1-0-lite-i2v-250428 "
                "unless reference_images are given, and by wan2-1-14b-*)."
            )
        ),
    ] = None
    last_frame: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=(
                "Last frame, together with image (first/last frame mode); same forms as image. "
                "veo-3.1-*, doubao-seedance-1-0-lite-i2v-250428, doubao-seedance-1-5-pro-*, "
                "wan2-1-14b-flf2v-250417 (required there)."
            )
        ),
    ] = None
    reference_images: Annotated[
        Annotated[list[str], Field(min_length=1)] | SkipJsonSchema[None],
        Field(
            description=(
                "Reference images for subjects and style; same forms as image. Only "
                "doubao-seedance-1-0-lite-i2v-250428, without image or last_frame and not at "
                "1080p. Name them in the prompt by position: [图1], [图2], ..."
            )
        ),
    ] = None
    remix_from_video_id: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=(
                "sora-2 only (remix): the id of an earlier sora-2 video, starting with video_, "
                "to regenerate following the new prompt. Not together with image."
            ),
            json_schema_extra={"pattern": "^video_"},
        ),
    ] = None
    generate_audio: Annotated[
        bool | SkipJsonSchema[None],
        Field(
            description=(
                "Generate synchronized audio. veo-* (the fast models always include audio) "
                "and wan2.5-*."
            )
        ),
    ] = None
    audio_url: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=(
                "wan2.5-* only: a custom audio track for the video: an https URL, or the "
                "path of an MP3/WAV/M4A/OGG/FLAC file (at most 10 MB) inside GRAVITEX_INPUT_DIRS."
            )
        ),
    ] = None
    seed: Annotated[
        Annotated[int, Field(ge=0, le=SEED_MAX, strict=True)] | SkipJsonSchema[None],
        Field(
            description=(
                "Random seed for reproducible results. veo-*, wan2.5-* and the Seedance family."
            )
        ),
    ] = None
    fps: Annotated[
        Annotated[int, Field(ge=1, strict=True)] | SkipJsonSchema[None],
        Field(
            description="Frames per second: 24 or 30. veo-* (default 24) and the Seedance family."
        ),
    ] = None
    watermark: Annotated[
        bool | SkipJsonSchema[None],
        Field(description="Add a watermark (true/false). veo-* and the Seedance family."),
    ] = None
    person_generation: Annotated[
        PersonGeneration | SkipJsonSchema[None],
        Field(
            description=(
                "veo-* only: allow_all (people of all ages), allow_adult (adults only), "
                "dont_allow (no people)."
            )
        ),
    ] = None
    sample_count: Annotated[
        Annotated[int, Field(ge=1, le=4, strict=True)] | SkipJsonSchema[None],
        Field(description="veo-* only: how many videos to generate in this request, 1 to 4."),
    ] = None
    smart_rewrite: Annotated[
        bool | SkipJsonSchema[None],
        Field(description="wan2.5-* only: let the provider expand the prompt."),
    ] = None
    camera_fixed: Annotated[
        bool | SkipJsonSchema[None],
        Field(
            description=(
                "Keep the camera still. Only doubao-seedance-1-0-lite-t2v-250428 and "
                "doubao-seedance-1-0-lite-i2v-250428."
            )
        ),
    ] = None
    return_last_frame: Annotated[
        bool | SkipJsonSchema[None],
        Field(description=f"{_SEEDANCE} only: also return the video's last frame."),
    ] = None
    callback_url: Annotated[
        str | SkipJsonSchema[None],
        Field(
            description=(
                f"{_SEEDANCE} only: an https:// URL the provider calls when the task's "
                "status changes."
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
    preview: Annotated[
        bool,
        Field(
            description=(
                "With a saved video: put its contact sheet (frames spread over the clip, one "
                "JPEG) in the result as an image. false leaves the image out (probe, notes and "
                "the sheet's path stay)."
            )
        ),
    ] = True

    def video_arguments(self) -> VideoArguments:
        """The unified arguments alone, with the same fields marked as given."""
        return VideoArguments.model_validate(self.given())
