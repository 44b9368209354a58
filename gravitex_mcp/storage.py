"""Saving a video under the output directory, safely.

* :func:`safe_filename` reduces a caller-supplied name to a plain base name ending in
  ``.mp4`` (no directories, no ``..``, no control or reserved characters, no leading dot,
  bounded length).
* :class:`OutputDir` creates the directory if it is missing and hands out
  :class:`VideoFile` writers. A writer streams into a temporary file **inside** the
  output directory (``.<stem>.<random>.part``, created with ``O_EXCL``, mode 0o644).
  The event loop writes each piece straight into it: a page-cache write, what
  ``f.write`` costs a plain download loop (tens of microseconds for 64 KiB). The bytes
  are hashed (sha256) as they are read back from the file, so the digest is that of
  the bytes in the file and the event loop never hashes. Where Unix sockets carry file
  descriptors, a hash helper *process* does it (:mod:`gravitex_mcp.hashhelper`: it has
  its own GIL, so the event loop only sends it a line per span); a helper that fails
  costs a re-read of the file at commit, never the video. Elsewhere (or with
  ``helpers=None``) a hasher thread reads the file back behind the writer; memory is
  one span. The spans are large because each costs the hasher a
  wake-up and two returns from GIL-releasing calls (read, hash), and each time the
  hasher wins the GIL back from the busy event loop, the loop pays too (futex
  wake-ups). They start at :data:`DEFAULT_SPAN_BYTES` and grow with the video (announced
  with :meth:`VideoFile.expect`, or as the file grows) up to :data:`MAX_SPAN_BYTES`,
  never past a tenth of the video (:func:`span_for`). If the hasher falls more than
  ``max_hash_lag`` behind, the event loop waits for it (woken through a socket pair,
  without blocking). When event-loop writes take
  :data:`SLOW_WRITE_SECONDS` on average (a congested or network disk), the file's other
  writes go to a worker thread, so a slow disk never holds the event loop for long. On
  Linux the write-back of what was hashed is started every
  :data:`WRITEBACK_EVERY_BYTES` (``posix_fadvise(DONTNEED)``), so the final fsync has
  little left to wait for and a big video does not crowd the page cache.
  :meth:`VideoFile.commit` fsyncs the file while the hasher reads its last span, then
  publishes it **without ever overwriting**: ``os.link(temp, final)`` fails when
  ``final`` exists, so the next free name (``name-1.mp4``, ``name-2.mp4``, ...) is tried;
  the temp name is then unlinked and the directory fsynced. Where hard links are not
  supported it falls back to ``os.rename`` on Windows (which refuses to replace) and
  elsewhere to an ``O_EXCL`` placeholder replaced by the finished file.
* Any failure (disk full, read-only directory, a cut stream, cancellation) removes the
  temp file, and OS errors become a :class:`~gravitex_mcp.errors.StorageError` that
  says what to do. Nothing is ever left under a final name unless it is complete.

The OS functions are injectable (``write``, ``fsync``, ``link``, ``open_file``, and the
``clock`` that times writes) so tests can simulate a full disk, a read-only directory, a
filesystem without hard links or a slow disk; so are the hash ``helpers`` (a
:class:`~gravitex_mcp.hashhelper.HelperPool`, or ``None`` for the hasher thread).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import re
import secrets
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread

from .errors import StorageError
from .hashhelper import HashHelper, HelperError, HelperPool, shared_pool
from .hashworker import DONTNEED, FADVISE, WRITEBACK_EVERY_BYTES
from .leftovers import hold_temp_file

logger = logging.getLogger(__name__)

#: Extension every saved video gets.
VIDEO_SUFFIX: Final = ".mp4"
#: Longest stem (UTF-8 bytes) kept from a caller's name; leaves room for ``-NNNN``,
#: the temp-name decoration and the 255-byte name limit of common filesystems.
MAX_STEM_BYTES: Final = 160
#: Bytes the hasher thread reads back (and holds in memory) at a time, at first. Large
#: spans matter (see :class:`VideoFile`): 256 KiB measured far worse than 512 KiB.
DEFAULT_SPAN_BYTES: Final = 512 << 10
#: The largest span: bigger videos get bigger spans (see :func:`span_for`), up to this.
MAX_SPAN_BYTES: Final = 4 << 20
#: Memory kept free of spans for the HTTP stack's own buffers (about 0.7 MiB measured)
#: when sizing a span against a tenth of the video (see :func:`span_for`).
SPAN_HEADROOM_BYTES: Final = 1 << 20
#: How far the hasher may fall behind the writes before the event loop waits for it.
DEFAULT_MAX_HASH_LAG: Final = 32 << 20
#: When event-loop writes take this long on average (an exponential average over about
#: the last 8), the file's other writes go to a worker thread.
SLOW_WRITE_SECONDS: Final = 0.002
#: Unique-name attempts (``name-1`` ... ``name-N``) before giving up.
MAX_UNIQUE_TRIES: Final = 10_000

_RESERVED_CHARS: Final = frozenset('<>:"/\\|?*')
_DROPPED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_WINDOWS_DEVICES: Final = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}
)
_SPACES: Final = re.compile(r"\s+")
_NOT_WRITABLE: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_DISK_FULL: Final = frozenset(
    {errno.ENOSPC} | ({errno.EDQUOT} if hasattr(errno, "EDQUOT") else set())
)
_NO_HARD_LINKS: Final = frozenset(
    {errno.EPERM, errno.EMLINK, errno.ENOSYS, errno.EXDEV, errno.EOPNOTSUPP, errno.ENOTSUP}
)

_READ_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)

WriteFn = Callable[[int, bytes | bytearray | memoryview], int]
FsyncFn = Callable[[int], None]
LinkFn = Callable[[str, str], None]
OpenFn = Callable[[str, int, int], int]


def _clean_stem(raw: str) -> str:
    text = unicodedata.normalize("NFC", raw).replace("\\", "/")
    parts = [p for p in text.split("/") if p.strip() not in ("", ".", "..")]
    text = parts[-1] if parts else ""
    kept: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if category in _DROPPED_CATEGORIES:
            continue  # control, format (bidi overrides), surrogates, private, unassigned
        if ch in _RESERVED_CHARS:
            kept.append("_")
        elif category.startswith("Z"):
            kept.append(" ")
        else:
            kept.append(ch)
    text = _SPACES.sub(" ", "".join(kept)).strip()
    if text.lower().endswith(VIDEO_SUFFIX):
        text = text[: -len(VIDEO_SUFFIX)]
    text = text.strip(" .")
    if text.split(".")[0].strip().upper() in _WINDOWS_DEVICES:
        text = "_" + text
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_STEM_BYTES:
        text = encoded[:MAX_STEM_BYTES].decode("utf-8", errors="ignore").rstrip(" .")
    return text


def safe_filename(name: str | None, *, default_stem: str) -> str:
    """A safe base name ending in ``.mp4`` for ``name`` (or ``default_stem`` when unusable).

    Directories are stripped (``../../etc/passwd`` -> ``passwd.mp4``, ``a/b\\c`` ->
    ``c.mp4``), control and invisible format characters dropped, ``<>:"/\\|?*`` replaced
    by ``_``, leading/trailing dots and spaces removed (``.hidden`` -> ``hidden.mp4``),
    Windows device names defused, the stem cut to :data:`MAX_STEM_BYTES` UTF-8 bytes.
    """
    stem = _clean_stem(name) if name else ""
    if not stem:
        stem = _clean_stem(default_stem) or "video"
    return stem + VIDEO_SUFFIX


def span_for(video_bytes: int, *, smallest: int, largest: int) -> int:
    """The hasher's span for a video of (at least) ``video_bytes``: ``smallest`` doubled
    while it stays within ``largest`` and a tenth of the video less
    :data:`SPAN_HEADROOM_BYTES`.

    Each span costs the hasher a wake-up and two GIL hand-overs, which the busy event
    loop pays for too (one futex wake each; ~17 us in a VM): 4 MiB spans made a 256 MiB
    download's event loop ~12 % cheaper than 512 KiB ones. The bound keeps a download's
    memory under a tenth of the video: 512 KiB up to 20 MiB, 4 MiB from 80 MiB.
    """
    span = smallest
    room = min(largest, video_bytes // 10 - SPAN_HEADROOM_BYTES)
    while span * 2 <= room:
        span *= 2
    return span


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A published file: its final path, size and sha256 (hex)."""

    path: Path
    size_bytes: int
    sha256: str


