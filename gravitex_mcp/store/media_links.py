"""Capability links to the files in the output folder: minted and checked here, served
by ``server/media.py``.

A browser ``<video>`` cannot send a bearer token, so the link itself is the
credential: ``/media/<token>/<name>``, where ``token`` is an HMAC of the file's
identity (its path inside the output folder, its device and inode, size, and
modification and change times) under a secret kept in the state folder (mode 0600;
deleting it revokes every link at once, a restart keeps them working), or, with
``GRAVITEX_SERVER_SECRET``, a key derived from it, so every replica honours the links
any other handed out (:func:`link_key`). A file is
reached one name at a time from the folder's descriptor, never through a link.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ..domain import LOCAL_USER, USERS_FOLDER
from ..errors import ConfigurationError
from ..settings import derive_key
from .ondisk import FileIdentity
from .tempfiles import link_or_reserve

KEY_FILE = "media-links.key"
KEY_BYTES = 32
#: The route prefix, on the HTTP transports and on the loopback media server.
MEDIA_PREFIX = "/media/"
#: 144 bits of HMAC in the link: far beyond guessing, short enough to read.
TOKEN_BYTES = 18


def load_or_create_key(state_dir: Path) -> bytes:
    """The link secret in ``state_dir``, created (mode 0600) on first use.

    Written under a temporary name and linked into place without clobbering, so
    two servers starting together agree on one key and neither reads half a file.
    """
    path = state_dir / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot read the media link key {path} ({exc.strerror or exc}); "
            "set GRAVITEX_STATE_DIR to a folder you can write."
        ) from exc
    if len(key) == KEY_BYTES:
        return key
    state_dir.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_bytes(KEY_BYTES)
    temp = state_dir / f".{KEY_FILE}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(fresh)
            handle.flush()
            os.fsync(handle.fileno())
        if key:  # a damaged key (wrong length): replace it, old links die with it
            os.replace(temp, path)
            return fresh
        if not link_or_reserve(temp, path):
            return path.read_bytes()  # another server made it first: one key for both
        return fresh
    except OSError as exc:
        raise ConfigurationError(
            f"Cannot write the media link key in {state_dir} ({exc.strerror or exc}); "
            "set GRAVITEX_STATE_DIR to a folder you can write."
        ) from exc
    finally:
        temp.unlink(missing_ok=True)


def link_key(state_dir: Path, server_secret: str | None) -> bytes:
    """The media links' key: derived from the server secret when there is one (the
    same on every replica), else the state folder's own (blocking: it may write it)."""
    if server_secret:
        return derive_key(server_secret, "media-links/v1")
    return load_or_create_key(state_dir)


class MediaLinks:
    """Mints and checks capability links to files under one output folder.

    ``base_url`` is where the media route is reachable when that is fixed (the
    public URL behind a proxy, or the loopback media server once started);
    otherwise links are built from the Host a request came in on.
    """

    def __init__(self, *, key: bytes, output_dir: Path, public_url: str | None = None) -> None:
        if len(key) < 16:
            raise ValueError("a media link key needs at least 16 bytes")
        self._key = key
        self._root = output_dir.resolve()
        self._public_url = public_url.rstrip("/") if public_url else None
        self.base_url: str | None = self._public_url
        #: Starts the server of ``base_url`` when it runs on demand (the loopback one).
        self.start_serving: Callable[[], Awaitable[None]] | None = None
        #: whose files links are minted for (see :meth:`for_user`)
        self._owner = LOCAL_USER

    def for_user(self, storage_name: str) -> MediaLinks:
        """These links for one user: only that user's files get a link (``users/<name>/``
        in the folder; the local user: the folder without ``users/``). The user is bound
        into each token, so a link minted for one user never serves another's file."""
        view = copy.copy(self)
        view._owner = storage_name
        return view

    @staticmethod
    def _owner_of(relative: str) -> str | None:
        """Whose file ``relative`` (a path in the folder) is; None: nobody's."""
        parts = PurePosixPath(relative).parts
        if not parts or parts[0] != USERS_FOLDER:
            return LOCAL_USER
        if len(parts) < 3 or parts[1] == LOCAL_USER:
            return None  # users/<file>, or a folder posing as the local user's
        return parts[1]

    async def ready(self) -> None:
        """Make sure the links minted from now on can be fetched: await it before
        handing a link out (the loopback media server starts at the first call)."""
        if self.start_serving is not None:
            await self.start_serving()

    @property
    def output_dir(self) -> Path:
        return self._root

    def _token(self, relative: str, identity: FileIdentity) -> str:
        owner = self._owner_of(relative)
        if owner == LOCAL_USER:  # as before users: the local user's links stay valid
            message = f"gravitex-media-v2\0{relative}\0{identity.text()}".encode()
        else:
            message = f"gravitex-media-v3\0{owner}\0{relative}\0{identity.text()}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:TOKEN_BYTES]
        return base64.urlsafe_b64encode(digest).decode("ascii")

    def _relative(self, path: Path) -> str | None:
        try:
            relative = path.resolve().relative_to(self._root)
        except (OSError, ValueError):
            return None
        return relative.as_posix()

    def path_for(self, path: Path) -> str | None:
        """``/media/<token>/<name>`` for a file the server saved, or ``None`` when
        ``path`` is not a regular file inside the output folder."""
        relative = self._relative(path)
        if relative is None or relative == ".":
            return None
        if self._owner_of(relative) != self._owner:
            return None  # never a link to another user's file
        identity = self._identity_beneath(PurePosixPath(relative).parts)
        if identity is None:
            return None
        token = self._token(relative, identity)
        return f"{MEDIA_PREFIX}{token}/{quote(relative)}"

    def url_for(self, path: Path, *, request_host: str | None = None) -> str | None:
        """The full link to ``path``: on ``base_url`` when set, else on the Host the
        current HTTP request came in on; ``None`` when neither is known."""
        route = self.path_for(path)
        if route is None:
            return None
        base = self.base_url or (f"http://{request_host}" if request_host else None)
        return None if base is None else base + route

    def resolve(self, token: str, name: str) -> Path | None:
        """The file a link names, if the link is genuine and the file is still the one
        it was minted for; ``None`` (a 404) otherwise."""
        if not token or not name or "\0" in name or "\\" in name:
            return None
        pure = PurePosixPath(name)
        if pure.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
            return None
        if self._owner_of(pure.as_posix()) is None:
            return None
        identity = self._identity_beneath(pure.parts)
        if identity is None:
            return None
        expected = self._token(pure.as_posix(), identity)
        if not hmac.compare_digest(expected.encode(), token.encode()):
            return None
        return self._root.joinpath(*pure.parts)

    def _identity_beneath(self, parts: tuple[str, ...]) -> FileIdentity | None:
        """The identity of the regular file at ``parts`` under the folder, reached one
        name at a time from the folder's descriptor without following any symlink
        (blocking); ``None`` when there is none, or the way leads through a link."""
        nofollow = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        directory = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | nofollow
        if not parts or os.open not in os.supports_dir_fd:  # pragma: no cover - Windows
            return None
        try:
            fd = os.open(self._root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return None
        try:
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                # O_NONBLOCK: a FIFO planted under the name must not hang the check.
                flags = os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0) if last else directory
                following = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = following
            info = os.fstat(fd)
        except OSError:
            return None
        finally:
            os.close(fd)
        return FileIdentity.of(info) if stat.S_ISREG(info.st_mode) else None
