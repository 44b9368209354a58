"""When to try a request again, and how long to wait first.

Everything here is pure: the clock and the random number are arguments, so
the client (and its tests) decide where time and randomness come from.

Backoff
    The delay after failed attempt ``n`` (1-based) is
    ``min(max_delay, initial_delay * multiplier ** (n - 1))`` shortened by up
    to ``jitter`` of itself: ``base * (1 - jitter * rand)`` with ``rand`` in
    ``[0, 1)``. The jitter only ever shortens the wait, so ``max_delay`` stays
    a real upper bound and many clients that failed together spread out.

Retry-After
    A ``retry-after-ms`` header (milliseconds) or a ``Retry-After`` header
    (delta-seconds or an HTTP-date) replaces the backoff when it is at most
    ``max_retry_after`` seconds. A longer request is **not** waited out: the
    caller gives up at once (see :meth:`RetryPolicy.should_retry`) and reports
    how long the API asked to wait. A server that wants minutes (a quota, not a
    burst) would only turn a tool call into a long silent hang that still ends
    in the same 429, so telling the user straight away is the better answer.
    ``give_up_beyond_cap=False`` switches to waiting the cap instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a request and how long to wait in between.

    ``max_attempts`` counts every try, the first one included (``1`` means
    never retry). Delays are in seconds; ``jitter`` is a fraction in ``[0, 1]``.
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    give_up_beyond_cap: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (self.multiplier >= 1 and math.isfinite(self.multiplier)):
            raise ValueError(f"multiplier must be a finite number >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")

    def backoff(self, attempt: int, rand: float) -> float:
        """Exponential backoff with jitter after failed attempt ``attempt`` (1-based)."""
        exponent = max(attempt, 1) - 1
        try:
            base = self.initial_delay * self.multiplier**exponent
        except OverflowError:
            base = self.max_delay
        base = min(self.max_delay, base)
        r = min(max(rand, 0.0), 1.0)
        return base * (1.0 - self.jitter * r)

    def delay_for(self, attempt: int, retry_after: float | None, rand: float) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next.

        ``retry_after`` is what the server asked for (:func:`parse_retry_after`),
        honoured up to ``max_retry_after``; beyond it the cap is returned (which
        the client only uses when ``give_up_beyond_cap`` is false, see
        :meth:`should_retry`). Without it, :meth:`backoff` decides.
        """
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt, rand)

    def exceeds_cap(self, retry_after: float | None) -> bool:
        """Whether the server asked for a longer wait than ``max_retry_after``."""
        return retry_after is not None and retry_after > self.max_retry_after

    def should_retry(self, attempt: int, retry_after: float | None = None) -> bool:
        """Whether a retryable failure of attempt ``attempt`` (1-based) gets another try."""
        if attempt >= self.max_attempts:
            return False
        return not (self.give_up_beyond_cap and self.exceeds_cap(retry_after))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # Plain dicts are case-sensitive; httpx2.Headers is not (and is also a Mapping).
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _non_negative(value: float) -> float | None:
    if math.isfinite(value) and value >= 0:
        return value
    return None


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait, or ``None`` when it did not say (validly).

    Reads ``retry-after-ms`` (milliseconds) first, then ``Retry-After`` as
    delta-seconds or an HTTP-date; ``now`` is the current POSIX time, used for
    the date form (a date in the past means "now": ``0.0``).
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            ms = _non_negative(float(raw_ms.strip()))
        except ValueError:
            ms = None
        if ms is not None:
            return ms / 1000.0

    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw:
        return None
    try:
        return _non_negative(float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
