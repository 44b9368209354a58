"""The error tree.

Every failure the server can meet is one of these classes, so the tool layer
can turn it into an ``isError`` result that says what to change. Errors raised
because of another carry it as ``__cause__`` (``raise ... from exc``). No error
message ever contains the API key or the query string of a signed URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: The next steps that send an agent to list_video_tasks, told the same way everywhere.
FIND_TASKS: Final = "list_video_tasks shows the tasks this server submitted"
FIND_LOST_SUBMIT: Final = "Look for it with list_video_tasks (status submit_unknown)"


class GravitexError(Exception):
    """Base class of every error this package raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- Bad input: nothing was sent upstream ------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the caller's arguments.

    ``field`` is the unified argument name (``"duration"``, ``"image"``,
    ``"reference_images[1]"``); ``message`` says what is wrong and what is valid.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidArgumentsError(GravitexError):
    """The call's arguments were refused before anything was sent upstream.

    Several problems in one call are reported together.
    """

    def __init__(self, problems: Sequence[Problem], *, model: str | None = None) -> None:
        if not problems:
            raise ValueError("InvalidArgumentsError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.model = model
        head = f"Invalid arguments for model {model!r}" if model else "Invalid arguments"
        if len(self.problems) == 1:
            message = f"{head}: {self.problems[0]}"
        else:
            lines = "\n".join(f"- {p}" for p in self.problems)
            message = f"{head} ({len(self.problems)} problems):\n{lines}"
        super().__init__(message + "\nNothing was sent to the Gravitex API.")

    @classmethod
    def about(cls, field: str, message: str) -> InvalidArgumentsError:
        """The error for one problem with one field."""
        return cls([Problem(field, message)])


# --- Talking to the upstream API ----------------------------------------------


class APIError(GravitexError):
    """A failure talking to the Gravitex API.

    ``status_code`` is the HTTP status when a response arrived, ``request_id``
    the upstream request id header when it had one.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


class APIConnectionError(APIError):
    """The API could not be reached, or the connection broke."""

    retryable = True


class APITimeoutError(APIConnectionError):
    """A connect, read or inactivity time-out."""


class MalformedResponseError(APIError):
    """A response that is not the JSON the API documents (an HTML page, say)."""

    retryable = True


class APIStatusError(APIError):
    """The API answered with an error status (4xx or 5xx)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        upstream_message: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id)
        self.upstream_message = upstream_message


class BadRequestError(APIStatusError):
    """400/422: the API refused the request body."""


class AuthenticationError(APIStatusError):
    """401/403: the API key is missing, wrong or not allowed (never echoed)."""


class NotFoundError(APIStatusError):
    """404: no such task or video."""


class RateLimitError(APIStatusError):
    """429: too many requests."""

    retryable = True


class InternalServerError(APIStatusError):
    """5xx (and 408): the gateway or a model provider failed."""

    retryable = True


class SubmitOutcomeUnknownError(APIError):
    """A submit whose body reached the API but whose answer was lost.

    A task (and a charge) may exist. It is never retried automatically; the
    caller is told to look at ``list_video_tasks`` before trying again.
    """


class MalformedSubmitResponseError(SubmitOutcomeUnknownError, MalformedResponseError):
    """A submit answered 2xx with a body that is not the documented JSON (no ``task_id``).

    The API accepted the request, so a task may exist: this is a
    :class:`SubmitOutcomeUnknownError` (never retried) that is also a
    :class:`MalformedResponseError` for code that sorts errors by kind.
    """

    retryable = False


class URLExpiredError(APIStatusError):
    """A signed video URL was refused (401/403/410): it has most likely expired.

    No API key travels to signed URLs, so this is not an :class:`AuthenticationError`;
    the fix is to query the task again for a fresh URL.
    """


# --- Tasks and videos ---------------------------------------------------------


class TaskNotFinishedError(GravitexError):
    """The task has not succeeded yet, so there is nothing to download."""


class UnknownTaskError(GravitexError):
    """The API knows no task with this id (HTTP 404); waiting will not change that."""


