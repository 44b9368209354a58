"""The output folder: safe names, a temp file written and hashed, a no-clobber publish.

* :class:`OutputDir` creates the folder if missing, then **holds** it: its resolved path
  and identity (``st_dev``, ``st_ino``) are fixed at first use (start-up, in the server);
  a path that later leads elsewhere (the folder swapped for a symlink) is refused.
* :class:`VideoFile` writes one video into ``.<stem>.<random>.part`` in the folder
  (``O_EXCL | O_NOFOLLOW``, 0o644, an exclusive ``flock`` held while it is written, so a
  start-up sweep can tell live temp files from leftovers) and hashes each piece as it
  writes it. :meth:`VideoFile.commit` fsyncs, then publishes with ``os.link`` (which
  never replaces: a taken name moves on to ``name-1.mp4``, ...; the rule is
  :mod:`.tempfiles`'). Any failure removes the
  temp file; OS errors become a :class:`~gravitex_mcp.errors.StorageError` saying what
  to do. The OS calls are injectable to simulate full, read-only or link-less disks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import anyio
import anyio.lowlevel
import anyio.to_thread

from ..domain import LOCAL_USER, USERS_FOLDER, user_folder
from ..errors import StorageError
from .ondisk import Changed, FileIdentity, HeldFile, identity_of_fd, open_saved
from .seam import StoredFile
from .stills import find_still, save_new, save_or_reuse
from .tempfiles import OpenFn, create_temp, place_without_link, publish_first_free, sweep_temp_files

logger = logging.getLogger(__name__)

#: Extension every saved video gets.
VIDEO_SUFFIX: Final = ".mp4"
#: Longest stem (UTF-8 bytes) kept from a caller's name; leaves room for ``-NNNN``,
#: the temp-name decoration and the 255-byte name limit of common filesystems.
MAX_STEM_BYTES: Final = 160

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

WriteFn = Callable[[int, bytes | bytearray | memoryview], int]
FsyncFn = Callable[[int], None]
LinkFn = Callable[[str, str], None]


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


def _local_path(location: str) -> Path:
    """The path a ``file://`` URI (or a plain path's text) names."""
    if location.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return Path(unquote(urlsplit(location).path))
    return Path(location)


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class LocalFile(StoredFile):
    """A file published in the output folder: it always has a local path."""

    path: Path


