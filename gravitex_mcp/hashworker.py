"""The hash helper process: ``python -I -m gravitex_mcp.hashworker FD``.

It hashes (sha256) the temp files the server writes, outside the server's GIL (see
:mod:`gravitex_mcp.hashhelper`). ``FD`` is its end of a Unix stream socket pair; it
reads lines from it:

* ``F`` with one file descriptor attached: start hashing that file from byte 0;
* ``W <n>``: the file now holds at least ``n`` bytes;
* ``E <n>``: the file is complete at ``n`` bytes: hash the rest, answer ``D <hex> <n>``
  (or ``X <reason>``), and close the descriptor.

Each byte is read from the page cache right behind the writer, and its write-back is
started every :data:`WRITEBACK_EVERY_BYTES` so the server's final fsync has little to
wait for. The helper exits when the socket closes (the server ended). It writes
nothing to stdout or stderr: answers go over the socket only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import sys
from typing import Final

#: Bytes read (and hashed) at a time.
CHUNK_BYTES: Final = 1 << 20
#: Write-back of hashed bytes is started every this many bytes (Linux); the server's
#: hasher thread (storage.py) uses the same step.
WRITEBACK_EVERY_BYTES: Final = 1 << 20
#: ``posix_fadvise`` where ``DONTNEED`` starts the write-back (Linux), else ``None``.
FADVISE = getattr(os, "posix_fadvise", None) if sys.platform == "linux" else None
DONTNEED: Final = getattr(os, "POSIX_FADV_DONTNEED", 4)


class _File:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.hash = hashlib.sha256()
        self.done = 0  # bytes hashed
        self.known = 0  # bytes the server said it wrote
        self.end: int | None = None  # the final size, once announced
        self.advised = 0

    @property
    def target(self) -> int:
        return self.known if self.end is None else self.end


def _hash_some(file: _File, view: memoryview) -> None:
    """Hash up to one chunk of what is known to be written."""
    want = min(len(view), file.target - file.done)
    with view[:want] as part:
        n = os.preadv(file.fd, [part], file.done)
    if n <= 0:
        raise OSError(f"the file ends at {file.done} bytes, {file.target} were announced")
    with view[:n] as got:
        file.hash.update(got)
    file.done += n
    if FADVISE is not None and file.done - file.advised >= WRITEBACK_EVERY_BYTES:
        # Starts the write-back of what was hashed (and drops it once clean).
        with contextlib.suppress(OSError):
            FADVISE(file.fd, file.advised, file.done - file.advised, DONTNEED)
        file.advised = file.done


def _read_lines(sock: socket.socket, pending: bytes) -> tuple[list[str], list[int], bytes]:
    """Blocking: the next complete lines (and any file descriptors) from the server."""
    data, fds, _, _ = socket.recv_fds(sock, 4096, 1)
    if not data and not fds:
        raise EOFError
    *lines, rest = (pending + data).split(b"\n")
    return [line.decode("ascii", "replace") for line in lines], fds, rest


def serve(sock: socket.socket) -> None:
    """Answer the server until it closes the socket."""
    view = memoryview(bytearray(CHUNK_BYTES))
    pending = b""
    unclaimed: list[int] = []  # descriptors whose F line is not complete yet
    news = select.poll()  # not select(): the socket's number may be above 1023
    news.register(sock, select.POLLIN)
    file: _File | None = None
    while True:
        if file is not None and file.end is not None and file.done >= file.end:
            sock.sendall(f"D {file.hash.hexdigest()} {file.done}\n".encode("ascii"))
            os.close(file.fd)
            file = None
            continue
        busy = file is not None and file.done < file.target
        if not busy or news.poll(0):  # news (without waiting if busy)
            try:
                lines, fds, pending = _read_lines(sock, pending)
            except EOFError:
                return  # the server closed the socket
            unclaimed += fds
            for line in lines:
                kind, _, arg = line.partition(" ")
                if kind == "F":
                    if file is not None:
                        os.close(file.fd)
                    file = _File(unclaimed.pop(0)) if unclaimed else None
                elif file is not None and kind in ("W", "E") and arg.isdigit():
                    if kind == "W":
                        file.known = max(file.known, int(arg))
                    else:
                        file.end = int(arg)
            while len(unclaimed) > 4:  # more than the server ever sends at once
                os.close(unclaimed.pop(0))
            continue
        assert file is not None
        try:
            _hash_some(file, view)
        except OSError as exc:
            sock.sendall(f"X {' '.join(str(exc).split())[:200]}\n".encode("ascii"))
            os.close(file.fd)
            file = None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    sock = socket.socket(fileno=int(args[0]))
    try:
        serve(sock)
    except (OSError, ValueError):
        return 1  # the server sees the socket close and hashes by itself
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
