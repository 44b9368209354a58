"""The store seam: the two interfaces ``service/`` holds, and nothing else of the store.

* :class:`TaskStore`: every task this server (or any server sharing the store)
  submitted: records, submissions, idempotency claims, budget reservations, and leases
  across processes. A ``TaskStore`` is always **one user's view**: every read and
  write is for :attr:`TaskStore.user_id` (rows stamped with it, queries filtered by
  it); :meth:`TaskStore.for_user` gives another user's view of the same store.
  Today :class:`~gravitex_mcp.store.journal.Journal` (SQLite in the state folder,
  flock files as leases).
* :class:`VideoStore`: where videos and the stills made from them are kept: reserve a
  name, write while hashing, publish without clobbering, open and verify a saved file.
  :class:`~gravitex_mcp.store.storage.OutputDir` (the local output folder), or
  :class:`~gravitex_mcp.store.objects.ObjectVideoStore` (S3-compatible storage).

Only ``store/`` and the composition root (``server/app.py``) name the implementations;
``service/`` sees no SQL, lock file, temp-file name or folder layout. Designed so the
team-hosting issue adds, without touching ``service/``:

* a PostgreSQL task store: claims as ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
  (a unique constraint on the key); leases as rows ``(task_id, kind, holder,
  expires_at)`` taken with ``INSERT ... ON CONFLICT ... WHERE expires_at < now()``
  and deleted by :meth:`Lease.release`; :meth:`TaskStore.wait_for_change` wakes on
  ``LISTEN`` where the journal's is a timed wait;
* an S3 video store: :meth:`VideoStore.reserve` starts a multipart upload under a
  temporary key (the writer hashes each part), :meth:`VideoWriter.commit` completes it
  and copies it create-only (``If-None-Match: *``) to the first free ``stem-N`` key;
  links are presigned GETs; :meth:`VideoStore.recover` aborts unfinished uploads.
"""

from __future__ import annotations

import builtins
import copy
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar, cast

import anyio

from ..domain import JournalStatus, TaskStatus
from ..errors import InvalidArgumentsError, Problem, StorageError
from .ondisk import Changed, FileIdentity, HeldFile
from .records import KeyClaim, OverBudget, RateLimited, Reservation, TaskRecord, Usage

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: How many tasks a listing returns unless asked, and at most (every task store).
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
_B = TypeVar("_B")