def _storage_error(exc: OSError, *, name: str, directory: Path, action: str) -> StorageError:
    if exc.errno in _DISK_FULL:
        return StorageError(
            f"Disk full while saving {name} to {directory}: free some space or set "
            "GRAVITEX_OUTPUT_DIR to a directory on a disk with room. Nothing was saved."
        )
    if exc.errno in _NOT_WRITABLE:
        return StorageError(
            f"The output dir {directory} is not writable ({exc.strerror or exc}); set "
            "GRAVITEX_OUTPUT_DIR to a directory this server can write. Nothing was saved."
        )
    return StorageError(
        f"Could not {action} {name} in {directory}: {exc.strerror or exc}. Nothing was saved."
    )


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


class OutputDir:
    """The directory videos are saved in; hands out :class:`VideoFile` writers."""

    def __init__(
        self,
        path: Path,
        *,
        span_bytes: int = DEFAULT_SPAN_BYTES,
        max_span_bytes: int = MAX_SPAN_BYTES,
        max_hash_lag: int = DEFAULT_MAX_HASH_LAG,
        write: WriteFn = os.write,
        fsync: FsyncFn = os.fsync,
        link: LinkFn | None = os.link,
        open_file: OpenFn = os.open,
        early_writeback: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        helpers: HelperPool | Literal["shared"] | None = "shared",
    ) -> None:
        self.path = Path(path).expanduser()
        self.span_bytes = max(1, span_bytes)
        self.max_span_bytes = max(self.span_bytes, max_span_bytes)
        self.max_hash_lag = max(0, max_hash_lag)
        self._write = write
        self._clock = clock
        self._fsync = fsync
        self._link = link
        self._open_file = open_file
        self._fadvise = FADVISE if early_writeback else None
        # Hash helper processes (see hashhelper.py); None: a hasher thread per file.
        self._helpers = shared_pool() if helpers == "shared" else helpers

    def ensure(self) -> Path:
        """Create the directory if missing; return its resolved path (blocking)."""
        path = self.path
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise StorageError(
                f"The output dir {path} exists but is not a directory; set "
                "GRAVITEX_OUTPUT_DIR to a directory."
            ) from exc
        except OSError as exc:
            raise StorageError(
                f"Could not create the output dir {path} ({exc.strerror or exc}); set "
                "GRAVITEX_OUTPUT_DIR to a directory this server can write."
            ) from exc
        resolved = path.resolve()
        if not resolved.is_dir():
            raise StorageError(
                f"The output dir {path} is not a directory; set GRAVITEX_OUTPUT_DIR to one."
            )
        return resolved

    def video(self, filename: str | None, *, default_stem: str) -> VideoFile:
        """A writer for one video; use as ``async with``; call :meth:`VideoFile.commit`."""
        return VideoFile(self, safe_filename(filename, default_stem=default_stem))


