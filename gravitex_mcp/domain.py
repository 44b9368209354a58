"""Small shared vocabulary: model families, generation modes, task states."""

from __future__ import annotations

from enum import StrEnum


class Family(StrEnum):
    """How a model wants its request spelled upstream."""

    SORA = "sora"
    VEO = "veo"
    WAN = "wan"
    SEEDANCE = "seedance"


class Delivery(StrEnum):
    """Where a finished task's video comes from."""

    DOWNLOAD_ENDPOINT = "download_endpoint"  # GET /v1/video/generations/download (base64 JSON)
    TASK_URL = "task_url"  # the signed ``url`` of the task's query answer


class Mode(StrEnum):
    """What a model can be asked to do."""

    TEXT_TO_VIDEO = "text_to_video"
    FIRST_FRAME = "first_frame"
    FIRST_LAST_FRAME = "first_last_frame"
    REFERENCE_IMAGES = "reference_images"
    REMIX = "remix"


class TaskStatus(StrEnum):
    """A task's status as the contract names it (``unknown`` for anything else)."""

    SUBMITTED = "submitted"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)

    @classmethod
    def parse(cls, raw: object) -> TaskStatus:
        """Map an upstream status string onto the enum; anything else is ``UNKNOWN``."""
        if isinstance(raw, str):
            try:
                return cls(raw.strip().lower())
            except ValueError:
                return cls.UNKNOWN
        return cls.UNKNOWN


#: The mp4 ``comment`` tag of every clip the built-in simulator makes: the asked-versus-found
#: notes read it to blame the simulator, not the model, for its small size and missing audio.
SIMULATOR_MARK = "gravitex-mcp simulator clip: 160 px on the short side, no audio"
