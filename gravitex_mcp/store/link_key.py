"""The secret the media links are signed with, kept in the state folder (mode 0600).

Deleting the file revokes every link at once; a restart keeps them working.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from ..errors import ConfigurationError
from .tempfiles import link_or_reserve

KEY_FILE = "media-links.key"
KEY_BYTES = 32


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
