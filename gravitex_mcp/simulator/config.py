"""The simulator's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FailureStyle = Literal["error", "metadata", "both"]
UrlSignedAt = Literal["completion", "query"]


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything a test or ``gravitex-mcp simulator`` may tune.

    Times are seconds of the simulator's clock. A task is ``queued`` for
    ``queued_seconds``, ``in_progress`` for ``processing_seconds``, then
    ``succeeded`` (or ``failed`` when its prompt text contains ``fail_marker``).
    """

    #: Accepted keys; ``None`` accepts any ``sk-`` key.
    api_keys: frozenset[str] | None = field(default=None, repr=False)
    queued_seconds: float = 1.0
    processing_seconds: float = 4.0
    #: Lifetime of the signed file URL given for non-Sora results (from completion).
    url_ttl_seconds: float = 24 * 3600
    #: When the URL's lifetime starts: at the task's completion (every query gives the
    #: same link, which eventually expires for good) or at each query (a fresh link).
    url_signed_at: UrlSignedAt = "completion"
    fail_marker: str = "[fail]"
    failure_code: int | str = 400
    failure_message: str = "Prompt contains inappropriate content"
    #: How a failure is told: ``error: {code, message}``, ``metadata.output.message``, or both.
    failure_style: FailureStyle = "error"
    #: Size of every video in bytes (``None``: the sample's own ~18 KB). Must be the
    #: sample's size or at least 8 bytes more (see ``media.is_valid_size``).
    video_size_bytes: int | None = None
    #: Honour a ``[size=N]`` marker (``N`` may end in k/m/g) in the prompt text.
    size_marker: bool = True
    #: Raw video bytes per streamed chunk; a multiple of 3 so base64 chunks concatenate.
    chunk_bytes: int = 3 * 64 * 1024
    #: Refuse fields (and Seedance ``--markers``) a family does not document.
    strict_fields: bool = True
    #: The file route answers 400 when a request carries an Authorization header
    #: as well as a signature (as object stores do): catches a leaked API key.
    reject_authorization_on_files: bool = True
    #: Serve the ``/_simulator/...`` control routes (state, faults, clock).
    control_routes: bool = True
    #: Base of the signed file URLs; ``None`` uses the request's own base URL.
    public_base_url: str | None = None
    #: Make each task's video a real clip of the asked duration and aspect ratio (see
    #: clips.py); False serves the shipped 2 s sample to every task.
    clips: bool = True
    #: A prompt containing this gets a clip half as long as asked (an upstream that
    #: returns less than it was asked for).
    short_marker: str = "[short]"
    #: HMAC key for the file URL signatures; ``None`` draws a random one per simulator.
    signing_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("queued_seconds", "processing_seconds", "url_ttl_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.chunk_bytes <= 0 or self.chunk_bytes % 3:
            raise ValueError("chunk_bytes must be a positive multiple of 3")
        if self.failure_style not in ("error", "metadata", "both"):
            raise ValueError("failure_style must be 'error', 'metadata' or 'both'")
        if self.url_signed_at not in ("completion", "query"):
            raise ValueError("url_signed_at must be 'completion' or 'query'")
        if self.video_size_bytes is not None and self.video_size_bytes <= 0:
            raise ValueError("video_size_bytes must be positive")
        if self.api_keys is not None and not all(k.startswith("sk-") for k in self.api_keys):
            raise ValueError("every accepted API key must start with 'sk-'")
