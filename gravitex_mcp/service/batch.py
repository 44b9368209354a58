"""``generate_videos``: several generations in one call ("make three takes").

Every job is checked first (validation, media, translation), so one bad job
sends nothing and each problem names its job as ``jobs[<index>].<argument>``.
Then every job is submitted at once, and all are waited for together within
one bound (``wait_seconds`` plus the service's grace, like ``generate_video``)
with one progress stream. A job whose submit fails does not stop the others;
the result says which jobs to send again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Final

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..domain import JournalStatus, TaskStatus
from ..errors import (
    FIND_LOST_SUBMIT,
    GravitexError,
    InvalidArgumentsError,
    Problem,
    SubmitOutcomeUnknownError,
)
from ..request.arguments import (
    CONFIRM_DESCRIPTION,
    DEFAULT_WAIT_SECONDS,
    MAX_WAIT_SECONDS,
    SERVER_ARGUMENTS,
    VideoArguments,
)
from ..request.problems import json_kind, shown_value
from ..results import BatchJobResult, GenerateVideosResult
from .progress import Progress, ProgressFn
from .videos import Submission, VideoService

if TYPE_CHECKING:  # checking and preparing requests: loaded by the first batch
    from ..request.prepare import PreparedRequest

logger = logging.getLogger(__name__)

MAX_JOBS: Final = 8
_JOB_INDEX: Final = re.compile(r"jobs\[([0-9]+)\]")


class BatchSettings(BaseModel):
    """How long generate_videos waits, and whether it saves the videos."""

    # Strict, as generate_video's arguments: "true" is not true.
    model_config = ConfigDict(extra="forbid", strict=True)

    wait_seconds: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_WAIT_SECONDS,
            strict=True,
            description=(
                "Wait at most this long for all the videos together, with progress "
                f"notifications (default {DEFAULT_WAIT_SECONDS}, which keeps the call under "
                "50 s); 0 returns right after submitting."
            ),
        ),
    ] = DEFAULT_WAIT_SECONDS
    download: Annotated[
        bool,
        Field(description="Save each video that finishes within the wait."),
    ] = False
    confirm: Annotated[bool, Field(description=CONFIRM_DESCRIPTION)] = False


class GenerateVideosInput(BatchSettings):
    """The generate_videos tool's input: the jobs, and how long to wait for them."""

    jobs: Annotated[
        list[VideoArguments],
        Field(
            min_length=1,
            max_length=MAX_JOBS,
            description=(
                f"1 to {MAX_JOBS} videos to generate, each with the arguments of one "
                "generate_video call (model, prompt, duration, ...). Every job is checked "
                "before any is sent."
            ),
        ),
    ]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """A checked batch: each job's prepared upstream request, in job order."""

    prepared: tuple[PreparedRequest, ...]
    wait_seconds: int
    download: bool


def _prefixed(index: int, problems: Sequence[Problem]) -> list[Problem]:
    return [Problem(f"jobs[{index}].{p.field}", p.message) for p in problems]


def _parse(
    raw: Mapping[str, Any],
) -> tuple[dict[int, dict[str, Any]], BatchSettings, list[Problem]]:
    """Each job's arguments (by index), the batch settings, and every problem found."""
    problems: list[Problem] = []
    settings = BatchSettings()
    try:
        settings = BatchSettings.model_validate({k: v for k, v in raw.items() if k != "jobs"})
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "arguments"
            if error["type"] == "extra_forbidden":
                message = (
                    "is not an argument of generate_videos; valid: jobs, wait_seconds, "
                    "download (the video arguments go inside each job)"
                )
            else:
                given = error.get("input")
                message = f"{shown_value(given)} ({json_kind(given)}) is not valid: {error['msg']}"
            problems.append(Problem(name, message))
    jobs = raw.get("jobs")
    parsed: dict[int, dict[str, Any]] = {}
    if not isinstance(jobs, list) or not 1 <= len(jobs) <= MAX_JOBS:
        count = f"{len(jobs)} jobs" if isinstance(jobs, list) else repr(jobs)
        problems.append(
            Problem(
                "jobs",
                f"must be a list of 1 to {MAX_JOBS} jobs, each the arguments of one "
                f"generate_video call; got {count}",
            )
        )
        jobs = []
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            problems.append(
                Problem(f"jobs[{index}]", "must be an object with at least model and prompt")
            )
            continue
        for name in SERVER_ARGUMENTS:
            if name in job:
                problems.append(
                    Problem(
                        f"jobs[{index}].{name}",
                        "is not a job argument; wait_seconds and download are set once for "
                        "the whole batch (dry_run, idempotency_key and preview are "
                        "generate_video's)",
                    )
                )
        parsed[index] = {k: v for k, v in job.items() if k not in SERVER_ARGUMENTS}
    return parsed, settings, problems


