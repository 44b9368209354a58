"""Local files: read only from inside the allowed folders, bounded, typed by their bytes.

Only inside ``input_dirs`` (``GRAVITEX_INPUT_DIRS``) or the output folder; a relative
path is looked up in each folder in order. With every symlink followed it must land
inside one of them, be a regular
file of at most :data:`~.media.MAX_MEDIA_BYTES` (at most the limit + 1 bytes are ever
read) and hold what its kind accepts, judged by its bytes, not its name. It travels as
a data URL.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ...domain import USERS_FOLDER
from ...images import describe_bytes, sniff_image_type
from ...redact import clip
from .audio import AUDIO_TYPES_TEXT
from .media import (
    IMAGE_TYPES_TEXT,
    LIMIT_TEXT,
    MAX_MEDIA_BYTES,
    MEDIA_LIMIT,
    VALID_IMAGE,
    MediaKind,
    ResolvedMedia,
    data_url,
    echo,
    held_audio,
    held_media,
    megabytes,
    os_reason,
    refuse,
)


def locate_path(
    value: str,
    *,
    field: str,
    kind: MediaKind,
    input_dirs: Sequence[Path],
    saved_dir: Path | None,
) -> tuple[Path, int, tuple[Path, ...]]:
    """The file ``value`` names, checked without reading it: its resolved path, its
    size, and the folders it may be read from."""
    shown = echo(value)
    types_text = IMAGE_TYPES_TEXT if kind == "image" else AUDIO_TYPES_TEXT
    if not input_dirs and saved_dir is None:
        refuse(
            field,
            f"{shown} looks like a local path, but local files are disabled: "
            f"GRAVITEX_INPUT_DIRS is not set. Set GRAVITEX_INPUT_DIRS to the folder(s) holding "
            f"your {kind} files, or pass an https:// URL instead",
        )
    if "\x00" in value:
        refuse(field, f"{shown} contains a NUL character; {VALID_IMAGE}")
    roots = _resolved_roots([*input_dirs, *([saved_dir] if saved_dir is not None else [])])
    # Other users' folders inside the output folder are never this caller's input (the
    # local user's output folder holds every other user's): only an input folder may.
    walled = _resolved_roots([saved_dir / USERS_FOLDER]) if saved_dir is not None else []
    given_roots = _resolved_roots(list(input_dirs))

    def inside(path: Path) -> bool:
        return _inside(path, roots) and (_inside(path, given_roots) or not _inside(path, walled))

    if not roots:
        refuse(field, f"{shown}: none of the GRAVITEX_INPUT_DIRS can be used; {VALID_IMAGE}")
    roots_text = clip(", ".join(str(root) for root in roots), 200)
    if input_dirs:
        saved = f" or the output folder ({saved_dir})" if saved_dir is not None else ""
        outside = (
            f"{shown} is outside the input folders (GRAVITEX_INPUT_DIRS: "
            f"{clip(', '.join(str(d) for d in input_dirs), 200)}){saved}; valid: a file "
            "inside one of them ('..' and symlinks leading out are refused)"
        )
    else:
        outside = (
            f"{shown} is outside the output folder ({saved_dir}), the only folder local "
            "files are read from while GRAVITEX_INPUT_DIRS is not set. Set "
            f"GRAVITEX_INPUT_DIRS to the folder(s) holding your {kind} files, or pass an "
            "https:// URL instead"
        )
    try:
        raw = Path(value).expanduser()
    except RuntimeError:
        refuse(field, f"{shown}: '~' could not be expanded; give an absolute path. {VALID_IMAGE}")
    if raw.is_absolute():
        target = raw
    else:
        found = [root / raw for root in roots if os.path.lexists(root / raw)]
        target = found[0] if found else roots[0] / raw
    # Decide "inside or not" before saying whether anything exists, so paths
    # outside the input dirs cannot be probed.
    try:
        lexical = target.resolve()
    except (OSError, RuntimeError) as exc:
        refuse(field, f"{shown} cannot be resolved ({os_reason(exc)}); {VALID_IMAGE}")
    if not inside(lexical):
        refuse(field, outside)
    try:
        resolved = target.resolve(strict=True)
    except FileNotFoundError:
        refuse(
            field,
            f"{shown} does not exist (looked in {clip(str(lexical), 160)}); valid: an existing "
            f"{types_text} file inside GRAVITEX_INPUT_DIRS ({roots_text})",
        )
    except (OSError, RuntimeError) as exc:
        refuse(field, f"{shown} cannot be resolved ({os_reason(exc)}); {VALID_IMAGE}")
    if not inside(resolved):
        refuse(field, outside)
    try:
        info = os.stat(resolved)
    except OSError as exc:
        refuse(field, f"{shown} cannot be read ({os_reason(exc)}); {VALID_IMAGE}")
    _check_file_type(info, field=field, shown=shown)
    return resolved, info.st_size, tuple(roots)


def _check_file_type(info: os.stat_result, *, field: str, shown: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        refuse(field, f"{shown} is a directory; valid: a {IMAGE_TYPES_TEXT} file")
    if not stat.S_ISREG(info.st_mode):
        refuse(field, f"{shown} is not a regular file; valid: a {IMAGE_TYPES_TEXT} file")
    if info.st_size > MAX_MEDIA_BYTES:
        refuse(field, _too_big(shown, info.st_size))


def read_path(
    path: Path, *, value: str, field: str, kind: MediaKind, roots: Sequence[Path]
) -> ResolvedMedia:
    """Read the file :func:`locate_path` found and check its bytes are what ``kind`` takes."""
    shown = echo(value)
    data = read_limited(path, field=field, shown=shown, roots=roots)
    return checked_bytes(data, field=field, kind=kind, shown=shown)


def checked_bytes(data: bytes, *, field: str, kind: MediaKind, shown: str) -> ResolvedMedia:
    """A file's bytes checked to be what ``kind`` takes (a saved file's or object's)."""
    if kind == "audio":
        return held_audio(data, field=field, shown=shown)
    real = sniff_image_type(data)
    if real is None:
        refuse(
            field,
            f"{shown} is not a {IMAGE_TYPES_TEXT} image: its content is {describe_bytes(data)} "
            "(the type is judged from the bytes, not the file name); valid: a PNG, JPEG or "
            f"WEBP file of at most {MEDIA_LIMIT}",
        )
    return held_media(
        data, mime=real, url=data_url(real, data), source="path", field=field, what=shown
    )


