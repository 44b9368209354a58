"""GravitexClient against scripted faults (httpx2.MockTransport); no real sleeps.

Each test scripts the upstream answers in order; the client's ``sleep`` records
the delays it asked for and ``rand`` is fixed, so every backoff is exact.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import anyio
import httpx2
import pytest

from gravitex_mcp.domain import TaskStatus
from gravitex_mcp.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    DownloadError,
    InternalServerError,
    InvalidArgumentsError,
    MalformedResponseError,
    MalformedSubmitResponseError,
    NotFoundError,
    RateLimitError,
    SubmitOutcomeUnknownError,
    URLExpiredError,
)
from gravitex_mcp.upstream.client import (
    DOWNLOAD_PATH,
    SUBMIT_PATH,
    GravitexClient,
    TaskError,
    TaskSnapshot,
    Timeouts,
    read_error,
)
from gravitex_mcp.upstream.retry import RetryPolicy

KEY = "sk-test-SECRET0123456789abcdef"
BASE = "https://api.gravitex.test"
NOW = datetime(2025, 11, 18, 12, 0, 0, tzinfo=UTC).timestamp()
SIGNED = "https://cdn.example.test/2025/11/18/abc/video.mp4?Expires=1&Signature=SIGSECRET"
BODY = {"model": "sora-2", "prompt": "a cat", "seconds": "4"}

Step = httpx2.Response | Callable[[httpx2.Request], httpx2.Response] | BaseException


class Script:
    """Answers requests with ``steps`` in order; the last step repeats."""

    def __init__(self, *steps: Step) -> None:
        assert steps
        self.steps = list(steps)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, httpx2.Response):
            return step
        return step(request)

    @property
    def posts(self) -> int:
        return sum(1 for r in self.requests if r.method == "POST")


def fail(kind: type[httpx2.RequestError], message: str = "boom") -> Step:
    def raise_(request: httpx2.Request) -> httpx2.Response:
        raise kind(message, request=request)

    return raise_


def ok_task(task_id: str = "video_123", **extra: Any) -> httpx2.Response:
    return httpx2.Response(
        200, json={"task_id": task_id, "status": "submitted", "format": "mp4", **extra}
    )


def status(code: int, body: Any = None, **headers: str) -> httpx2.Response:
    if body is None:
        return httpx2.Response(code, headers=headers)
    if isinstance(body, str):
        return httpx2.Response(code, text=body, headers=headers)
    return httpx2.Response(code, json=body, headers=headers)


def html(code: int = 200) -> httpx2.Response:
    return httpx2.Response(code, html="<!DOCTYPE html><html><body>Bad gateway</body></html>")


class Harness:
    def __init__(
        self,
        script: Script,
        *,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        rand: float = 0.0,
    ) -> None:
        self.script = script
        self.sleeps: list[float] = []

        async def fake_sleep(delay: float) -> None:
            self.sleeps.append(delay)

        self.client = GravitexClient(
            api_key=KEY,
            base_url=BASE,
            transport=httpx2.MockTransport(script),
            retry=retry or RetryPolicy(),
            timeouts=timeouts or Timeouts(),
            sleep=fake_sleep,
            rand=lambda: rand,
            clock=lambda: NOW,
        )


def harness(*steps: Step, **kwargs: Any) -> Harness:
    return Harness(Script(*steps), **kwargs)


def assert_no_secrets(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), getattr(exc, "upstream_message", None) or ""):
        assert KEY not in text
        assert "SIGSECRET" not in text
        assert "Signature=" not in text


# --- construction, repr, redaction ------------------------------------------------------


def test_repr_has_no_key() -> None:
    client = harness(ok_task()).client
    assert KEY not in repr(client)
    assert BASE in repr(client)


@pytest.mark.parametrize("key", ["", "   ", "sk-with space", "sk-\nnewline", "sk-ü"])
def test_bad_keys_are_refused_without_echo(key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        GravitexClient(api_key=key, base_url=BASE)
    assert "GRAVITEX_API_KEY" in str(info.value)
    if key.strip():
        assert key not in str(info.value)


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        GravitexClient(api_key=KEY, base_url="ftp://api.gravitex.test")


def test_invalid_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="read"):
        Timeouts(read=0)


def test_snapshot_repr_hides_the_signed_url() -> None:
    snap = TaskSnapshot(
        task_id="t", status=TaskStatus.SUCCEEDED, raw_status="succeeded",
        url=SIGNED, error=None, raw={"url": SIGNED},
    )  # fmt: skip
    assert "SIGSECRET" not in repr(snap)


# --- submit -------------------------------------------------------------------------------


async def test_submit_success_sends_body_once_with_auth() -> None:
    h = harness(ok_task("video_abc"))
    snap = await h.client.submit(BODY)
    assert snap.task_id == "video_abc"
    assert snap.status is TaskStatus.SUBMITTED
    assert snap.raw_status == "submitted"
    assert h.script.posts == 1
    request = h.script.requests[0]
    assert request.url == httpx2.URL(BASE + SUBMIT_PATH)
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["user-agent"].startswith("gravitex-mcp/")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == BODY
    assert h.sleeps == []


async def test_submit_without_status_is_submitted_and_int_ids_become_strings() -> None:
    h = harness(httpx2.Response(200, json={"task_id": 42}))
    snap = await h.client.submit(BODY)
    assert snap.task_id == "42"
    assert snap.status is TaskStatus.SUBMITTED
    assert snap.raw_status is None


@pytest.mark.parametrize("code", [500, 502, 503, 504, 408])
async def test_submit_5xx_is_one_post_and_outcome_unknown(code: int) -> None:
    h = harness(
        status(code, {"error": {"message": "upstream exploded"}}, **{"x-request-id": "req-5"}),
        ok_task(),
    )
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.submit(BODY)
    err = info.value
    assert h.script.posts == 1
    assert h.sleeps == []
    assert err.status_code == code
    assert err.request_id == "req-5"
    assert "list_video_tasks" in str(err)
    assert "A task (and a charge) may exist" in str(err)
    assert isinstance(err.__cause__, InternalServerError)
    assert "upstream exploded" in str(err)
    assert_no_secrets(err)


@pytest.mark.parametrize(
    "kind",
    [
        httpx2.ReadTimeout,
        httpx2.WriteTimeout,
        httpx2.RemoteProtocolError,
        httpx2.ReadError,
        httpx2.WriteError,
    ],
)
async def test_submit_failure_after_sending_is_one_post(kind: type[httpx2.RequestError]) -> None:
    h = harness(fail(kind), ok_task())
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await h.client.submit(BODY)
    assert h.script.posts == 1
    assert h.sleeps == []
    assert isinstance(info.value.__cause__, kind)
    assert "list_video_tasks" in str(info.value)
    assert info.value.status_code is None


async def test_submit_read_timeout_message() -> None:
    h = harness(fail(httpx2.ReadTimeout))
    with pytest.raises(SubmitOutcomeUnknownError, match="60 s read time-out"):
        await h.client.submit(BODY)
    assert h.script.posts == 1


async def test_submit_429_then_200_is_two_posts_one_task() -> None:
    h = harness(status(429, {"error": {"message": "slow down"}}), ok_task("video_once"))
    snap = await h.client.submit(BODY)
    assert snap.task_id == "video_once"
    assert h.script.posts == 2
    assert h.sleeps == [0.5]
    assert json.loads(h.script.requests[0].content) == json.loads(h.script.requests[1].content)


async def test_submit_429_honours_retry_after() -> None:
    h = harness(status(429, None, **{"retry-after": "4"}), ok_task())
    await h.client.submit(BODY)
    assert h.sleeps == [4.0]


@pytest.mark.parametrize("kind", [httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout])
async def test_submit_connect_failure_is_retried(kind: type[httpx2.RequestError]) -> None:
    h = harness(fail(kind), fail(kind), ok_task("video_ok"))
    snap = await h.client.submit(BODY)
    assert snap.task_id == "video_ok"
    assert len(h.script.requests) == 3
    assert h.sleeps == [0.5, 1.0]


async def test_submit_connect_failure_exhausted() -> None:
    h = harness(fail(httpx2.ConnectError, "connection refused"))
    with pytest.raises(APIConnectionError) as info:
        await h.client.submit(BODY)
    assert not isinstance(info.value, SubmitOutcomeUnknownError)
    assert len(h.script.requests) == 5
    assert "Gave up after 5 attempts" in str(info.value)
    assert "no task was created" in str(info.value)
    assert isinstance(info.value.__cause__, httpx2.ConnectError)


async def test_submit_429_exhausted() -> None:
    h = harness(status(429, {"message": "quota"}, **{"request-id": "r-429"}))
    with pytest.raises(RateLimitError) as info:
        await h.client.submit(BODY)
    assert h.script.posts == 5
    assert h.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert "5 attempts" in str(info.value)
    assert info.value.request_id == "r-429"
    assert info.value.upstream_message == "quota"


async def test_submit_200_without_task_id_is_malformed_and_unknown() -> None:
    h = harness(httpx2.Response(200, json={"status": "submitted"}), ok_task())
    with pytest.raises(MalformedSubmitResponseError) as info:
        await h.client.submit(BODY)
    assert isinstance(info.value, SubmitOutcomeUnknownError)
    assert isinstance(info.value, MalformedResponseError)
    assert not info.value.retryable
    assert h.script.posts == 1
    assert "task_id" in str(info.value)
    assert "list_video_tasks" in str(info.value)


@pytest.mark.parametrize(
    "response",
    [html(200), httpx2.Response(200, content=b"{not json"), httpx2.Response(200, json=[1, 2])],
)
async def test_submit_malformed_body_is_one_post(response: httpx2.Response) -> None:
    h = harness(response, ok_task())
    with pytest.raises(MalformedSubmitResponseError):
        await h.client.submit(BODY)
    assert h.script.posts == 1


async def test_submit_400_is_not_retried_and_quotes_upstream() -> None:
    h = harness(status(400, {"error": {"message": "seconds must be 4, 8 or 12"}}), ok_task())
    with pytest.raises(BadRequestError) as info:
        await h.client.submit(BODY)
    assert h.script.posts == 1
    assert info.value.status_code == 400
    assert info.value.upstream_message == "seconds must be 4, 8 or 12"
    assert "seconds must be 4, 8 or 12" in str(info.value)


async def test_submit_422_is_bad_request() -> None:
    h = harness(status(422, {"detail": [{"loc": ["body"], "msg": "field required"}]}))
    with pytest.raises(BadRequestError, match="field required"):
        await h.client.submit(BODY)


@pytest.mark.parametrize("code", [401, 403])
async def test_auth_error_never_echoes_the_key(code: int) -> None:
    echo = {"error": {"message": f"Invalid token: {KEY} (Bearer {KEY})"}}
    h = harness(status(code, echo))
    with pytest.raises(AuthenticationError) as info:
        await h.client.submit(BODY)
    err = info.value
    assert not isinstance(err, URLExpiredError)
    assert err.status_code == code
    assert "GRAVITEX_API_KEY" in str(err)
    assert "refused the API key" in str(err)
    assert_no_secrets(err)
    assert "sk-test" not in str(err)
    assert h.script.posts == 1


async def test_submit_404_points_at_base_url() -> None:
    h = harness(status(404, "Not Found"))
    with pytest.raises(NotFoundError, match="GRAVITEX_BASE_URL"):
        await h.client.submit(BODY)


async def test_submit_redirect_is_not_followed() -> None:
    h = harness(httpx2.Response(301, headers={"location": "https://elsewhere.test/"}))
    with pytest.raises(APIStatusError, match="GRAVITEX_BASE_URL") as info:
        await h.client.submit(BODY)
    assert type(info.value) is APIStatusError
    assert len(h.script.requests) == 1


# --- query --------------------------------------------------------------------------------


def task(status_: str, **extra: Any) -> httpx2.Response:
    return httpx2.Response(200, json={"task_id": "t1", "status": status_, **extra})


async def test_query_builds_the_documented_request() -> None:
    h = harness(task("queued"))
    snap = await h.client.query("t1")
    request = h.script.requests[0]
    assert request.method == "GET"
    assert request.url == httpx2.URL(BASE + "/v1/video/generations/t1")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert snap.status is TaskStatus.QUEUED
    assert snap.url is None
    assert snap.error is None


async def test_the_first_request_builds_the_http_client_off_the_event_loop() -> None:
    """Its SSL context (the CA bundle) costs ~30 ms of CPU: on the event loop thread,
    every other call of a busy server waited behind it. Built once, for every request."""
    h = harness(task("queued"), task("queued"))
    built_on: list[int] = []
    build = h.client._new_http_client

    def recorded() -> httpx2.AsyncClient:
        built_on.append(threading.get_ident())
        return build()

    h.client._new_http_client = recorded  # type: ignore[method-assign]
    await h.client.query("t1")
    await h.client.query("t1")
    assert len(built_on) == 1
    assert built_on[0] != threading.get_ident()  # not this, the event loop's, thread


async def test_query_quotes_the_task_id() -> None:
    h = harness(task("queued"))
    await h.client.query("a/b?c")
    assert h.script.requests[0].url.raw_path == b"/v1/video/generations/a%2Fb%3Fc"


@pytest.mark.parametrize("bad", ["", "  ", "..", "x\ny", "x" * 300])
async def test_query_refuses_bad_task_ids_without_a_request(bad: str) -> None:
    h = harness(task("queued"))
    with pytest.raises(InvalidArgumentsError):
        await h.client.query(bad)
    assert h.script.requests == []


async def test_query_succeeded_with_url() -> None:
    h = harness(
        httpx2.Response(
            200,
            json={"task_id": "t1", "status": "succeeded", "url": SIGNED},
            headers={"x-request-id": "rq-1"},
        )
    )
    snap = await h.client.query("t1")
    assert snap.status is TaskStatus.SUCCEEDED
    assert snap.url == SIGNED
    assert snap.request_id == "rq-1"
    assert snap.raw["url"] == SIGNED


async def test_query_in_progress_case_insensitive() -> None:
    snap = await harness(task(" IN_PROGRESS ")).client.query("t1")
    assert snap.status is TaskStatus.IN_PROGRESS


async def test_query_unknown_status_is_kept_raw() -> None:
    snap = await harness(task("processing")).client.query("t1")
    assert snap.status is TaskStatus.UNKNOWN
    assert snap.raw_status == "processing"


async def test_query_failed_with_error_object() -> None:
    snap = await harness(
        task("failed", error={"code": 400, "message": "Prompt contains inappropriate content"})
    ).client.query("t1")
    assert snap.status is TaskStatus.FAILED
    assert snap.error == TaskError(code=400, message="Prompt contains inappropriate content")


async def test_query_failed_with_metadata_output_message() -> None:
    snap = await harness(
        task("failed", metadata={"output": {"message": "content policy", "code": "E42"}})
    ).client.query("t1")
    assert snap.error == TaskError(code="E42", message="content policy")


async def test_query_failed_with_plain_string_error() -> None:
    snap = await harness(task("failed", error="out of credits")).client.query("t1")
    assert snap.error == TaskError(code=None, message="out of credits")


async def test_query_failed_with_code_only_uses_metadata_message() -> None:
    snap = await harness(
        task("failed", error={"code": "E1"}, metadata={"output": {"message": "why"}})
    ).client.query("t1")
    assert snap.error == TaskError(code="E1", message="why")


async def test_query_failed_without_reason_still_has_an_error() -> None:
    snap = await harness(task("failed", error=None)).client.query("t1")
    assert snap.error is not None
    assert snap.error.code is None
    assert "no reason" in snap.error.message


async def test_query_uses_the_callers_task_id() -> None:
    h = harness(httpx2.Response(200, json={"status": "queued"}))
    assert (await h.client.query("mine")).task_id == "mine"


@pytest.mark.parametrize(
    ("first", "error_type"),
    [
        (status(503), InternalServerError),
        (status(502, "Bad Gateway"), InternalServerError),
        (status(500, {"message": "oops"}), InternalServerError),
        (status(408), InternalServerError),
        (status(429, {"error": {"message": "rate"}}), RateLimitError),
        (fail(httpx2.ConnectError), APIConnectionError),
        (fail(httpx2.ConnectTimeout), APITimeoutError),
        (fail(httpx2.ReadTimeout), APITimeoutError),
        (fail(httpx2.RemoteProtocolError), APIConnectionError),
        (fail(httpx2.ReadError), APIConnectionError),
        (html(200), MalformedResponseError),
        (html(502), InternalServerError),
        (httpx2.Response(200, content=b'{"task_id": "t1", "sta'), MalformedResponseError),
        (httpx2.Response(200, content=b""), MalformedResponseError),
        (httpx2.Response(200, json=["not", "an", "object"]), MalformedResponseError),
        (httpx2.Response(200, json={"error": {"message": "hm"}}), MalformedResponseError),
    ],
)
async def test_query_retries_transient_failures(first: Step, error_type: type[APIError]) -> None:
    h = harness(first, task("in_progress"))
    snap = await h.client.query("t1")
    assert snap.status is TaskStatus.IN_PROGRESS
    assert len(h.script.requests) == 2
    assert h.sleeps == [0.5]
    # ...and the same failure forever is that error, after max_attempts.
    h2 = harness(first, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(error_type) as info:
        await h2.client.query("t1")
    assert len(h2.script.requests) == 3
    assert h2.sleeps == [0.5, 1.0]
    assert "Gave up after 3 attempts" in str(info.value)
    assert_no_secrets(info.value)


async def test_query_max_attempts_exhausted_keeps_status_and_request_id() -> None:
    h = harness(status(503, {"error": {"message": "maintenance"}}, **{"request-id": "rid-9"}))
    with pytest.raises(InternalServerError) as info:
        await h.client.query("t1")
    err = info.value
    assert len(h.script.requests) == 5
    assert h.sleeps == [0.5, 1.0, 2.0, 4.0]
    assert err.status_code == 503
    assert err.request_id == "rid-9"
    assert err.upstream_message == "maintenance"
    assert "5 attempts" in str(err)
    assert "rid-9" in str(err)


async def test_query_backoff_jitter_uses_rand() -> None:
    h = harness(status(503), status(503), task("queued"), rand=0.5)
    await h.client.query("t1")
    assert h.sleeps == [pytest.approx(0.5 * 0.875), pytest.approx(1.0 * 0.875)]


async def test_query_backoff_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(max_attempts=7, initial_delay=1.0, max_delay=3.0)
    h = harness(status(500), retry=policy)
    with pytest.raises(InternalServerError):
        await h.client.query("t1")
    assert h.sleeps == [1.0, 2.0, 3.0, 3.0, 3.0, 3.0]


async def test_retry_after_seconds_is_honoured() -> None:
    h = harness(status(503, None, **{"Retry-After": "7"}), task("queued"))
    await h.client.query("t1")
    assert h.sleeps == [7.0]


async def test_retry_after_ms_is_honoured() -> None:
    h = harness(status(429, None, **{"retry-after-ms": "1500"}), task("queued"))
    await h.client.query("t1")
    assert h.sleeps == [1.5]


async def test_retry_after_http_date_is_honoured() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 20, tz=UTC), usegmt=True)
    h = harness(status(429, None, **{"Retry-After": when}), task("queued"))
    await h.client.query("t1")
    assert h.sleeps == [pytest.approx(20.0)]


async def test_retry_after_over_the_cap_gives_up_at_once() -> None:
    h = harness(status(429, {"message": "daily quota"}, **{"Retry-After": "3600"}), task("queued"))
    with pytest.raises(RateLimitError) as info:
        await h.client.query("t1")
    assert len(h.script.requests) == 1
    assert h.sleeps == []
    assert "3600 s" in str(info.value)
    assert "60 s" in str(info.value)


async def test_retry_after_over_the_cap_can_wait_the_cap() -> None:
    policy = RetryPolicy(max_retry_after=30.0, give_up_beyond_cap=False)
    h = harness(status(429, None, **{"Retry-After": "3600"}), task("queued"), retry=policy)
    await h.client.query("t1")
    assert h.sleeps == [30.0]


async def test_invalid_retry_after_falls_back_to_backoff() -> None:
    h = harness(status(503, None, **{"Retry-After": "whenever"}), task("queued"))
    await h.client.query("t1")
    assert h.sleeps == [0.5]


@pytest.mark.parametrize(
    ("response", "error_type"),
    [
        (status(400, {"message": "bad id"}), BadRequestError),
        (status(401), AuthenticationError),
        (status(404, {"detail": "task not found"}), NotFoundError),
        (status(409, "conflict"), APIStatusError),
    ],
)
async def test_query_client_errors_are_not_retried(
    response: httpx2.Response, error_type: type[APIStatusError]
) -> None:
    h = harness(response, task("queued"))
    with pytest.raises(error_type) as info:
        await h.client.query("t1")
    assert len(h.script.requests) == 1
    assert h.sleeps == []
    assert info.value.status_code == response.status_code
    assert "attempt" not in str(info.value)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (status(400, {"error": {"message": "nested", "code": "x"}}), "nested"),
        (status(400, {"error": "flat string"}), "flat string"),
        (status(400, {"message": "top-level"}), "top-level"),
        (status(400, {"detail": "fastapi"}), "fastapi"),
        (status(400, {"detail": [{"msg": "a"}, {"msg": "b"}]}), "a; b"),
        (status(400, "plain   text\nreason"), "plain text reason"),
        (status(400, "x" * 1000), "x" * 299 + "…"),
        (html(400), None),
        (status(400, {"unrelated": 1}), None),
        (status(400), None),
    ],
)
async def test_upstream_message_is_parsed(response: httpx2.Response, expected: str | None) -> None:
    with pytest.raises(BadRequestError) as info:
        await harness(response).client.query("t1")
    assert info.value.upstream_message == expected


async def test_upstream_message_urls_are_redacted() -> None:
    h = harness(status(400, {"message": f"cannot fetch {SIGNED}"}))
    with pytest.raises(BadRequestError) as info:
        await h.client.query("t1")
    assert info.value.upstream_message == (
        "cannot fetch https://cdn.example.test/2025/11/18/abc/video.mp4"
    )
    assert_no_secrets(info.value)


@pytest.mark.parametrize("header", ["x-request-id", "request-id", "X-Request-ID"])
async def test_request_id_is_carried(header: str) -> None:
    h = harness(status(404, None, **{header: "abc-123"}))
    with pytest.raises(NotFoundError) as info:
        await h.client.query("t1")
    assert info.value.request_id == "abc-123"
    assert "abc-123" in str(info.value)


async def test_errors_chain_their_cause() -> None:
    h = harness(fail(httpx2.ReadTimeout), retry=RetryPolicy(max_attempts=1))
    with pytest.raises(APITimeoutError) as info:
        await h.client.query("t1")
    assert isinstance(info.value.__cause__, httpx2.ReadTimeout)
    assert "Gave up after 1 attempt." in str(info.value)


async def test_nothing_secret_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    h = harness(
        status(503, {"message": f"bad key {KEY}"}),
        httpx2.Response(200, json={"task_id": "t1", "status": "succeeded", "url": SIGNED}),
        status(500),
        httpx2.Response(200, content=b"mp4"),
    )
    snap = await h.client.query("t1")
    assert snap.url is not None
    async with h.client.stream_url(snap.url) as response:
        assert await response.aread() == b"mp4"
    assert "HTTP Request: GET" in caplog.text  # httpx2's own line, redacted
    assert KEY not in caplog.text
    assert "SIGSECRET" not in caplog.text
    assert "cdn.example.test/2025/11/18/abc/video.mp4" in caplog.text


async def test_client_context_manager_closes() -> None:
    h = harness(task("queued"))
    async with h.client as client:
        await client.query("t1")
    with pytest.raises(RuntimeError):
        await h.client.query("t1")


# --- streamed downloads ---------------------------------------------------------------------


class ChunkStream(httpx2.AsyncByteStream):
    """A body delivered in pieces, then (optionally) a stall forever or a broken connection."""

    def __init__(self, *pieces: bytes, stall: bool = False, break_with: Exception | None = None):
        self.pieces = pieces
        self.stall = stall
        self.break_with = break_with
        self.closed = False
        self.never = anyio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.stall:
            await self.never.wait()
        if self.break_with is not None:
            raise self.break_with

    async def aclose(self) -> None:
        self.closed = True


async def test_sora_download_streams_with_auth() -> None:
    stream = ChunkStream(b'{"base64": "', b"AAAA", b'"}')
    h = harness(httpx2.Response(200, stream=stream, headers={"content-type": "application/json"}))
    async with h.client.stream_sora_download("video_1") as response:
        assert response.status_code == 200
        chunks = [c async for c in response.aiter_bytes()]
    assert b"".join(chunks) == b'{"base64": "AAAA"}'
    assert chunks == [b'{"base64": "', b"AAAA", b'"}']  # incremental, not one read
    assert stream.closed
    request = h.script.requests[0]
    assert request.url.path == DOWNLOAD_PATH
    assert request.url.params["id"] == "video_1"
    assert request.headers["authorization"] == f"Bearer {KEY}"


async def test_sora_download_retries_before_yielding() -> None:
    h = harness(
        status(502), fail(httpx2.ConnectError), html(200), httpx2.Response(200, content=b"{}")
    )
    async with h.client.stream_sora_download("video_1") as response:
        assert await response.aread() == b"{}"
    assert len(h.script.requests) == 4
    assert h.sleeps == [0.5, 1.0, 2.0]


async def test_sora_download_404_is_not_found() -> None:
    h = harness(status(404, {"error": {"message": "video not ready"}}))
    with pytest.raises(NotFoundError, match="video not ready"):
        async with h.client.stream_sora_download("video_1"):
            pass
    assert len(h.script.requests) == 1


async def test_sora_download_401_is_authentication() -> None:
    h = harness(status(401))
    with pytest.raises(AuthenticationError) as info:
        async with h.client.stream_sora_download("video_1"):
            pass
    assert not isinstance(info.value, URLExpiredError)


async def test_stream_url_sends_no_authorization() -> None:
    h = harness(httpx2.Response(200, content=b"\x00\x00\x00\x18ftypmp42"))
    async with h.client.stream_url(SIGNED) as response:
        body = b"".join([c async for c in response.aiter_bytes(4)])
    assert body == b"\x00\x00\x00\x18ftypmp42"
    request = h.script.requests[0]
    assert "authorization" not in request.headers
    assert KEY not in str(request.headers)
    assert str(request.url) == SIGNED  # the signature travels untouched


async def test_stream_url_follows_redirects_without_auth() -> None:
    h = harness(
        httpx2.Response(302, headers={"location": "https://other-cdn.test/v.mp4?sig=2"}),
        httpx2.Response(200, content=b"video"),
    )
    async with h.client.stream_url(SIGNED) as response:
        assert await response.aread() == b"video"
    assert [str(r.url) for r in h.script.requests] == [SIGNED, "https://other-cdn.test/v.mp4?sig=2"]
    assert all("authorization" not in r.headers for r in h.script.requests)


@pytest.mark.parametrize("code", [403, 401, 410])
async def test_stream_url_refused_is_url_expired(code: int) -> None:
    xml = "<?xml version='1.0'?><Error><Code>AccessDenied</Code>Request has expired</Error>"
    h = harness(status(code, xml, **{"content-type": "application/xml"}))
    with pytest.raises(URLExpiredError) as info:
        async with h.client.stream_url(SIGNED):
            pass
    err = info.value
    assert isinstance(err, APIStatusError)
    assert not isinstance(err, AuthenticationError)
    assert err.status_code == code
    assert len(h.script.requests) == 1
    assert "expired" in str(err)
    assert "https://cdn.example.test/2025/11/18/abc/video.mp4" in str(err)
    assert "GRAVITEX_API_KEY" not in str(err)
    assert_no_secrets(err)


async def test_stream_url_retries_per_policy() -> None:
    h = harness(status(503), fail(httpx2.ReadTimeout), httpx2.Response(200, content=b"ok"))
    async with h.client.stream_url(SIGNED) as response:
        assert await response.aread() == b"ok"
    assert h.sleeps == [0.5, 1.0]


async def test_stream_url_exhausted_message_is_redacted() -> None:
    h = harness(status(500, f"error at {SIGNED}"), retry=RetryPolicy(max_attempts=2))
    with pytest.raises(InternalServerError) as info:
        async with h.client.stream_url(SIGNED):
            pass
    assert "Gave up after 2 attempts" in str(info.value)
    assert "video host" in str(info.value)
    assert_no_secrets(info.value)


async def test_stream_url_404_is_not_found() -> None:
    h = harness(status(404))
    with pytest.raises(NotFoundError, match="fresh URL"):
        async with h.client.stream_url(SIGNED):
            pass


@pytest.mark.parametrize(
    "url", ["ftp://cdn.test/v.mp4", "file:///etc/passwd", "data:video/mp4;base64,AAAA", "/v.mp4"]
)
async def test_stream_url_only_fetches_http(url: str) -> None:
    h = harness(httpx2.Response(200))
    with pytest.raises(DownloadError) as info:
        async with h.client.stream_url(url):
            pass
    assert h.script.requests == []
    assert "AAAA" not in str(info.value)


async def test_errors_inside_the_block_are_not_retried() -> None:
    h = harness(httpx2.Response(200, content=b"video"))
    with pytest.raises(ZeroDivisionError):
        async with h.client.stream_url(SIGNED):
            raise ZeroDivisionError
    assert len(h.script.requests) == 1


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx2.ReadTimeout("slow"), APITimeoutError),  # a stall past Timeouts.read
        (httpx2.ReadError("connection reset"), APIConnectionError),
        (httpx2.RemoteProtocolError("peer closed"), APIConnectionError),
        (httpx2.DecodingError("bad gzip"), MalformedResponseError),
    ],
)
def test_read_error_maps_body_failures(failure: httpx2.RequestError, expected: type) -> None:
    response = httpx2.Response(200, request=httpx2.Request("GET", SIGNED))
    error = read_error(response, failure)
    assert type(error) is expected
    assert_no_secrets(error)
