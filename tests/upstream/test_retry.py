"""RetryPolicy and parse_retry_after: pure functions, no clock, no randomness."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx2
import pytest

from gravitex_mcp.upstream.retry import RetryPolicy, parse_retry_after

NOW = datetime(2025, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, tz=UTC), usegmt=True)


# --- backoff -------------------------------------------------------------------------


def test_backoff_is_exponential_without_jitter_at_rand_zero() -> None:
    policy = RetryPolicy()
    assert [policy.delay_for(n, None, 0.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_jitter_only_shortens_by_at_most_the_fraction() -> None:
    policy = RetryPolicy(jitter=0.25)
    assert policy.delay_for(1, None, 0.999999) == pytest.approx(0.5 * 0.75, rel=1e-5)
    assert policy.delay_for(5, None, 0.5) == pytest.approx(8.0 * 0.875)
    for n in range(1, 10):
        for r in (0.0, 0.3, 0.7, 0.99):
            delay = policy.delay_for(n, None, r)
            assert 0.75 * min(8.0, 0.5 * 2 ** (n - 1)) <= delay <= min(8.0, 0.5 * 2 ** (n - 1))


def test_rand_outside_unit_interval_is_clamped() -> None:
    policy = RetryPolicy()
    assert policy.delay_for(1, None, -3.0) == 0.5
    assert policy.delay_for(1, None, 7.0) == pytest.approx(0.375)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert RetryPolicy().delay_for(10_000, None, 0.0) == 8.0


# --- Retry-After -----------------------------------------------------------------------


def test_retry_after_replaces_backoff_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert policy.delay_for(1, 12.0, 0.9) == 12.0
    assert policy.delay_for(4, 0.0, 0.9) == 0.0
    assert policy.delay_for(1, 60.0, 0.0) == 60.0
    assert policy.delay_for(1, 3600.0, 0.0) == 60.0  # the value, were the cap waited


def test_over_the_cap_gives_up_by_default() -> None:
    policy = RetryPolicy(max_retry_after=60.0)
    assert policy.exceeds_cap(61.0)
    assert not policy.exceeds_cap(60.0)
    assert not policy.exceeds_cap(None)
    assert policy.should_retry(1, 60.0)
    assert not policy.should_retry(1, 61.0)


def test_over_the_cap_can_wait_the_cap_instead() -> None:
    policy = RetryPolicy(max_retry_after=60.0, give_up_beyond_cap=False)
    assert policy.should_retry(1, 3600.0)
    assert policy.delay_for(1, 3600.0, 0.0) == 60.0


def test_should_retry_counts_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(1)
    assert policy.should_retry(2)
    assert not policy.should_retry(3)
    assert not RetryPolicy(max_attempts=1).should_retry(1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"initial_delay": -1.0},
        {"max_delay": float("inf")},
        {"multiplier": 0.5},
        {"jitter": 1.5},
        {"max_retry_after": float("nan")},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# --- parse_retry_after ----------------------------------------------------------------------


def test_parse_seconds() -> None:
    assert parse_retry_after({"Retry-After": "7"}, NOW) == 7.0
    assert parse_retry_after({"retry-after": " 1.5 "}, NOW) == 1.5
    assert parse_retry_after({"RETRY-AFTER": "0"}, NOW) == 0.0


def test_parse_http_date() -> None:
    assert parse_retry_after({"Retry-After": http_date(30)}, NOW) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": http_date(-30)}, NOW) == 0.0


def test_parse_milliseconds_win() -> None:
    headers = {"retry-after-ms": "250", "retry-after": "9"}
    assert parse_retry_after(headers, NOW) == 0.25
    assert parse_retry_after({"retry-after-ms": "junk", "retry-after": "9"}, NOW) == 9.0


def test_parse_invalid_or_missing() -> None:
    assert parse_retry_after({}, NOW) is None
    assert parse_retry_after({"Retry-After": ""}, NOW) is None
    assert parse_retry_after({"Retry-After": "-5"}, NOW) is None
    assert parse_retry_after({"Retry-After": "soon"}, NOW) is None
    assert parse_retry_after({"Retry-After": "inf"}, NOW) is None
    assert parse_retry_after({"retry-after-ms": "-1"}, NOW) is None


def test_parse_accepts_httpx_headers() -> None:
    headers = httpx2.Headers({"Retry-After": "3"})
    assert parse_retry_after(headers, NOW) == 3.0
