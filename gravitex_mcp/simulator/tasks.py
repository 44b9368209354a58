"""Simulated tasks: ids in each family's shape, and status derived from a clock."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, Literal

from ..domain import Family

TaskState = Literal["queued", "in_progress", "succeeded", "failed"]

_SIZE_MARKER = re.compile(r"\[size=(\d+)\s*(k|m|g|kb|mb|gb|kib|mib|gib)?\]", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def size_from_prompt(prompt: str) -> int | None:
    """The byte count of a ``[size=N]`` marker (``N`` may end in k/m/g, 1024-based)."""
    match = _SIZE_MARKER.search(prompt)
    if match is None:
        return None
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _UNITS[unit]


def new_task_id(family: Family, unix_now: float, taken: Container[str] = ()) -> str:
    """A fresh id shaped like the upstream's for ``family``.

    Sora ``video_<32 hex>``, Veo ``video_<16 hex>``, Wan a UUID, the Seedance
    family ``cgt-<yyyymmddhhmmss>-<5 hex>``.
    """
    while True:
        if family is Family.SORA:
            candidate = f"video_{secrets.token_hex(16)}"
        elif family is Family.VEO:
            candidate = f"video_{secrets.token_hex(8)}"
        elif family is Family.WAN:
            candidate = str(uuid.uuid4())
        else:
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(unix_now))
            candidate = f"cgt-{stamp}-{secrets.token_hex(3)[:5]}"
        if candidate not in taken:
            return candidate


@dataclass(slots=True)
class SimTask:
    """One task the simulator accepted. Its status is a function of time."""

    task_id: str
    model: str
    family: Family
    prompt: str
    created_at: float
    queued_seconds: float
    processing_seconds: float
    video_size: int
    fails: bool
    error_code: int | str
    error_message: str
    body: dict[str, Any] = field(repr=False, default_factory=dict)
    #: The mp4 this task's video starts with (``None``: the shipped sample).
    clip: bytes | None = field(repr=False, default=None)

    @property
    def started_at(self) -> float:
        return self.created_at + self.queued_seconds

    @property
    def finished_at(self) -> float:
        return self.started_at + self.processing_seconds

    def status_at(self, now: float) -> TaskState:
        if now < self.started_at:
            return "queued"
        if now < self.finished_at:
            return "in_progress"
        return "failed" if self.fails else "succeeded"