class _Doorbell:
    """Lets the hasher thread wake the event loop without a worker thread in between.

    A connected socket pair: :meth:`ring` (any thread) sends a byte, :meth:`wait` (the
    event loop) waits until the other end is readable and drains it.
    """

    def __init__(self) -> None:
        self._rx, self._tx = socket.socketpair()
        self._rx.setblocking(False)
        self._tx.setblocking(False)

    def ring(self) -> None:
        with contextlib.suppress(OSError):  # the buffer is full: it rings already
            self._tx.send(b"\0")

    async def wait(self) -> None:
        await anyio.wait_readable(self._rx)
        with contextlib.suppress(OSError):
            while self._rx.recv(4096):
                pass

    def close(self) -> None:
        self._rx.close()
        self._tx.close()


class VideoFile:
    """One video being written: ``async with out.video(...) as f: await f.write(b); await
    f.commit()``.

    The event loop writes each piece straight into the temp file (the page cache: about
    what ``f.write`` costs in a plain download loop). A hasher thread reads the file back
    behind it, in spans (see :func:`span_for`), and hashes (sha256) what it reads, so
    the digest is that of the bytes in the file; it also starts their write-back. Its
    two calls per span (read, hash) release the GIL; each return has to win it back
    from the busy event loop, which is why the spans are large. When event-loop writes
    take :data:`SLOW_WRITE_SECONDS` on average (a congested or network disk), the rest
    of the file's writes go to a worker thread. Leaving the block
    without a successful :meth:`commit` (an exception, a cancellation, or simply not
    committing) stops the hasher and removes the temp file.
    """

    def __init__(self, out: OutputDir, name: str) -> None:
        self._out = out
        self.name = name
        self._dir: Path | None = None
        self._tmp: Path | None = None
        self._fd: int | None = None  # the temp file, written by the event loop
        self._reader: int | None = None  # the temp file again, read by the hasher
        self._open = False  # accepting bytes: between __aenter__ and commit / exit
        self._expected = 0  # the announced size (see expect): sizes the span only
        self._span = out.span_bytes  # grows with the video (hasher thread)
        self._max_lag = out.max_hash_lag
        self._size = 0  # bytes accepted
        self._written = 0  # bytes in the file (event loop)
        self._pending: list[bytes] = []  # accepted, not yet written (slow disk)
        self._slow = False  # writes go through a worker thread
        self._write_seconds = 0.0  # average duration of an event-loop write
        self._checkpointed = 0  # _size at the last cancellation checkpoint of write()
        self._hashed = 0  # bytes read back and hashed (hasher thread)
        self._hash = hashlib.sha256()  # updated by the hasher thread only
        self._advised = 0  # bytes whose write-back was started (hasher thread)
        self._stored: StoredFile | None = None
        self._helper: HashHelper | None = None  # hashes instead of the thread, if any
        self._told = 0  # bytes the helper was told about
        self._digest: str | None = None  # from the helper, or hashed after the fact
        # the hasher thread and how it and the event loop wake each other
        self._hasher: threading.Thread | None = None
        self._wake = threading.Event()  # for the hasher: new bytes, a flush, a stop
        self._bell: _Doorbell | None = None  # for the loop: the hasher moved on
        self._hasher_idle = False  # the hasher waits for _wake
        self._loop_waiting = False  # the loop waits for the bell
        self._drain_to = 0  # the hasher reads up to here even if less than a span
        self._stopping = False  # the hasher reads everything written, then ends
        self._abort = False  # the hasher ends at once
        self._done = False  # the hasher thread has ended
        self._failure: BaseException | None = None  # the hasher's

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> VideoFile:
        try:
            await anyio.to_thread.run_sync(self._start)
        except BaseException:
            # A cancellation lands after _start has finished: undo it.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._stop_hasher)
            self._discard()
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        if self._hasher is not None or self._helper is not None:
            self._abort = True
            # Shielded: even a cancelled task waits for the span being read, so nothing
            # touches the file once it is removed below.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._stop_hasher)
        self._discard()  # synchronous: runs even while the task is being cancelled

    def _start(self) -> None:
        """Blocking: create the temp file, open it again for reading, and hand it to a
        hash helper process, or else start a hasher thread."""
        self._create_temp()
        try:
            assert self._tmp is not None
            assert self._fd is not None
            self._reader = os.open(self._tmp, _READ_FLAGS)
            if not os.path.samestat(os.fstat(self._reader), os.fstat(self._fd)):
                raise StorageError(
                    f"The temporary file for {self.name} in {self._dir} was replaced while "
                    "it was being opened; nothing was saved."
                )
            if self._start_helper(self._reader):
                return
            hasher = threading.Thread(
                target=self._hash_loop, name=f"gravitex-hasher:{self.name}", daemon=True
            )
            hasher.start()
        except BaseException as exc:
            self._discard()
            if isinstance(exc, OSError):
                raise self._error(exc, "open") from exc
            raise
        self._hasher = hasher

    def _start_helper(self, reader: int) -> bool:
        """Blocking: give the file to a hash helper process; False if none is at hand."""
        pool = self._out._helpers
        helper = pool.acquire() if pool is not None else None
        if pool is None or helper is None:
            return False
        try:
            helper.start(reader)
        except HelperError as exc:
            logger.info("%s; a hasher thread hashes %s", exc, self.name)
            pool.release(helper)
            return False
        self._helper = helper
        self._max_lag = sys.maxsize  # the helper never holds the writes back
        return True

    def _create_temp(self) -> None:
        directory = self._out.ensure()
        stem = self.name[: -len(VIDEO_SUFFIX)]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        for _ in range(100):
            tmp = directory / f".{stem}.{secrets.token_hex(6)}.part"
            try:
                self._fd = self._out._open_file(str(tmp), flags, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                raise _storage_error(
                    exc, name=self.name, directory=directory, action="create a file for"
                ) from exc
            # Held while writing: the start-up sweep of another server leaves it alone.
            hold_temp_file(self._fd)
            self._dir, self._tmp = directory, tmp
            return
        raise StorageError(f"Could not find a free temporary name in {directory}.")

    def _discard(self) -> None:
        for attr in ("_fd", "_reader"):
            fd = getattr(self, attr)
            setattr(self, attr, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            with contextlib.suppress(OSError):  # best effort: a dot name ending in .part
                os.unlink(tmp)
        self._pending = []
        bell, self._bell = self._bell, None
        if bell is not None:
            bell.close()

    def _stop_hasher(self) -> None:
        """Blocking: end the hasher thread (after it read everything, unless aborting);
        stop a helper that was still hashing (it is not reused)."""
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.close()
        hasher, self._hasher = self._hasher, None
        if hasher is None:
            return
        self._stopping = True
        self._wake.set()
        hasher.join()

    # --- the hasher thread -------------------------------------------------------------

    def _span_for(self, video_bytes: int) -> int:
        out = self._out
        return span_for(video_bytes, smallest=out.span_bytes, largest=out.max_span_bytes)

    def _hash_loop(self) -> None:
        assert self._reader is not None
        reader = io.FileIO(self._reader, "rb", closefd=False)  # reads on from byte 0
        # The span buffer comes from malloc on purpose: glibc raises its trim threshold
        # when such a block is freed, which keeps the event loop's 256 KiB socket reads
        # from trimming and regrowing the heap (a page fault per 4 KiB read otherwise).
        view = memoryview(bytearray(self._span))
        try:
            while not self._abort:
                hashed = self._hashed
                span = self._span_for(max(self._expected, self._written))
                if span > len(view):
                    view.release()  # the old buffer goes before the new one is made
                    view = memoryview(bytearray(span))
                    self._span = span
                ready = self._written - hashed
                if ready and (ready >= self._span or self._drain_to > hashed or self._stopping):
                    self._hash_span(reader, view, hashed, min(ready, len(view)))
                    continue
                if self._stopping:
                    return  # everything written was hashed
                self._hasher_idle = True
                # Checked again after raising the flag: the loop either sees the flag
                # and sets _wake, or we see its new bytes here.
                if not (
                    self._abort
                    or self._stopping
                    or self._written - hashed >= self._span
                    or self._drain_to > hashed
                ):
                    self._wake.wait()
                    self._wake.clear()
                self._hasher_idle = False
        finally:
            view.release()
            self._done = True
            if self._loop_waiting and self._bell is not None:
                self._bell.ring()

    def _hash_span(self, reader: io.FileIO, view: memoryview, start: int, length: int) -> None:
        """Read the ``length`` bytes of the file from ``start`` back and hash them."""
        if self._failure is None:
            try:
                self._read_back(reader, view, length)
                with view[:length] as span:
                    self._hash.update(span)  # releases the GIL: runs beside the event loop
            except BaseException as exc:  # noqa: BLE001  (re-raised in the foreground)
                self._failure = exc
        # After a failure the rest is skipped, so the loop never waits for it forever.
        self._hashed = hashed = start + length
        if self._loop_waiting and self._bell is not None:
            self._bell.ring()
        fadvise, fd = self._out._fadvise, self._fd
        if (
            fadvise is not None
            and fd is not None
            and self._failure is None
            and hashed - self._advised >= WRITEBACK_EVERY_BYTES
        ):
            # Linux starts writing these pages back now (and drops them from the cache
            # once clean), so the final fsync has little left to wait for.
            with contextlib.suppress(OSError):
                fadvise(fd, self._advised, hashed - self._advised, DONTNEED)
            self._advised = hashed

    def _read_back(self, reader: io.FileIO, view: memoryview, length: int) -> None:
        """Fill ``view[:length]`` with the next bytes of the file (hasher thread)."""
        got = 0
        try:
            while got < length:
                with view[got:length] as rest:
                    n = reader.readinto(rest)  # releases the GIL
                if not n:
                    raise StorageError(
                        f"{self.name} in {self._dir} shrank while it was being written "
                        "(something else changed the temp file); nothing was saved."
                    )
                got += n
        except OSError as exc:
            raise self._error(exc, "read back") from exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # --- writing -------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes accepted so far."""
        return self._size

    @property
    def backlogged(self) -> bool:
        """:meth:`flush_if_full` has work: bytes a slow disk left pending, a hasher too
        far behind, or the hasher's error to raise."""
        return (
            bool(self._pending)
            or self._written - self._hashed > self._max_lag
            or self._failure is not None
        )

    @property
    def span_bytes(self) -> int:
        """Bytes the hasher reads back (and holds in memory) at a time, now."""
        return self._span

    def expect(self, size: int) -> None:
        """Tell the writer how big the video will be (``Content-Length``), so the hasher
        can use large spans from the start (see :func:`span_for`). Only a hint: nothing
        checks the real size against it, and the span grows with the file anyway."""
        self._expected = max(0, size)

    @property
    def temp_path(self) -> Path | None:
        """The temporary file (inside the output dir) while the writer is open."""
        return self._tmp

    def buffer(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the file now (never waits for the hasher); call
        :meth:`flush_if_full` after it when :attr:`backlogged`.

        On a slow disk the bytes are kept (a private copy unless ``data`` is ``bytes``)
        for :meth:`flush_if_full` to write in a worker thread. Usable as a synchronous
        sink, e.g. for :class:`~gravitex_mcp.b64stream.SoraDownloadDecoder`. Raises
        :class:`~gravitex_mcp.errors.StorageError` if the write fails.
        """
        if not self._open:
            raise StorageError("The video file is not open.")
        if type(data) is not bytes and type(data) is not bytearray:
            data = bytes(data)  # a memoryview's len() counts items, not bytes
        n = len(data)
        if not n:
            return
        self._size += n
        if self._slow or self._pending:
            self._pending.append(data if type(data) is bytes else bytes(data))
            return
        clock = self._out._clock
        started = clock()
        self._write_all(data)
        average = self._write_seconds = self._write_seconds * 0.875 + (clock() - started) / 8
        if average > SLOW_WRITE_SECONDS:
            self._slow = True  # this disk blocks: keep it off the event loop from now on
        self._wrote(n)

    def _write_rest(self, fd: int, data: bytes | bytearray, offset: int) -> None:
        """Write ``data[offset:]`` after a short write (raises OSError)."""
        write = self._out._write
        with memoryview(data) as view:
            end = len(view)
            if offset <= 0:
                raise OSError(errno.EIO, "write made no progress")
            while offset < end:
                with view[offset:] as rest:
                    written = write(fd, rest)
                if written <= 0:
                    raise OSError(errno.EIO, "write made no progress")
                offset += written

    def _write_all(self, data: bytes | bytearray) -> None:
        fd = self._fd
        if fd is None:
            raise StorageError("The video file is not open.")
        try:
            written = self._out._write(fd, data)
            if written != len(data):  # a short write: rare on a local disk
                self._write_rest(fd, data, written)
        except OSError as exc:
            raise self._error(exc, "write") from exc

    def _write_pieces(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._write_all(piece)

    def _wrote(self, n: int) -> None:
        """Count ``n`` bytes as in the file; tell the hasher once a span is ready."""
        self._written = written = self._written + n
        helper = self._helper
        if helper is not None:
            if written - self._told >= self._span:  # commit tells it the rest
                self._told = written
                helper.written(written)
        elif self._hasher_idle and written - self._hashed >= self._span:
            self._wake.set()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """:meth:`buffer` then :meth:`flush_if_full`, with a cancellation checkpoint
        about once per span even when nothing waits."""
        self.buffer(data)
        await self.flush_if_full()
        if self._size - self._checkpointed >= self._span:
            self._checkpointed = self._size
            await anyio.lowlevel.checkpoint()

    async def flush_if_full(self) -> None:
        """Write what a slow disk left pending (in a worker thread); wait while the
        hasher is more than ``max_hash_lag`` bytes behind.

        Returns at once otherwise (no checkpoint: the caller reads a stream, which has
        them); raises the hasher's error, if it failed.
        """
        if self._failure is not None:
            raise self._failure
        if self._pending:
            await self._write_pending()
        if self._written - self._hashed > self._max_lag:
            await self._wait_for_hasher(self._written - self._max_lag // 2)

    async def _write_pending(self) -> None:
        pieces, self._pending = self._pending, []
        await anyio.to_thread.run_sync(self._write_pieces, pieces)
        self._wrote(sum(len(piece) for piece in pieces))

    async def _wait_for_hasher(self, hashed: int) -> None:
        """Wait (without blocking the loop) until the hasher has read ``hashed`` bytes."""
        try:
            while self._hashed < hashed:
                self._raise_failure()
                if self._done:
                    raise StorageError("The video file is not open.")
                bell = self._bell
                if bell is None:
                    bell = self._bell = _Doorbell()
                self._loop_waiting = True
                self._drain_to = hashed  # read up to there, even less than a span
                if self._hasher_idle:
                    self._wake.set()
                if self._hashed >= hashed or self._done:  # checked again after the flag
                    continue
                await bell.wait()
        finally:
            self._loop_waiting = False
        self._raise_failure()

    async def flush(self) -> None:
        """Write everything accepted and wait until the hasher thread (if the file has
        one, rather than a helper process) has read it back."""
        if not self._open:
            raise StorageError("The video file is not open.")
        self._raise_failure()
        if self._pending:
            await self._write_pending()
        if self._helper is None:
            await self._wait_for_hasher(self._written)

    def _error(self, exc: OSError, action: str) -> StorageError:
        directory = self._dir or self._out.path
        return _storage_error(exc, name=self.name, directory=directory, action=action)

    # --- publishing ------------------------------------------------------------------

    async def commit(self) -> StoredFile:
        """Write everything, fsync and publish under the first free name; returns the
        final file."""
        if not self._open:
            raise StorageError("The video file is not open.")
        self._raise_failure()
        if self._pending:
            await self._write_pending()
        self._open = False
        return await anyio.to_thread.run_sync(self._finish)

    def _finish(self) -> StoredFile:
        """Blocking: fsync while the hasher (thread or helper) reads the rest, take the
        digest, then publish."""
        fd = self._fd
        if fd is None:
            raise StorageError("The video file is not open.")
        # Every write is done: the file can reach the disk while the hasher reads its
        # last span from the page cache (the two waits overlap instead of adding up).
        helper = self._helper
        if helper is not None:
            helper.written(self._written)
        else:
            self._stopping = True
            self._wake.set()
        fsync_failure: OSError | None = None
        try:
            self._out._fsync(fd)
        except OSError as exc:
            fsync_failure = exc
        if helper is None:
            self._stop_hasher()
            self._raise_failure()
        elif fsync_failure is None:  # else __aexit__ stops the helper
            self._helper = None
            self._digest = self._digest_from(helper)
            self._hashed = self._written
        if fsync_failure is not None:
            raise self._error(fsync_failure, "write") from fsync_failure
        if not self._hashed == self._written == self._size:  # every byte, read back
            raise StorageError(
                f"Only {self._hashed} of {self._size} bytes of {self.name} were saved."
            )
        return self._commit()

    def _digest_from(self, helper: HashHelper) -> str:
        """Blocking: the helper's digest of the whole file or, if it has none, one made
        here by reading the file back; the helper goes back to the pool (or is stopped)."""
        try:
            return helper.finish(self._written)
        except HelperError as exc:
            logger.warning("%s; hashing %s in-process", exc, self.name)
            return self._hash_file()
        finally:
            pool = self._out._helpers
            if pool is not None:
                pool.release(helper)
            else:
                helper.close()

    def _hash_file(self) -> str:
        """Blocking: sha256 of the temp file's first ``size`` bytes, read back in spans."""
        if self._reader is None:
            raise StorageError("The video file is not open.")
        digest = hashlib.sha256()
        reader = io.FileIO(self._reader, "rb", closefd=False)
        reader.seek(0)
        with memoryview(bytearray(self._span)) as view:
            done = 0
            while done < self._size:
                length = min(len(view), self._size - done)
                self._read_back(reader, view, length)
                with view[:length] as span:
                    digest.update(span)
                done += length
        return digest.hexdigest()

    def _commit(self) -> StoredFile:
        """Publish the fsynced temp file under the first free name."""
        fd, tmp, directory = self._fd, self._tmp, self._dir
        if fd is None or tmp is None or directory is None:
            raise StorageError("The video file is not open.")
        self._fd = None
        try:
            os.close(fd)
        except OSError as exc:
            raise self._error(exc, "write") from exc
        final = self._publish(tmp, directory)
        self._tmp = None
        with contextlib.suppress(OSError):  # already published under its final name
            os.unlink(tmp)
        _fsync_dir(directory)
        digest = self._digest if self._digest is not None else self._hash.hexdigest()
        self._stored = StoredFile(path=final, size_bytes=self._size, sha256=digest)
        return self._stored

    def _publish(self, tmp: Path, directory: Path) -> Path:
        stem = self.name[: -len(VIDEO_SUFFIX)]
        if Path(os.path.realpath(directory)) != directory:
            # The directory resolved at open time now leads elsewhere (a swapped symlink).
            raise StorageError(
                f"The output dir {directory} changed while the video was being written; "
                "nothing was saved."
            )
        for i in range(MAX_UNIQUE_TRIES):
            final = directory / (self.name if i == 0 else f"{stem}-{i}{VIDEO_SUFFIX}")
            if final.parent != directory or final.name.startswith("."):
                raise StorageError(f"Refusing to save {final.name!r} outside {directory}.")
            try:
                if self._place(tmp, final):
                    return final
            except OSError as exc:
                raise self._error(exc, "save") from exc
        raise StorageError(
            f"Could not find a free name for {self.name} in {directory} after "
            f"{MAX_UNIQUE_TRIES} tries; pass another filename."
        )

    def _place(self, tmp: Path, final: Path) -> bool:
        """Put ``tmp``'s content at ``final`` unless ``final`` exists; False if it does."""
        link = self._out._link
        if link is not None:
            try:
                link(str(tmp), str(final))
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                self._out._link = None  # this filesystem has no hard links
            else:
                return True
        return _place_without_link(tmp, final)


def _place_without_link(tmp: Path, final: Path) -> bool:
    if os.name == "nt":
        try:
            os.rename(tmp, final)  # refuses to replace an existing file on Windows
        except FileExistsError:
            return False
        return True
    # Reserve the name with O_EXCL (never clobbers), then move the finished file onto
    # our own empty placeholder.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(final, flags, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    try:
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(final)
        raise
    return True