def _resolved_roots(input_dirs: Sequence[Path]) -> list[Path]:
    roots: list[Path] = []
    for directory in input_dirs:
        try:
            roots.append(Path(directory).expanduser().resolve())
        except (OSError, RuntimeError):
            continue  # an unusable root contains nothing
    return roots


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def read_limited(path: Path, *, field: str, shown: str, roots: Sequence[Path]) -> bytes:
    """Read a regular file of at most MAX_MEDIA_BYTES, never more than that + 1 bytes.

    The file actually opened must still be inside ``roots``: a folder swapped for a
    symlink between the check and the open (O_NOFOLLOW guards only the last part)
    is caught where the OS can tell (Linux's /proc/self/fd).
    """
    flags = (
        os.O_RDONLY
        | getattr(os, "O_NOFOLLOW", 0)  # the path is resolved: a symlink here is a swap
        | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_BINARY", 0)
    )
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        refuse(field, f"{shown} cannot be opened ({os_reason(exc)}); {VALID_IMAGE}")
    chunks: list[bytes] = []
    try:
        opened = _opened_path(fd)
        if opened is not None and not _inside(opened, roots):
            refuse(
                field,
                f"{shown} changed while it was being opened and now leads outside the "
                "input folders (GRAVITEX_INPUT_DIRS); valid: a file inside one of them",
            )
        _check_file_type(os.fstat(fd), field=field, shown=shown)  # again: it may have changed
        remaining = MAX_MEDIA_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        refuse(field, f"{shown} cannot be read ({os_reason(exc)}); {VALID_IMAGE}")
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_MEDIA_BYTES:  # grew while we looked
        refuse(field, _too_big(shown, len(data)))
    return data


def _opened_path(fd: int) -> Path | None:
    """The real path of open file ``fd``, where the OS says (Linux), else ``None``."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _too_big(shown: str, size: int) -> str:
    return (
        f"{shown} is {size} bytes ({megabytes(size)}); {LIMIT_TEXT}. "
        f"Use a smaller {IMAGE_TYPES_TEXT} file"
    )