async def check_batch(service: VideoService, raw: Mapping[str, Any]) -> BatchRequest:
    """Check the raw generate_videos arguments: every job against its model, its media
    read; nothing is sent.

    Raises one :class:`InvalidArgumentsError` naming every problem, each job's with
    its 0-based index (``jobs[1].duration``).
    """
    parsed, settings, problems = _parse(raw)
    prepared: list[PreparedRequest] = []
    for index, job in parsed.items():
        try:
            prepared.append((await service.prepare(job))[1])
        except InvalidArgumentsError as exc:
            problems.extend(_prefixed(index, exc.problems))
    if problems:
        # In job order, whichever step found them.
        problems.sort(key=_job_order)
        raise InvalidArgumentsError(problems)
    return BatchRequest(
        prepared=tuple(prepared), wait_seconds=settings.wait_seconds, download=settings.download
    )


def _job_order(problem: Problem) -> int:
    match = _JOB_INDEX.match(problem.field)
    return -1 if match is None else int(match[1])


@dataclass(slots=True)
class _Outcome:
    submission: Submission | None = None
    error: GravitexError | None = None
    result: BatchJobResult | None = None


async def run_batch(
    service: VideoService, batch: BatchRequest, progress: ProgressFn | None = None
) -> GenerateVideosResult:
    """Submit every job at once, then wait for all of them together."""
    stream = Progress(progress)
    outcomes = [_Outcome() for _ in batch.prepared]
    # Every job's seconds against the budget, all or none, before anything is sent.
    reservations = await service.reserve(batch.prepared)

    async def submit(index: int) -> None:
        try:
            outcomes[index].submission = await service.submit(
                batch.prepared[index], reservation=reservations[index]
            )
        except GravitexError as exc:
            logger.info("batch job %d: submit failed: %s", index, exc)
            outcomes[index].error = exc

    async with anyio.create_task_group() as group:
        for index in range(len(batch.prepared)):
            group.start_soon(submit, index)
    submitted = sum(1 for o in outcomes if o.submission is not None)
    await stream.send(0.0, float(batch.wait_seconds), f"submitted {submitted} of {len(outcomes)}")

    async def follow(index: int, submission: Submission) -> None:
        try:
            outcome = await service.follow_submission(
                submission,
                wait_seconds=batch.wait_seconds,
                download=batch.download,
                progress=stream.prefixed(f"jobs[{index}] "),
            )
        except GravitexError as exc:
            # The task exists: keep its id; the agent checks it later.
            outcomes[index].result = BatchJobResult(
                index=index,
                task_id=submission.task_id,
                status=TaskStatus.UNKNOWN,
                model=submission.spec.id,
                notes=list(submission.notes),
                next_step=str(exc),
            )
            return
        outcomes[index].result = outcome.result(BatchJobResult, index=index)

    async with anyio.create_task_group() as group:
        for index, outcome in enumerate(outcomes):
            if outcome.submission is not None:
                group.start_soon(follow, index, outcome.submission)
    return _summarize(batch, outcomes)


def _failed_job(index: int, prepared: PreparedRequest, error: GravitexError) -> BatchJobResult:
    unknown = isinstance(error, SubmitOutcomeUnknownError)
    next_step = (
        f"The submit's answer was lost: a task may exist. {FIND_LOST_SUBMIT} before "
        "sending this job again."
        if unknown
        else "Nothing was created for this job: send it again (alone) with generate_video "
        "or generate_videos."
    )
    return BatchJobResult(
        index=index,
        task_id="",
        status=JournalStatus.SUBMIT_UNKNOWN if unknown else JournalStatus.SUBMIT_FAILED,
        model=prepared.spec.id,
        submit_error=str(error),
        notes=list(prepared.notes),
        next_step=next_step,
    )


def _summarize(batch: BatchRequest, outcomes: Sequence[_Outcome]) -> GenerateVideosResult:
    jobs: list[BatchJobResult] = []
    for index, outcome in enumerate(outcomes):
        if outcome.result is not None:
            jobs.append(outcome.result)
        else:
            assert outcome.error is not None
            jobs.append(_failed_job(index, batch.prepared[index], outcome.error))
    retry = [j.index for j in jobs if j.status == JournalStatus.SUBMIT_FAILED]
    uncertain = [j.index for j in jobs if j.status == JournalStatus.SUBMIT_UNKNOWN]
    pending = [j.index for j in jobs if j.task_id and not JournalStatus(j.status).is_terminal]
    steps = []
    if retry:
        steps.append(f"Submitting jobs {retry} failed and created nothing: send them again.")
    if uncertain:
        steps.append(
            f"Jobs {uncertain} may have created tasks (the answer was lost): check "
            "list_video_tasks before sending them again."
        )
    if pending:
        ids = ", ".join(jobs[i].task_id for i in pending)
        steps.append(
            f"Jobs {pending} are not finished yet: call check_video_task for each "
            f"({ids}) with download: true to keep waiting."
        )
    if not steps:
        steps.append("Every job has finished; see each job's status and path.")
    return GenerateVideosResult(
        jobs=jobs, retry_jobs=retry, uncertain_jobs=uncertain, next_step=" ".join(steps)
    )
