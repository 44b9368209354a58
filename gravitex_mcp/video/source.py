"""What the video layer reads: a path, or an open file checked by whoever holds it.

The store's saved files (``store.ondisk.HeldFile``) satisfy :class:`OpenVideo`
structurally, so this layer reads them through their checked descriptor without
importing the store.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from av.container import InputContainer


class OpenVideo(Protocol):
    """A file already open and checked: read it through :meth:`reader`, never by its path."""

    @property
    def path(self) -> Path:
        """Its name, for messages and for files made beside it."""
        ...

    def reader(self) -> BinaryIO:
        """A new file object on it, at its start."""
        ...


#: A video to read: a path (a file being written, or a test's), or an open, checked file.
VideoSource = Path | OpenVideo


def path_of(source: VideoSource) -> Path:
    """Where ``source`` is (for names, and files made beside it)."""
    return source if isinstance(source, Path) else source.path


@contextlib.contextmanager
def opened(source: VideoSource) -> Iterator[InputContainer]:
    """``source`` opened with PyAV (an open file through a new reader, closed with the
    container: PyAV leaves a file object it was given open). Raises ``OSError`` or
    ``av.FFmpegError``."""
    import av  # lazy: FFmpeg's libraries load on first use

    with contextlib.ExitStack() as stack:
        target = str(source) if isinstance(source, Path) else stack.enter_context(source.reader())
        yield stack.enter_context(av.open(target, "r"))