class DownloadInProgressError(GravitexError):
    """The video is still being saved in the background; a later call picks it up."""


class TaskFailedError(GravitexError):
    """The task ended in ``failed``; ``code`` and ``upstream_message`` say why."""

    def __init__(self, message: str, *, code: str | int | None, upstream_message: str) -> None:
        super().__init__(message)
        self.code = code
        self.upstream_message = upstream_message


class DownloadError(GravitexError):
    """A video could not be fetched or verified; nothing was kept under a final name."""


class VideoIntegrityError(DownloadError):
    """The bytes are not the promised video (bad base64, wrong length, no ftyp box)."""


class TruncatedDownloadError(VideoIntegrityError):
    """The video stream ended before the whole video arrived (the body was cut short).

    Unlike other integrity failures this one is worth retrying: the next attempt
    may get the whole body. Nothing of the cut-short attempt is kept.
    """


class StorageError(GravitexError):
    """The output directory could not be written (disk full, read-only, ...)."""


class JournalError(GravitexError):
    """The task journal could not be opened, read or written."""


#: What a caller is told while the shared task database cannot be reached (the one text).
STORE_UNAVAILABLE_MESSAGE = (
    "The task database is unreachable; nothing was lost; call again in a few seconds."
)


class StoreUnavailableError(JournalError):
    """The shared task database (PostgreSQL) is down, restarting or failing over: a
    retryable :class:`JournalError`; what was recorded before is kept."""

    retryable = True

    message_for_caller = STORE_UNAVAILABLE_MESSAGE

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(self.message_for_caller)
        self.detail = detail
        """What the driver said (for the server's log, not the caller)."""


#: What a caller is told while the shared task database is up but every connection
#: this server may open to it is in use for longer than the call can wait.
STORE_BUSY_MESSAGE = (
    "The task database is busy (every connection of this server is in use); nothing was "
    "lost; call again in a moment."
)


class StoreBusyError(StoreUnavailableError):
    """The shared task database answers, but no pooled connection came free in time: a
    load, not an outage (retryable, as :class:`StoreUnavailableError`)."""

    message_for_caller = STORE_BUSY_MESSAGE


class SimulatorStoreError(GravitexError):
    """The simulator's task store (``simulator.sqlite3``) could not be opened or used;
    the message names the file and what to do."""


class ConfigurationError(GravitexError):
    """Settings that cannot work (missing key, unwritable directory, bad flag)."""


#: What a call that needs the API says when the server runs without a key: what to
#: set and where, for each way the server is started (the one text of this fact).
MISSING_API_KEY_MESSAGE = (
    "GRAVITEX_API_KEY is not set, so this call cannot reach the Gravitex API "
    "(nothing was sent). Set GRAVITEX_API_KEY to your key (sk-...) in the env block "
    "of this server in your MCP client's config (clients do not read your shell "
    "profile); in the Claude Desktop extension, set Gravitex API key under "
    "Settings > Extensions > Gravitex video generation. To try it without a key, "
    "start the server with --simulate (or GRAVITEX_SIMULATE=1; Simulate in the "
    "extension). list_models, dry_run and list_video_tasks work without a key."
)


class MissingAPIKeyError(APIError, ConfigurationError):
    """A call needs the API but the server started without a key (and not simulating).

    An :class:`APIError` (not retryable, no status) so each caller of the API treats it
    as a refusal that sent nothing, and a :class:`ConfigurationError` by its cause.
    """

    def __init__(self) -> None:
        super().__init__(MISSING_API_KEY_MESSAGE)


def first_failure(
    exc: BaseException, *, skip: tuple[type[BaseException], ...] = ()
) -> BaseException:
    """The first exception inside ``exc`` (depth first through nested exception groups)
    that is not one of ``skip``; the first of all if every one is; ``exc`` itself if it
    is not a group."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = list(current.exceptions)
        else:
            leaves.append(current)
    return next((leaf for leaf in leaves if not isinstance(leaf, skip)), leaves[0])
