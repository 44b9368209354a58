"""Lock files in the state folder: the SQLite task store's leases across processes.

Save and poll leases (:class:`FlockLeases`): one download of a task, and one poll loop
of it, at a time across every server process that shares the folders.

``<state_dir>/locks/<sha256 of the task id>.lock`` (a poll lease's: of ``poll:<task
id>``) is held with an exclusive ``fcntl.flock`` for the whole download (or wait); the
holder writes its pid into it so a
waiting process can say who holds it. The kernel drops a flock when its holder
dies, so a crash never leaves a task locked. Lock files are left in place
(deleting one while another process opens it would let two holders in); they
are empty but for a pid.

Submit leases (:class:`SubmitLeases`): a claimed idempotency key's submit holds
``locks/submit-<local id>.lock`` until its answer is recorded; such a file is taken
once, by its one holder, so it is removed when let go.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

import anyio.to_thread

from ..errors import JournalError, StorageError
from .seam import Clock, Lease, LeaseBusy, LeaseKind, RealClock

if sys.platform != "win32":
    import fcntl

LOCKS_DIRNAME = "locks"


class TaskLock:
    """A held lock; :meth:`release` (or closing) lets the next holder in."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def release(self) -> None:
        """Release the lock; idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor releases the flock


class FlockLease:
    """A held :class:`TaskLock` as the store seam's ``Lease``."""

    lost = False  # a flock is never taken over: it lasts while its holder lives

    def __init__(self, lock: TaskLock) -> None:
        self._lock = lock

    async def release(self) -> None:
        """Release the lock; idempotent (no await: it completes even when cancelled)."""
        self._lock.release()


class TaskLocks:
    """The per-task lock files of one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self._dir = self.state_dir / LOCKS_DIRNAME

    def path(self, key: str) -> Path:
        """The lock file of ``key`` (a task id; hashed, so any id makes a safe name)."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self._dir / f"{digest}.lock"

    def try_acquire(self, key: str) -> TaskLock | int:
        """The lock of ``key`` if it is free; else the holder's pid (``0`` when the
        holder wrote none yet).

        Raises :class:`OSError` when the folder cannot be used.
        """
        if sys.platform != "win32":
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return try_lock_file(self.path(key))


class FlockLeases:
    """The SQLite task store's leases (a mixin of the journal): the lock files of its
    :class:`TaskLocks`, and its wait for a change, which no notification crosses
    processes to end: a plain wait on the clock, after which the waiter looks again."""

    _task_locks: TaskLocks
    _wait_clock: Clock = RealClock()
    """What :meth:`wait_for_change` waits on (tests: a fake clock)."""

    async def try_lease(self, task_id: str, kind: LeaseKind) -> Lease | LeaseBusy:
        """The lease of ``task_id``: an flock on its lock file, held until released or
        the holder's process ends; else who holds it."""
        # A save keeps the name it always had; other kinds are named apart from it.
        key = task_id if kind is LeaseKind.SAVE else f"{kind.value}:{task_id}"
        try:
            # open + flock + pid write: file calls, kept off the event loop
            held = await anyio.to_thread.run_sync(self._task_locks.try_acquire, key)
        except OSError as exc:
            raise StorageError(
                f"Cannot lock task {task_id!r} for its {kind.value} in the state folder "
                f"{self._task_locks.state_dir}: {exc.strerror or exc}"
            ) from exc
        if isinstance(held, TaskLock):
            return FlockLease(held)
        return LeaseBusy(f"pid {held or 'unknown'}")

    async def wait_for_change(self, task_id: str, timeout: float) -> bool:  # noqa: ASYNC109
        """``timeout`` s on the clock; nothing tells of a change here (``False``)."""
        await self._wait_clock.sleep(max(0.0, timeout))
        return False


def try_lock_file(path: Path) -> TaskLock | int:
    """An exclusive ``flock`` on ``path`` (created 0600), with this process's pid
    written in it; else the holder's pid (``0``: unknown). :class:`OSError` when the
    file cannot be opened or locked."""
    if sys.platform == "win32":  # pragma: no cover - one process per folder assumed
        return TaskLock(None)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        return holder
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return TaskLock(fd)


def holder_gone(path: Path) -> bool:
    """Whether the process that locked ``path`` with :func:`try_lock_file` has let go
    or died: the file is gone, or its lock can be taken (the file is then removed).

    ``False`` while the lock is held, and whenever that cannot be told (no flock
    here, or the file cannot be opened): then the holder is taken to be alive.
    Only for a lock taken once, by its one holder (a submit's lease): removing a
    lock file that is taken again and again could let two holders in.
    """
    if sys.platform == "win32":  # pragma: no cover - no flock: assume it lives
        return False
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: held
            return False
        with contextlib.suppress(OSError):
            path.unlink()
        return True
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


class SubmitLeases:
    """The submit leases of one state folder that this process holds, by local id.
    Called under the journal's lock."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = Path(state_dir) / LOCKS_DIRNAME
        self._held: dict[str, TaskLock] = {}

    def _path(self, local_id: str) -> Path:
        return self._dir / f"submit-{local_id}.lock"

    def take(self, local_id: str) -> None:
        """Hold the lease of a new submission (a :class:`JournalError` if it cannot)."""
        path = self._path(local_id)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            held = try_lock_file(path)
        except OSError as exc:
            raise JournalError(
                f"Cannot create the submit lock {path}: {exc}. Nothing was sent; make the "
                "state folder writable (GRAVITEX_STATE_DIR)."
            ) from exc
        if not isinstance(held, TaskLock):  # a fresh UUID: nobody else can hold it
            raise JournalError(f"The submit lock {path} is held by pid {held}; nothing was sent.")
        self._held[local_id] = held

    def end(self, local_id: str) -> None:
        """Let the lease of ``local_id`` go, if this process holds it."""
        held = self._held.pop(local_id, None)
        if held is not None:
            # Removed while still held, so a waiter that finds it can never take it
            # from a live holder.
            with contextlib.suppress(OSError):
                self._path(local_id).unlink()
            held.release()

    def end_all(self) -> None:
        """Let every lease go (the journal closes)."""
        for local_id in list(self._held):
            self.end(local_id)

    def gone(self, local_id: str) -> bool:
        """Whether the submission's holder (in any process) has let go or died."""
        return local_id not in self._held and holder_gone(self._path(local_id))
