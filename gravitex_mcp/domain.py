"""Small shared vocabulary: model families, generation modes, task states, the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

URL_LIFETIME: Final = timedelta(hours=24)
"""The docs: a finished task's signed result URL is valid for about this long."""
URL_LIFETIME_TEXT: Final = f"about {URL_LIFETIME // timedelta(hours=1)} h"
#: The folder in the output folder holding every non-local user's own folder
#: (``<output>/users/<storage name>/``); the local user keeps the output folder itself.
USERS_FOLDER: Final = "users"
#: The user of a single-user server (stdio, or HTTP without authentication).
LOCAL_USER: Final = "local"


def user_folder(output_dir: Path, storage_name: str) -> Path:
    """Where ``storage_name``'s files live: the output folder itself for the local user
    (the embedded default is unchanged), ``<output>/users/<storage name>/`` otherwise."""
    return output_dir if storage_name == LOCAL_USER else output_dir / USERS_FOLDER / storage_name


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


class JournalStatus(StrEnum):
    """A recorded task's status: the contract's task states plus the local ones of a
    submission. The one status vocabulary: the store, results and tools read it here."""

    SUBMITTING = "submitting"
    """Written before the submit request; the answer has not arrived yet."""
    SUBMIT_UNKNOWN = "submit_unknown"
    """The submit may have reached the API but its answer was lost."""
    SUBMIT_FAILED = "submit_failed"
    """The submit was refused (by the API, or before sending: no key): no task exists."""
    SUBMITTED = TaskStatus.SUBMITTED.value
    """The API accepted the submit and returned a task id."""
    QUEUED = TaskStatus.QUEUED.value
    """The task waits upstream for a free worker."""
    IN_PROGRESS = TaskStatus.IN_PROGRESS.value
    """The video is being made."""
    SUCCEEDED = TaskStatus.SUCCEEDED.value
    """The video is ready (and, once downloaded, saved: see its path)."""
    FAILED = TaskStatus.FAILED.value
    """The task ended without a video; the entry says why."""
    UNKNOWN = TaskStatus.UNKNOWN.value
    """The API answered a status this server does not know."""

    @property
    def is_terminal(self) -> bool:
        """``succeeded`` or ``failed``: nothing more will happen upstream."""
        return self in (JournalStatus.SUCCEEDED, JournalStatus.FAILED)


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


#: The mp4 ``comment`` tag of every clip the built-in simulator makes: the asked-versus-found
#: notes read it to blame the simulator, not the model, for its small size and missing audio.
SIMULATOR_MARK = "gravitex-mcp simulator clip: 160 px on the short side, no audio"
