"""Saving a video under the output directory, safely.

* :func:`safe_filename` reduces a caller-supplied name to a plain base name ending in
  ``.mp4`` (no directories, no ``..``, no control or reserved characters, no leading dot,
  bounded length).
* :class:`OutputDir` creates the directory if it is missing and hands out
  :class:`VideoFile` writers. A writer streams into a temporary file **inside** the
  output directory (``.<stem>.<random>.part``, created with ``O_EXCL``, mode 0o644).
  Bytes are hashed (sha256) as they arrive and gathered, without copying, into batches
  (about 1/128 of the expected size, 128 KiB..2 MiB) that a dedicated writer thread
  writes while the event loop goes on receiving; at most :data:`QUEUE_DEPTH` batches
  wait, so memory stays bounded and the event loop never blocks on the disk. On Linux
  the write-back of what was written is started every :data:`WRITEBACK_EVERY_BYTES`
  (``posix_fadvise(DONTNEED)``), so the final fsync is short and a big video does not
  crowd the page cache.
  :meth:`VideoFile.commit` flushes, fsyncs the file, then
  publishes it **without ever overwriting**: ``os.link(temp, final)`` fails when
  ``final`` exists, so the next free name (``name-1.mp4``, ``name-2.mp4``, ...) is tried;
  the temp name is then unlinked and the directory fsynced. Where hard links are not
  supported it falls back to ``os.rename`` on Windows (which refuses to replace) and
  elsewhere to an ``O_EXCL`` placeholder replaced by the finished file.
* Any failure (disk full, read-only directory, a cut stream, cancellation) removes the
  temp file, and OS errors become a :class:`~gravitex_mcp.errors.StorageError` that
  says what to do. Nothing is ever left under a final name unless it is complete.

The OS functions are injectable (``write``, ``fsync``, ``link``, ``open_file``) so tests
can simulate a full disk, a read-only directory or a filesystem without hard links.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import re
import secrets
import sys
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import anyio
import anyio.lowlevel
import anyio.to_thread

from .errors import StorageError

#: Extension every saved video gets.
VIDEO_SUFFIX: Final = ".mp4"
#: Longest stem (UTF-8 bytes) kept from a caller's name; leaves room for ``-NNNN``,
#: the temp-name decoration and the 255-byte name limit of common filesystems.
MAX_STEM_BYTES: Final = 160
#: Largest batch handed to the writer thread (see :meth:`VideoFile.expect_size`).
DEFAULT_BATCH_BYTES: Final = 2 << 20
#: Smallest batch when the file's size is known.
MIN_BATCH_BYTES: Final = 128 << 10
#: Write-back of the temp file is started every this many bytes (Linux).
WRITEBACK_EVERY_BYTES: Final = 8 << 20
#: Batch when the file's size is not known.
UNKNOWN_SIZE_BATCH_BYTES: Final = 1 << 20
#: Batches that may wait for the writer thread.
QUEUE_DEPTH: Final = 2
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

_IOV_MAX: Final = 512  # below every platform's IOV_MAX (1024 on Linux)
_FADVISE = getattr(os, "posix_fadvise", None) if sys.platform == "linux" else None
_DONTNEED: Final = getattr(os, "POSIX_FADV_DONTNEED", 4)

WriteFn = Callable[[int, memoryview], int]
WritevFn = Callable[[int, Sequence[bytes]], int]
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
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        write: WriteFn = os.write,
        fsync: FsyncFn = os.fsync,
        link: LinkFn | None = os.link,
        open_file: OpenFn = os.open,
        early_writeback: bool = True,
    ) -> None:
        self.path = Path(path).expanduser()
        self.batch_bytes = max(1, batch_bytes)
        self._write = write
        # one writev per batch, unless a test replaced ``write``
        self._writev: WritevFn | None = getattr(os, "writev", None) if write is os.write else None
        self._fsync = fsync
        self._link = link
        self._open_file = open_file
        self._fadvise = _FADVISE if early_writeback else None

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


class VideoFile:
    """One video being written: ``async with out.video(...) as f: await f.write(b); await
    f.commit()``.

    Bytes are hashed (sha256) as they are accepted and gathered into batches; a dedicated
    writer thread writes each batch (one ``writev``) while the event loop goes on
    receiving (at most :data:`QUEUE_DEPTH` batches wait for it, so memory stays bounded).
    Leaving the block without a successful
    :meth:`commit` (an exception, a cancellation, or simply not committing) stops the
    writer and removes the temp file.
    """

    def __init__(self, out: OutputDir, name: str) -> None:
        self._out = out
        self.name = name
        self._dir: Path | None = None
        self._tmp: Path | None = None
        self._fd: int | None = None
        self._buf: list[bytes] = []  # chunks of the batch being gathered (not copied)
        self._buffered = 0
        self._batch = min(out.batch_bytes, UNKNOWN_SIZE_BATCH_BYTES)
        self._hash = hashlib.sha256()
        self._size = 0  # bytes accepted (buffered, queued or written)
        self._written = 0  # bytes written to the temp file (writer thread)
        self._advised = 0  # bytes whose write-back was started (writer thread)
        self._stored: StoredFile | None = None
        self._queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._writer: threading.Thread | None = None
        self._abort = threading.Event()
        self._failure: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> VideoFile:
        await anyio.to_thread.run_sync(self._open)
        writer = threading.Thread(
            target=self._write_loop, name=f"gravitex-writer:{self.name}", daemon=True
        )
        try:
            writer.start()
        except BaseException:
            self._discard()
            raise
        self._writer = writer
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._writer is not None:
            self._abort.set()
            # Shielded: even a cancelled task waits for the batch being written, so
            # nothing writes to the file once it is removed below.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._stop_writer)
        self._discard()  # synchronous: runs even while the task is being cancelled

    def _open(self) -> None:
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
            self._dir, self._tmp = directory, tmp
            return
        raise StorageError(f"Could not find a free temporary name in {directory}.")

    def _discard(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            with contextlib.suppress(OSError):  # best effort: a dot name ending in .part
                os.unlink(tmp)
        self._buf = []
        self._buffered = 0

    # --- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._failure is None and not self._abort.is_set():
                    self._write_data(item)
            except BaseException as exc:  # noqa: BLE001  (re-raised in the foreground)
                self._failure = exc
            finally:
                self._queue.task_done()

    def _stop_writer(self) -> None:
        """Blocking: end the writer thread once the queued batches are done (or dropped)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._queue.put(None)  # the writer always drains, so this never blocks for long
        writer.join()

    def _write_data(self, batch: list[bytes]) -> None:
        """Write one batch, then start its write-back early (writer thread)."""
        fd = self._fd
        if fd is None:
            raise StorageError("The video file is not open.")
        total = sum(len(chunk) for chunk in batch)
        writev = self._out._writev
        try:
            done = 0
            if writev is not None:
                for start in range(0, len(batch), _IOV_MAX):
                    part = batch[start : start + _IOV_MAX]
                    wrote = writev(fd, part)
                    done += wrote
                    if wrote < sum(len(chunk) for chunk in part):
                        break  # a short write: finish in order below
            if done < total:  # no writev, or a short one: the rest chunk by chunk
                self._write_from(fd, batch, done)
        except OSError as exc:
            raise self._error(exc, "write") from exc
        self._written += total
        fadvise = self._out._fadvise
        if fadvise is not None and self._written - self._advised >= WRITEBACK_EVERY_BYTES:
            # Linux starts writing these pages back now (and drops them from the cache
            # once clean), so the final fsync has little left to wait for.
            with contextlib.suppress(OSError):
                fadvise(fd, self._advised, self._written - self._advised, _DONTNEED)
            self._advised = self._written

    def _write_from(self, fd: int, batch: list[bytes], skip: int) -> None:
        """``write`` every byte of ``batch`` after the first ``skip`` ones."""
        write = self._out._write
        for chunk in batch:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            offset, end = skip, len(chunk)
            skip = 0
            with memoryview(chunk) as view:
                while offset < end:
                    written = write(fd, view[offset:])
                    if written <= 0:
                        raise OSError(errno.EIO, "write made no progress")
                    offset += written

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    # --- writing -------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes accepted so far (written, queued or buffered)."""
        return self._size

    @property
    def pending(self) -> int:
        """Bytes buffered, not yet handed to the writer thread."""
        return self._buffered

    @property
    def batch_bytes(self) -> int:
        """Bytes gathered before a batch goes to the writer thread."""
        return self._batch

    @property
    def temp_path(self) -> Path | None:
        """The temporary file (inside the output dir) while the writer is open."""
        return self._tmp

    def expect_size(self, size: int | None) -> None:
        """Size batches for a file of about ``size`` bytes (``None``: unknown).

        About 1/128 of the file (between :data:`MIN_BATCH_BYTES` and the output dir's
        ``batch_bytes``): few hand-offs for a large file (each costs the writer thread a
        wake-up and a few GIL round trips), little memory for a small one (about four
        batches are alive at most: the one gathered, :data:`QUEUE_DEPTH` queued, the one
        being written).
        """
        if size is None or size < 0:
            self._batch = min(self._out.batch_bytes, UNKNOWN_SIZE_BATCH_BYTES)
        else:
            self._batch = min(self._out.batch_bytes, max(MIN_BATCH_BYTES, size // 128))

    def buffer(self, data: bytes | bytearray | memoryview) -> None:
        """Append to the batch being gathered (no I/O); call :meth:`flush_if_full` after.

        Usable as a synchronous sink, e.g. for :class:`~gravitex_mcp.b64stream.SoraDownloadDecoder`.
        """
        if self._fd is None:
            raise StorageError("The video file is not open.")
        if not data:
            return
        chunk = data if isinstance(data, bytes) else bytes(data)  # keep immutable chunks only
        self._hash.update(chunk)  # here: the writer thread is kept free for the disk
        self._buf.append(chunk)
        self._buffered += len(chunk)
        self._size += len(chunk)

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer ``data``; hand a batch to the writer thread once it is full."""
        self.buffer(data)
        await self.flush_if_full()

    async def flush_if_full(self) -> None:
        """Hand the gathered batch to the writer thread once it is full.

        Returns at once unless :data:`QUEUE_DEPTH` batches already wait for the writer;
        raises the writer's error, if it failed.
        """
        if self._buffered >= self._batch:
            await self._hand_off()
        else:
            self._raise_failure()

    async def flush(self) -> None:
        """Write everything buffered and wait until it is written."""
        await self._hand_off()
        if self._writer is not None:
            await anyio.to_thread.run_sync(self._queue.join)
        self._raise_failure()

    async def _hand_off(self) -> None:
        self._raise_failure()
        if not self._buf:
            return
        if self._writer is None:
            raise StorageError("The video file is not open.")
        data, self._buf, self._buffered = self._buf, [], 0
        try:
            self._queue.put_nowait(data)
        except queue.Full:  # the writer is behind: wait for it without blocking the loop
            await anyio.to_thread.run_sync(self._queue.put, data)
        else:
            await anyio.lowlevel.checkpoint()  # once per batch: cancellation can land here

    def _error(self, exc: OSError, action: str) -> StorageError:
        directory = self._dir or self._out.path
        return _storage_error(exc, name=self.name, directory=directory, action=action)

    # --- publishing ------------------------------------------------------------------

    async def commit(self) -> StoredFile:
        """Flush, fsync and publish under the first free name; returns the final file."""
        await self.flush()
        await anyio.to_thread.run_sync(self._stop_writer)
        self._raise_failure()
        return await anyio.to_thread.run_sync(self._commit)

    def _commit(self) -> StoredFile:
        fd, tmp, directory = self._fd, self._tmp, self._dir
        if fd is None or tmp is None or directory is None:
            raise StorageError("The video file is not open.")
        try:
            self._out._fsync(fd)
        except OSError as exc:
            raise self._error(exc, "write") from exc
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
        self._stored = StoredFile(path=final, size_bytes=self._size, sha256=self._hash.hexdigest())
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
