"""Saved files read back only once checked: the file is what was saved, and in the folder.

A path in the journal is a claim, not a fact: the file may since have been overwritten
(even with bytes of the same size), swapped for a symlink leading out of the output
folder, or moved. So a saved video is

* **opened without following links, inside the held folder**: the folder is opened and
  its identity checked against the one held since start-up, then the name is opened
  relative to that folder's descriptor with ``O_NOFOLLOW``; a symlink, a folder or a
  device under the name is refused, and nothing outside is read through it;
* **verified on the open descriptor**: cheaply by its identity (``st_dev``, ``st_ino``,
  size, ``mtime_ns``, ``ctime_ns``, as recorded when it was saved; ``ctime`` cannot be
  set back the way ``mtime`` can), fully (its sha256 computed again) when the identity
  differs or was never recorded;
* **read through that same descriptor** (:class:`HeldFile`), so what was verified is what
  FFmpeg decodes, whatever the name leads to meanwhile.

Blocking: call from a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Final

from ..errors import GravitexError

if TYPE_CHECKING:
    from .storage import OutputDir

_READ_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO planted under the name must not hang the open
)
_HASH_CHUNK: Final = 1 << 20


class SavedFileChangedError(GravitexError):
    """A saved file is no longer the one saved, and it could not be fetched again."""


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file a name led to, and in which state: what a replaced or rewritten file
    cannot keep (a new inode, or a new ``ctime`` for one rewritten in place)."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> FileIdentity:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def text(self) -> str:
        """The form the journal keeps: ``dev:ino:size:mtime_ns:ctime_ns``."""
        return f"{self.dev}:{self.ino}:{self.size}:{self.mtime_ns}:{self.ctime_ns}"

    @classmethod
    def parse(cls, text: str | None) -> FileIdentity | None:
        """The identity :meth:`text` wrote; ``None`` for none or a damaged one."""
        parts = (text or "").split(":")
        if len(parts) != 5 or not all(p.isdigit() for p in parts):
            return None
        dev, ino, size, mtime_ns, ctime_ns = (int(p) for p in parts)
        return cls(dev, ino, size, mtime_ns, ctime_ns)


def sha256_of_fd(fd: int) -> str:
    """The sha256 (hex) of the whole file open at ``fd``, read from its start."""
    digest = hashlib.sha256()
    with os.fdopen(os.dup(fd), "rb") as file:
        file.seek(0)
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HeldFile:
    """A checked file, open: read it through :meth:`reader`, never by its path again.

    ``path`` names it in messages; ``location`` says where files made from it (frames,
    a contact sheet) go (:class:`~gravitex_mcp.store.seam.Stills`). Close it (or use it
    as a context manager) when done.
    """

    def __init__(
        self, path: Path, fd: int, identity: FileIdentity, *, location: Path | str | None = None
    ) -> None:
        self.path = path
        self._fd: int | None = fd
        self.identity = identity
        #: Where it is saved (its path, or an object's ``s3://`` URI): where stills go.
        self.location: Path | str = path if location is None else location

    def reader(self) -> BinaryIO:
        """A new file object on this file, at its start (one at a time: they share the
        descriptor's offset)."""
        if self._fd is None:
            raise ValueError(f"{self.path.name} is closed")
        file = os.fdopen(os.dup(self._fd), "rb")
        file.seek(0)
        return file

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> HeldFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Changed:
    """Why the file at ``path`` is not the one saved (a sentence to show)."""

    path: Path
    why: str

    def sentence(self) -> str:
        return f"The saved copy at {self.path} {self.why}"


def _open_in_folder(out: OutputDir, path: Path) -> int | Changed | None:
    """A descriptor of the regular file ``path`` directly inside ``out``; ``None`` when
    nothing is there; :class:`Changed` when something else is (a symlink, ...)."""
    folder_fd, directory = out.open_folder()
    try:
        if path.parent != directory or path.name in ("", ".", ".."):
            return Changed(path, f"is not in the output folder {directory} (was it moved?).")
        try:
            if os.open in os.supports_dir_fd:
                fd = os.open(path.name, _READ_FLAGS, dir_fd=folder_fd)
            else:  # pragma: no cover - Windows: no dir_fd (and no symlinks by default)
                fd = os.open(directory / path.name, _READ_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):  # O_NOFOLLOW met a symlink
                return Changed(path, "was replaced by a symbolic link; it is not followed.")
            return Changed(path, f"cannot be read ({exc.strerror or exc}).")
    finally:
        os.close(folder_fd)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return Changed(path, "is no longer a regular file.")
    with contextlib.suppress(OSError):
        os.set_blocking(fd, True)
    return fd


def open_saved(
    out: OutputDir,
    path: Path,
    *,
    size: int,
    sha256: str,
    recorded: FileIdentity | None,
) -> HeldFile | Changed | None:
    """The file saved at ``path`` (``size`` bytes, ``sha256``), open and verified; its
    :attr:`HeldFile.identity` is the one to record when it differs from ``recorded``.

    ``None`` when nothing is there any more; :class:`Changed` (saying why) when what is
    there is not that file. Raises :class:`~gravitex_mcp.errors.StorageError` when the
    output folder itself changed.
    """
    opened = _open_in_folder(out, path)
    if not isinstance(opened, int):
        return opened
    held = HeldFile(path, opened, FileIdentity.of(os.fstat(opened)))
    try:
        if held.identity == recorded:
            return held  # the very file written, untouched since
        if held.identity.size != size:
            held.close()
            return Changed(
                path, f"changed since it was saved ({held.identity.size} bytes, not {size})."
            )
        if sha256_of_fd(opened) != sha256:
            held.close()
            return Changed(
                path, "changed since it was saved (same size, other bytes: its sha256 differs)."
            )
    except BaseException:
        held.close()
        raise
    return held


def read_regular(path: Path, *, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, never through a symlink under its name
    (raises ``OSError``: ``ELOOP`` for a link, ``EINVAL`` for a folder, FIFO or device,
    ``EFBIG`` past ``limit`` bytes). For the small files saved beside a video."""
    fd = os.open(path, _READ_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as file:
            return file.read(limit + 1)[:limit]
    finally:
        os.close(fd)


def identity_of_fd(fd: int) -> FileIdentity:
    """The identity of the file open at ``fd`` (taken once it is in place: linking a
    file changes its ``ctime``)."""
    return FileIdentity.of(os.fstat(fd))