def checked_listing(limit: int, status: str | None) -> JournalStatus | None:
    """A listing's arguments checked (every task store's ``list``): the status wanted.
    :class:`InvalidArgumentsError` for a ``limit`` outside 1..:data:`MAX_LIST_LIMIT` or an
    unknown status."""
    problems: builtins.list[Problem] = []
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIST_LIMIT:
        problems.append(
            Problem("limit", f"must be an integer from 1 to {MAX_LIST_LIMIT}, got {limit!r}")
        )
    wanted: JournalStatus | None = None
    if status is not None:
        try:
            wanted = JournalStatus(status)
        except ValueError:
            valid = ", ".join(s.value for s in JournalStatus)
            problems.append(Problem("status", f"must be one of {valid}, got {status!r}"))
    if problems:
        raise InvalidArgumentsError(problems)
    return wanted


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A published file: where it is, its size, sha256 (hex) and identity once in place
    (what later reuse checks it by, see :mod:`gravitex_mcp.store.ondisk`).

    ``uri`` names it in every store (``file://...`` for the output folder,
    ``s3://bucket/key`` for object storage) and is what :meth:`VideoStore.open_checked`
    takes back; ``path`` is its local path, ``None`` when it has none (an object)."""

    path: Path | None
    size_bytes: int
    sha256: str
    identity: FileIdentity | None = None
    uri: str = ""

    @property
    def location(self) -> Path | str:
        """What :meth:`VideoStore.open_checked` and the journal take: the local path,
        else the URI."""
        return self.path if self.path is not None else self.uri


class LeaseKind(StrEnum):
    """What a lease is for: one holder per (task, kind) across every process. (A
    claimed key's submit holds one inside :meth:`TaskStore.claim_key`.)"""

    SAVE = "save"
    """Downloads the task's video once; others wait, then reuse what it recorded."""
    POLL = "poll"
    """Queries the task upstream and records each answer; other processes' waits read
    what it recorded (woken by :meth:`TaskStore.wait_for_change`) instead of asking."""


@dataclass(frozen=True, slots=True)
class LeaseBusy:
    """Someone else holds the lease."""

    holder: str
    """Who, for a message: ``pid 123`` (``pid unknown`` when it wrote none yet)."""


class Lease(Protocol):
    """A held lease; it lasts until released, or until its holder's process ends (a
    shared database's lease: until its expiry, which the holder renews)."""

    @property
    def lost(self) -> bool:
        """Whether another holder took it over (this one stalled past its expiry): stop
        the work it guards."""
        ...

    async def release(self) -> None:
        """End it (idempotent; called from ``finally`` blocks, so it completes even
        in a cancelled scope) and let the next holder in."""
        ...


class UserView:
    """What a task store implementation shares: it is bound to one user, and
    :meth:`for_user` is a cheap copy bound to another (same connections and locks)."""

    _user: str

    @property
    def user_id(self) -> str:
        """Whose tasks this view reads and writes."""
        return self._user

    def for_user(self, user_id: str) -> Self:
        """This store for ``user_id`` (made per call)."""
        if user_id == self._user:
            return self
        view = copy.copy(self)
        view._user = user_id
        return view


class TaskStore(Protocol):
    """The tasks, shared by every server process using the same store. Its errors are
    :class:`~gravitex_mcp.errors.JournalError`, saying what to do.

    One user's view (issue 18): every method below reads and writes only
    :attr:`user_id`'s rows (a task, a key or a reservation of another user is "not
    there"), except :meth:`expire_stale_submissions` (a start-up sweep of every user)
    and :meth:`try_lease` (keyed by upstream task id, which is unique across users).
    The store an implementation opens is the local user's (``"local"``); rows written
    before users existed belong to it."""

    @property
    def user_id(self) -> str:
        """Whose rows this view reads and writes."""
        ...

    def for_user(self, user_id: str) -> TaskStore:
        """The same store for ``user_id`` (cheap: made per call; shares connections)."""
        ...

    async def is_foreign(self, task_id: str) -> bool:
        """Whether upstream ``task_id`` is another user's task: the service then answers
        exactly as for an id that never existed, without asking upstream."""
        ...

    async def reserve_seconds(
        self, seconds: Sequence[float], *, budget: float | None
    ) -> Reservation | OverBudget:
        """Reserve seconds of video (one entry per job) against this user's budget for
        today (UTC), all or nothing, atomically across every process sharing the store;
        ``budget`` None: no cap (still counted)."""
        ...

    async def release_seconds(self, reservation_id: int) -> None:
        """Give one job's reserved seconds back (its submit sent nothing)."""
        ...

    async def usage(self) -> Usage:
        """Seconds reserved and tasks submitted today (UTC) by this user."""
        ...

    async def take_submits(self, count: int, *, per_minute: int) -> RateLimited | None:
        """Take ``count`` of this user's submit slots, all or none, atomically across
        every process sharing the store: at most ``per_minute`` in any
        :data:`~gravitex_mcp.store.records.SUBMIT_WINDOW_SECONDS` by the store's clock
        (:func:`~gravitex_mcp.store.records.slots_to_take`). ``None``: taken; else when
        to retry."""
        ...

    async def get(self, task_id: str) -> TaskRecord | None:
        """One task with its history, by upstream task id or local id."""
        ...

    async def list(self, *, limit: int, status: str | None = None) -> builtins.list[TaskRecord]:
        """The newest first, optionally of one status."""
        ...

    async def task_ids_starting_with(
        self, prefix: str, *, limit: int
    ) -> tuple[builtins.list[str], int]:
        """Upstream task ids starting with ``prefix``, newest first, and how many match."""
        ...

    async def begin_submission(
        self,
        *,
        model: str,
        family: str,
        arguments: Mapping[str, Any],
        arguments_hash: str | None = None,
    ) -> str:
        """Record a submission before it is sent; its local id."""
        ...

    async def complete_submission(
        self, local_id: str, *, task_id: str, status: TaskStatus | JournalStatus
    ) -> TaskRecord:
        """The submit answered with ``task_id``."""
        ...

    async def fail_submission(self, local_id: str, *, message: str, outcome_unknown: bool) -> None:
        """The submit gave no task id (refused, or its outcome is unknown)."""
        ...

    async def expire_stale_submissions(self, *, older_than: timedelta) -> int:
        """Submissions a dead process left ``submitting`` become ``submit_unknown``."""
        ...

    async def claim_key(
        self,
        key: str,
        *,
        arguments_hash: str,
        model: str,
        family: str,
        arguments: Mapping[str, Any],
    ) -> KeyClaim:
        """Claim idempotency ``key`` and begin the submission at once, or find its holder."""
        ...

    async def recent_with_arguments(
        self, arguments_hash: str, *, within: timedelta
    ) -> builtins.list[TaskRecord]:
        """Submissions with these arguments lately, newest first."""
        ...

    async def record_status(
        self,
        task_id: str,
        *,
        status: TaskStatus | JournalStatus,
        raw_status: str | None = None,
        url: str | None = None,
        error_code: str | int | None = None,
        error_message: str | None = None,
    ) -> TaskRecord | None:
        """What a status query showed (a terminal status is never replaced)."""
        ...

    async def record_download(
        self,
        task_id: str,
        *,
        path: Path | str,
        size_bytes: int,
        sha256: str,
        identity: str | None = None,
    ) -> None:
        """Where the task's video was saved: a local path, or the ``s3://`` URI of an
        object (:attr:`StoredFile.location`; call holding its SAVE lease)."""
        ...

    async def record_identity(self, task_id: str, *, path: Path | str, identity: str) -> None:
        """The identity the saved file has now (its bytes checked to be the saved ones)."""
        ...

    async def try_lease(self, task_id: str, kind: LeaseKind) -> Lease | LeaseBusy:
        """Take the lease now, or say who holds it; never waits."""
        ...

    async def wait_for_change(self, task_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait at most ``timeout`` s for another process to record a new status of
        ``task_id``: whether one was seen (then :meth:`get` it). Without notifications
        (the journal) a plain wait on the store's clock that answers ``False``."""
        ...


class VideoWriter(Protocol):
    """A reserved video being written; ``async with``. Leaving the block without
    :meth:`commit` (an error, a cancellation) discards it."""

    def put(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` and hash it (blocking: a page-cache write, or a buffered part)."""
        ...

    async def drain(self) -> None:
        """Wait until what :meth:`put` buffered is within the writer's bound (an object
        store uploads a full part here; a local file has nothing to wait for); a
        cancellation checkpoint. Call it between puts."""
        ...

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """:meth:`put`, then :meth:`drain`."""
        ...

    async def commit(self) -> StoredFile:
        """Make it durable and visible under the first free name, never replacing one."""
        ...

    async def __aenter__(self) -> VideoWriter: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Stills(Protocol):
    """Where the stills made from a saved video go (contact sheets, frames): beside it,
    never clobbering. Blocking: from a worker thread."""

    def save_still(
        self, video: Path | str, name: str, data: bytes, *, reuse: bool = False
    ) -> Path | str:
        """Save ``data`` as ``name`` (or ``stem-N.ext``) beside the video at ``video``
        (a :attr:`StoredFile.location`); with ``reuse``, a copy already holding exactly
        ``data`` is returned instead. Its location."""
        ...

    def find_still(
        self,
        video: Path | str,
        name: str,
        *,
        made_ns: int,
        limit: int,
        usable: Callable[[bytes], bool],
    ) -> tuple[Path | str, bytes] | None:
        """The newest still saved as ``name`` (or a ``stem-N`` copy) beside ``video`` at
        or after ``made_ns``, at most ``limit`` bytes and ``usable``; its location and
        bytes."""
        ...


class VideoStore(Stills, Protocol):
    """Where videos (and the stills made from them) are kept: one user's files (the
    store opened is the local user's; :meth:`for_user` another user's, kept apart)."""

    def for_user(self, storage_name: str) -> VideoStore:
        """The store of ``storage_name``'s files (``Caller.storage_name``; ``"local"``:
        this one). A local folder: ``<output>/users/<storage name>/``; object storage:
        the same under the prefix."""
        ...

    def reserve(self, filename: str | None, *, default_stem: str) -> VideoWriter:
        """A writer for a new video, its name made safe."""
        ...

    def bytes_so_far(self, filename: str | None, *, default_stem: str) -> int | None:
        """How far this process's writer of that name has got; None when none is writing."""
        ...

    def open_checked(
        self, path: Path | str, *, size: int, sha256: str, recorded: FileIdentity | None
    ) -> HeldFile | Changed | None:
        """The saved file at ``path`` (a :attr:`StoredFile.location`), opened and verified
        to be the one saved (blocking): ``None`` when it is gone, :class:`Changed` when
        something else is there now. Read through a local descriptor (an object store
        fetches a temp copy, held while the file is)."""
        ...

    def scratch(self, stem: str) -> AbstractContextManager[Path]:
        """A local temp file for work written by path (the join's encoder), removed
        on exit; ``with`` it in a worker thread or briefly (blocking)."""
        ...

    def recover(self) -> builtins.list[Path]:
        """At start-up (blocking): remove what writers that died left behind."""
        ...

    def owns(self, location: str) -> bool:
        """Whether ``location`` is a URI (not a local path) of this store's own, so an
        input may name it (a saved frame in object storage); the output folder's files
        are read by path instead."""
        ...

    def size_of(self, location: str) -> int | None:
        """The size of what :meth:`owns` names (blocking); ``None`` when nothing is there."""
        ...

    def read_saved(self, location: str, *, limit: int) -> bytes | None:
        """The bytes of a small saved file :meth:`owns` names (blocking); ``None`` when
        it is gone or larger than ``limit``."""
        ...

    def media_url(self, location: Path | str) -> str | None:
        """A link the storage itself serves for a saved file (an object store's
        presigned GET, Range requests included); ``None`` when the server serves its
        own files (the output folder: ``MediaLinks``) or ``location`` is not its own."""
        ...


class Clock(Protocol):
    """The time a wait is measured and slept on (injected: tests never sleep)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The event loop's clock: the stores' waits and renewals outside tests."""

    def monotonic(self) -> float:
        return anyio.current_time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


async def patiently(
    attempt: Callable[[], Awaitable[_T | _B]],
    busy: type[_B],
    *,
    clock: Clock,
    patience: float,
    every: float,
    stuck: Callable[[_B], Exception],
    waiting: Callable[[_B], None] | None = None,
) -> _T:
    """The one wait-for-a-holder loop: ``attempt`` every ``every`` s while it answers
    ``busy``; ``waiting`` once when it first has to wait, ``stuck``'s error after
    ``patience`` s."""
    give_up = clock.monotonic() + patience
    while True:
        got = await attempt()
        if not isinstance(got, busy):
            return cast(_T, got)  # not busy: what was waited for
        if clock.monotonic() >= give_up:
            raise stuck(got)
        if waiting is not None:
            waiting(got)
            waiting = None  # said once
        await clock.sleep(every)


#: How often a save waiting for another process's save of the same task looks again.
LEASE_RETRY_SECONDS = 1.0
#: How long a save waits for another process's save of the same task (whose own
#: retries and time-outs end well before) before calling that process stuck.
LEASE_PATIENCE_SECONDS = 600.0


async def wait_for_lease(
    store: TaskStore,
    task_id: str,
    kind: LeaseKind,
    *,
    clock: Clock,
    patience: float = LEASE_PATIENCE_SECONDS,
) -> Lease:
    """The lease of ``task_id``, waited for while another process holds it; a
    :class:`~gravitex_mcp.errors.StorageError` naming the holder after ``patience`` s."""

    def waiting(busy: LeaseBusy) -> None:
        logger.info(
            "task %s is being saved by another process (%s); waiting for it", task_id, busy.holder
        )

    def stuck(busy: LeaseBusy) -> StorageError:
        return StorageError(
            f"Another gravitex-mcp process ({busy.holder}) has held the download of task "
            f"{task_id!r} for over {patience:g} s; it looks stuck. Stop it, then call "
            "download_video again."
        )

    return await patiently(
        lambda: store.try_lease(task_id, kind),
        LeaseBusy,
        clock=clock,
        patience=patience,
        every=LEASE_RETRY_SECONDS,
        waiting=waiting,
        stuck=stuck,
    )