class OutputDir:
    """The folder videos are saved in, held from its first use; hands out writers."""

    def __init__(
        self,
        path: Path,
        *,
        write: WriteFn = os.write,
        fsync: FsyncFn = os.fsync,
        link: LinkFn | None = os.link,
        open_file: OpenFn = os.open,
    ) -> None:
        self.path = Path(path).expanduser()
        self._write = write
        self._fsync = fsync
        self._link = link
        self._open_file = open_file
        self._held: tuple[Path, int, int] | None = None  # resolved path, st_dev, st_ino
        self._writing: set[VideoFile] = set()  # open writers, for bytes_so_far
        self._users: dict[str, OutputDir] = {}  # each user's folder, held from first use

    def for_user(self, storage_name: str) -> OutputDir:
        """The folder of ``storage_name``'s files: this one for the local user, else
        ``users/<storage name>/`` in it (made, and held, at its first use)."""
        if storage_name == LOCAL_USER:
            return self
        folder = self._users.get(storage_name)
        if folder is None:
            folder = OutputDir(
                user_folder(self.path, storage_name),
                write=self._write,
                fsync=self._fsync,
                link=self._link,
                open_file=self._open_file,
            )
            self._users[storage_name] = folder
        return folder

    def ensure(self) -> Path:
        """The folder's resolved path (blocking): created and held on the first call;
        later calls refuse a path that now leads to another folder."""
        if self._held is None or not os.path.lexists(self.path):
            self._hold()  # first use, or the folder was removed: (re)create it
        assert self._held is not None
        resolved, dev, ino = self._held
        try:
            st, now = os.stat(self.path), Path(os.path.realpath(self.path))
        except OSError:
            st, now = None, None
        if st is None or now != resolved or (st.st_dev, st.st_ino) != (dev, ino):
            raise StorageError(
                f"The output dir {self.path} changed while this server was running (it "
                f"now leads to {now or 'nothing usable'}, not {resolved}): refusing to "
                "save there; nothing was saved. Restore the folder or restart the server."
            )
        return resolved

    def open_folder(self) -> tuple[int, Path]:
        """A descriptor of the folder (the caller closes it) and its resolved path
        (blocking). The descriptor is checked to be the held folder itself, so names
        opened relative to it cannot lead elsewhere, whatever a path does meanwhile."""
        resolved = self.ensure()
        assert self._held is not None
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(resolved, flags)
        except OSError as exc:
            raise StorageError(
                f"Cannot open the output dir {resolved} ({exc.strerror or exc}); set "
                "GRAVITEX_OUTPUT_DIR to a directory this server can read and write."
            ) from exc
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != self._held[1:]:
            os.close(fd)
            raise StorageError(
                f"The output dir {self.path} changed while this server was running: "
                "refusing to read from it. Restore the folder or restart the server."
            )
        return fd, resolved

    def _hold(self) -> None:
        path = self.path
        try:
            path.mkdir(parents=True, exist_ok=True)
            # The first resolution stands: a folder made again must be in the same place.
            resolved = self._held[0] if self._held else path.resolve()
            st = os.stat(resolved)
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
        if not stat.S_ISDIR(st.st_mode):
            raise StorageError(
                f"The output dir {path} is not a directory; set GRAVITEX_OUTPUT_DIR to one."
            )
        self._held = (resolved, st.st_dev, st.st_ino)

    def reserve(self, filename: str | None, *, default_stem: str) -> VideoFile:
        """A writer for one video; use as ``async with``; call :meth:`VideoFile.commit`."""
        return VideoFile(self, safe_filename(filename, default_stem=default_stem))

    def bytes_so_far(self, filename: str | None, *, default_stem: str) -> int | None:
        """The most any open writer of that name in this process has written; None
        when none is open."""
        name = safe_filename(filename, default_stem=default_stem)
        sizes = [w.bytes_written for w in self._writing if w.name == name]
        return max(sizes) if sizes else None

    def open_checked(
        self, path: Path | str, *, size: int, sha256: str, recorded: FileIdentity | None
    ) -> HeldFile | Changed | None:
        """:func:`~gravitex_mcp.store.ondisk.open_saved` in this folder (blocking);
        ``path`` may be given as its ``file://`` URI."""
        if isinstance(path, str):
            path = _local_path(path)
        return open_saved(self, path, size=size, sha256=sha256, recorded=recorded)

    @contextlib.contextmanager
    def scratch(self, stem: str) -> Iterator[Path]:
        """A held temp file in the folder, for work written by path (the join's
        encoder); removed on exit. Blocking."""
        held, tmp = create_temp(self.ensure(), stem)
        try:
            yield tmp
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.close(held)

    def save_still(self, video: Path | str, name: str, data: bytes, *, reuse: bool = False) -> Path:
        """:func:`~gravitex_mcp.store.stills.save_new` (or ``save_or_reuse``) beside
        ``video`` (blocking)."""
        directory = _local_path(str(video)).parent
        return save_or_reuse(directory, name, data) if reuse else save_new(directory, name, data)

    def find_still(
        self,
        video: Path | str,
        name: str,
        *,
        made_ns: int,
        limit: int,
        usable: Callable[[bytes], bool],
    ) -> tuple[Path | str, bytes] | None:
        """:func:`~gravitex_mcp.store.stills.find_still` beside ``video`` (blocking)."""
        directory = _local_path(str(video)).parent
        return find_still(directory, name, made_ns=made_ns, limit=limit, usable=usable)

    def owns(self, location: str) -> bool:
        """False: the folder's files are inputs by path (``saved_dir``), not by URI."""
        return False

    def size_of(self, location: str) -> int | None:
        return None

    def read_saved(self, location: str, *, limit: int) -> bytes | None:
        return None

    def media_url(self, location: Path | str) -> str | None:
        """None: the server serves the folder's files itself (``MediaLinks``)."""
        return None

    def recover(self) -> list[Path]:
        """At start-up (blocking): create and hold the folder, and remove the temp files
        no live writer holds."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.ensure()
        except StorageError as exc:  # reported again by the first save
            logger.warning("%s", exc)
        removed = sweep_temp_files(self.path)
        users = self.path / USERS_FOLDER
        if users.is_dir() and not users.is_symlink():  # each user's folder too
            for folder in sorted(users.iterdir()):
                if folder.is_dir() and not folder.is_symlink():
                    removed.extend(sweep_temp_files(folder))
        return removed


class VideoFile:
    """One video being written: ``async with out.reserve(...) as f: f.put(b) ...; await
    f.commit()``.

    Each piece is written to the temp file and hashed on the spot (hashlib releases the
    GIL for large buffers). Leaving the block without a successful :meth:`commit` (an
    exception, a cancellation, or simply not committing) removes the temp file.
    """

    def __init__(self, out: OutputDir, name: str) -> None:
        self._out = out
        self.name = name
        self._dir: Path | None = None
        self._tmp: Path | None = None
        self._fd: int | None = None
        self._hash = hashlib.sha256()
        self._size = 0

    @property
    def bytes_written(self) -> int:
        """How much has been written so far."""
        return self._size

    async def __aenter__(self) -> VideoFile:
        self._out._writing.add(self)
        try:
            await anyio.to_thread.run_sync(self._create_temp)
        except BaseException:
            self._discard()  # a cancellation lands after the file was made
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._discard()  # synchronous: runs even while the task is being cancelled

    def _create_temp(self) -> None:
        directory = self._out.ensure()
        stem = self.name[: -len(VIDEO_SUFFIX)]
        try:
            # Held until the file is closed: a start-up sweep leaves locked temp files.
            fd, tmp = create_temp(directory, stem, open_file=self._out._open_file)
        except OSError as exc:
            raise _storage_error(
                exc, name=self.name, directory=directory, action="create a file for"
            ) from exc
        self._fd, self._dir, self._tmp = fd, directory, tmp

    def _discard(self) -> None:
        self._out._writing.discard(self)
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            with contextlib.suppress(OSError):  # best effort: a dot name ending in .part
                os.unlink(tmp)

    @property
    def temp_path(self) -> Path | None:
        """The temporary file (inside the output folder) while the writer is open."""
        return self._tmp

    def put(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` to the temp file and hash it (blocking; a page-cache write).

        Raises :class:`~gravitex_mcp.errors.StorageError` if the write fails.
        """
        fd = self._fd
        if fd is None:
            raise StorageError("The video file is not open.")
        with memoryview(data).cast("B") as view:
            try:
                done, end = 0, len(view)
                while done < end:
                    with view[done:] as rest:
                        written = self._out._write(fd, rest)
                    if written <= 0:
                        raise OSError(errno.EIO, "write made no progress")
                    done += written
            except OSError as exc:
                raise self._error(exc, "write") from exc
            self._hash.update(view)
        self._size += end

    async def drain(self) -> None:
        """Nothing is buffered (each put is a page-cache write): a checkpoint."""
        await anyio.lowlevel.checkpoint()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """:meth:`put`, then a cancellation checkpoint."""
        self.put(data)
        await anyio.lowlevel.checkpoint()

    def _error(self, exc: OSError, action: str) -> StorageError:
        directory = self._dir or self._out.path
        return _storage_error(exc, name=self.name, directory=directory, action=action)

    async def commit(self) -> LocalFile:
        """fsync and publish under the first free name; returns the final file."""
        if self._fd is None:
            raise StorageError("The video file is not open.")
        return await anyio.to_thread.run_sync(self._commit)

    def _commit(self) -> LocalFile:
        fd, tmp, directory = self._fd, self._tmp, self._dir
        if fd is None or tmp is None or directory is None:
            raise StorageError("The video file is not open.")
        try:
            if os.fstat(fd).st_size != self._size:
                raise StorageError(
                    f"{self.name} in {directory} shrank or grew while it was being written "
                    "(something else changed the temp file); nothing was saved."
                )
            self._out._fsync(fd)
        except OSError as exc:
            raise self._error(exc, "write") from exc
        self._out.ensure()  # raises when the folder was swapped
        final = self._publish(tmp, directory)
        self._tmp = None
        with contextlib.suppress(OSError):  # gone already when it was moved into place
            os.unlink(tmp)
        try:
            # Taken once the names are settled: linking and unlinking change its ctime.
            identity: FileIdentity | None = identity_of_fd(fd)
        except OSError:
            identity = None  # checked by its sha256 when reused
        self._discard()  # closes (and unlocks) the temp file, removes its name
        _fsync_dir(directory)
        return LocalFile(
            path=final,
            size_bytes=self._size,
            sha256=self._hash.hexdigest(),
            identity=identity,
            uri=final.as_uri(),
        )

    def _publish(self, tmp: Path, directory: Path) -> Path:
        try:
            return publish_first_free(tmp, directory, self.name, self._place)
        except OSError as exc:
            raise self._error(exc, "save") from exc

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
        return place_without_link(tmp, final)
