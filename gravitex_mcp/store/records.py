"""What the task store hands out: a task's record and history, a key's claim, a budget's
reservation, the submit rate limit's answer, and when a result URL expires (recorded
with the URL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from ..domain import LOCAL_USER, URL_LIFETIME, JournalStatus, as_utc
from ..redact import redact_url


class TaskEvent(BaseModel):
    """One status change of a task."""

    # Built at first use: start-up and tools/list never need the journal's models.
    model_config = ConfigDict(frozen=True, defer_build=True)

    status: JournalStatus = Field(description="The status the task moved to.")
    at: datetime = Field(description="When the change was seen (UTC).")
    detail: str | None = Field(default=None, description="Why, when known.")


class TaskRecord(BaseModel):
    """One journal entry.

    Serialising it (``model_dump``, ``model_dump_json``, :meth:`public_dict`)
    always redacts ``url`` to ``scheme://host/path``; the attribute itself holds
    the whole signed URL for the download code.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    local_id: str = Field(description="This server's id of the submission (a UUID).")
    user_id: str = Field(
        default=LOCAL_USER,
        exclude=True,  # the owner sees only their own tasks: no need to show it
        description="Whose task it is (the caller's user id).",
    )
    task_id: str | None = Field(description="The upstream task id; null until the submit answered.")
    model: str = Field(description="The model id the task was submitted to.")
    family: str = Field(description="The model family (sora, veo, wan, seedance).")
    arguments: dict[str, Any] = Field(
        description="The arguments given, with media data replaced by a sha256 digest."
    )
    status: JournalStatus = Field(description="The last status seen.")
    raw_status: str | None = Field(
        default=None, description="The upstream status string as it was received."
    )
    url: str | None = Field(
        default=None,
        repr=False,  # the signature must not reach a log through repr()
        description="The result URL, shown without its query string (the signature).",
    )
    url_expires_at: datetime | None = Field(
        default=None, description="When the result URL stops working (UTC, estimated)."
    )
    error_code: str | None = Field(default=None, description="The upstream error code.")
    error_message: str | None = Field(default=None, description="Why the task failed.")
    saved_path: str | None = Field(
        default=None, description="Where the video was saved, once downloaded."
    )
    size_bytes: int | None = Field(default=None, description="Size of the saved video.")
    sha256: str | None = Field(default=None, description="SHA-256 of the saved video.")
    saved_identity: str | None = Field(
        default=None,
        exclude=True,  # internal: how a reuse checks the file cheaply (ondisk.FileIdentity)
        repr=False,
        description="The saved file's identity when saved: dev:ino:size:mtime_ns:ctime_ns.",
    )
    created_at: datetime = Field(description="When the submission began (UTC).")
    updated_at: datetime = Field(description="When anything in this entry last changed (UTC).")
    checked_at: datetime | None = Field(
        default=None,
        description="When a changed status was last recorded from the API (UTC); "
        "polls that change nothing are not written.",
    )
    downloaded_at: datetime | None = Field(
        default=None, description="When the video was saved (UTC)."
    )
    events: list[TaskEvent] = Field(
        default_factory=list,
        description="Status history, oldest first (filled for a single task only).",
    )

    @field_serializer("url")
    def _serialize_url(self, value: str | None) -> str | None:
        return None if value is None else redact_url(value)

    def public_dict(self) -> dict[str, Any]:
        """The JSON-able view for the tasks resource and ``list_video_tasks``."""
        return self.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class KeyClaim:
    """What :meth:`Journal.claim_key` found: a new claim, or the key's holder."""

    local_id: str | None
    """The new submission's local id when the key was claimed; else ``None``."""
    holder: TaskRecord | None
    """The submission already holding the key (when not claimed)."""
    arguments_hash: str
    """The digest of the arguments the key is bound to."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """Seconds reserved against a user's daily budget: one id per job, in order."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class OverBudget:
    """A reservation refused: it would take the user past their daily budget."""

    used: float
    """Seconds already reserved today (UTC)."""
    budget: float

    @property
    def left(self) -> float:
        return max(0.0, self.budget - self.used)


#: The submit rate limit's window: at most ``per_minute`` submits of a user in any
#: this many seconds.
SUBMIT_WINDOW_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class RateLimited:
    """Submit slots refused: the user took their limit within the window."""

    retry_after: float
    """Seconds until enough of their slots free."""


def slots_to_take(
    taken: Sequence[float], count: int, *, per_minute: int, now: float
) -> int | RateLimited:
    """How many submit slots to take now for ``count`` submits (a batch larger than the
    limit needs the whole window and takes all of it), or when to retry; ``taken``: the
    times (epoch seconds, oldest first) of the slots still in the window at ``now``."""
    wanted = min(count, per_minute)
    over = len(taken) + wanted - per_minute
    if over > 0:  # the over-th oldest must leave the window first
        return RateLimited(retry_after=max(0.0, taken[over - 1] + SUBMIT_WINDOW_SECONDS - now))
    return wanted


@dataclass(frozen=True, slots=True)
class Usage:
    """A user's day so far (UTC)."""

    seconds_today: float
    tasks_today: int


_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z


def _as_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        return None
    seconds = int(value)
    return seconds if seconds <= _MAX_EPOCH else None


def parse_url_expiry(url: str, *, seen_at: datetime) -> datetime:
    """When a signed result URL expires.

    Understood: ``Expires=<unix time>`` (Alibaba OSS, CloudFront);
    ``X-Tos-Expires``/``X-Amz-Expires``/``X-Goog-Expires`` seconds counted from
    the matching ``-Date`` (``YYYYMMDDTHHMMSSZ``), or from ``seen_at`` without
    one. Anything else: ``seen_at`` + 24 h, the lifetime the docs give.
    """
    seen_at = as_utc(seen_at)
    try:
        query = urlsplit(url).query
    except ValueError:
        query = ""
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(key.lower(), value)
    epoch = _as_seconds(params.get("expires"))
    if epoch is not None:
        return datetime.fromtimestamp(epoch, UTC)
    for vendor in ("x-tos", "x-amz", "x-goog"):
        lifetime = _as_seconds(params.get(f"{vendor}-expires"))
        if lifetime is None:
            continue
        start = seen_at
        raw_date = params.get(f"{vendor}-date")
        if raw_date:
            try:
                start = datetime.strptime(raw_date.strip(), _AMZ_DATE).replace(tzinfo=UTC)
            except ValueError:
                start = seen_at
        try:
            return start + timedelta(seconds=lifetime)
        except OverflowError:
            break
    return seen_at + URL_LIFETIME
