"""Hashing saved videos in a helper process, outside the server's GIL.

Why: a hasher *thread* competes with the event loop for the GIL. Each time it gets the
GIL back (after every read and every hash call) the busy event loop pays a few futex
calls and a cross-CPU wake-up; measured, that made a 16 MiB download's event loop 15-20 %
slower, while a download with no hasher thread ran level with a plain loop. A helper
process (:mod:`gravitex_mcp.hashworker`) has its own GIL: the event loop only sends it a
short line now and then.

The helper is an accelerator, never a dependency: :class:`HashHelper` methods raise
:class:`HelperError` on any trouble (no helper could start, it died, it answered
nonsense, it took too long), and the caller then hashes the file itself. A
:class:`HelperPool` starts helpers on demand (one per file being written at the same
time), keeps a few idle ones, and closes them at exit. Helpers need Unix sockets that
carry file descriptors (``socket.send_fds``); elsewhere :meth:`HelperPool.acquire`
returns ``None``.
"""

from __future__ import annotations

import atexit
import logging
import socket
import subprocess
import sys
import threading
from typing import Final

logger = logging.getLogger(__name__)

#: Longest wait for a helper's answer once the file is complete (seconds).
ANSWER_TIMEOUT: Final = 120.0
#: Idle helpers kept for the next files.
MAX_IDLE: Final = 2
#: Helpers that fail before answering once, in a row, before the pool stops starting
#: them (a helper that cannot even import, say).
MAX_EARLY_FAILURES: Final = 3


class HelperError(Exception):
    """The helper cannot be used for this file; hash it in-process instead."""


def supported() -> bool:
    """Whether helpers can run here (Unix sockets that pass file descriptors)."""
    return hasattr(socket, "send_fds") and hasattr(socket, "AF_UNIX") and bool(sys.executable)


class HashHelper:
    """One helper process; hashes one file at a time (see :mod:`gravitex_mcp.hashworker`)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._process = subprocess.Popen(  # noqa: S603  (our own module, no shell)
                [sys.executable, "-I", "-m", "gravitex_mcp.hashworker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # a stdio server's stdout is for MCP only
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            ours.close()
            raise HelperError(f"could not start the hash helper: {exc}") from exc
        finally:
            theirs.close()
        self._sock = ours
        self.healthy = True
        self.answered = 0  # digests given

    def start(self, fd: int) -> None:
        """Hash the file behind ``fd`` (a descriptor the helper gets a copy of)."""
        try:
            self._sock.setblocking(True)
            socket.send_fds(self._sock, [b"F\n"], [fd])
            self._sock.setblocking(False)  # W lines are hints: never wait to send one
        except OSError as exc:
            self.healthy = False
            raise HelperError(f"the hash helper did not take the file: {exc}") from exc

    def written(self, size: int) -> None:
        """Tell the helper the file now holds ``size`` bytes (event loop; never waits)."""
        try:
            self._sock.send(b"W %d\n" % size)
        except BlockingIOError:
            pass  # a full socket: the next line (or the final E) tells the same
        except OSError:
            self.healthy = False  # finish() will say so

    def finish(self, size: int, timeout: float = ANSWER_TIMEOUT) -> str:
        """Blocking: the file is complete at ``size`` bytes; return its sha256 (hex)."""
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(b"E %d\n" % size)
            answer = b""
            while not answer.endswith(b"\n"):
                part = self._sock.recv(256)
                if not part:
                    raise HelperError("the hash helper stopped")
                answer += part
                if len(answer) > 4096:
                    raise HelperError("the hash helper answered too much")
        except OSError as exc:
            self.healthy = False
            raise HelperError(f"the hash helper did not answer: {exc}") from exc
        kind, _, rest = answer.decode("ascii", "replace").strip().partition(" ")
        digest, _, count = rest.partition(" ")
        if kind != "D" or count != str(size) or len(digest) != 64:
            self.healthy = kind == "X"  # a reported error leaves the helper usable
            raise HelperError(f"the hash helper answered {answer[:120]!r}")
        self.answered += 1
        return digest

    def close(self) -> None:
        """Stop the helper (it exits when its socket closes)."""
        self.healthy = False
        self._sock.close()
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                logger.warning("the hash helper %s did not exit", self._process.pid)


class HelperPool:
    """Helpers for the files being written: started on demand, a few kept idle."""

    def __init__(self, *, max_idle: int = MAX_IDLE) -> None:
        self._idle: list[HashHelper] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle
        self._failed = not supported()
        self._closed = False
        self._early_failures = 0  # helpers in a row that failed before answering once

    def acquire(self) -> HashHelper | None:
        """Blocking: an idle helper or a new one; ``None`` if helpers cannot run here."""
        with self._lock:
            if self._failed or self._closed:
                return None
            if self._idle:
                return self._idle.pop()
        try:
            return HashHelper()
        except HelperError as exc:
            with self._lock:
                self._failed = True  # do not try again for every file
            logger.warning("%s; hashing in-process from now on", exc)
            return None

    def release(self, helper: HashHelper) -> None:
        """Blocking: keep ``helper`` for the next file, or stop it."""
        with self._lock:
            if helper.answered:
                self._early_failures = 0
            elif not helper.healthy:
                self._early_failures += 1
                if self._early_failures >= MAX_EARLY_FAILURES and not self._failed:
                    self._failed = True
                    logger.warning(
                        "%d hash helpers in a row failed before answering; hashing "
                        "in-process from now on",
                        self._early_failures,
                    )
            if helper.healthy and not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(helper)
                return
        helper.close()

    def close(self) -> None:
        """Blocking: stop every idle helper; later releases stop theirs."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for helper in idle:
            helper.close()


_shared: HelperPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> HelperPool:
    """The process's pool (made on first use, closed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = HelperPool()
            atexit.register(_shared.close)
        return _shared
