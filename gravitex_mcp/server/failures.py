"""Every failure of a tool call, told as what happened and what to do.

The SDK answers an exception it does not know with a bare "Error executing tool
<name>": the agent learns nothing and cannot act. :func:`failure_message` is
the one mapping from an exception to the text of an ``isError`` result: the
project's :class:`GravitexError` tree speaks for itself, file-system errors are
told by their errno with the file named (the stores tell their own database
errors); anything else is logged with its traceback (on stderr, never stdout)
and named by its class only, so no internal text (or secret) reaches the client.
"""

from __future__ import annotations

import errno
import logging

from ..errors import GravitexError, first_failure

logger = logging.getLogger(__name__)

#: What to do about a file-system error, by errno; ``{where}`` is the file named.
_OS_ADVICE: dict[int, str] = {
    errno.EROFS: (
        "{where} is on a read-only file system: nothing could be written. Make it "
        "writable, or set GRAVITEX_OUTPUT_DIR / GRAVITEX_STATE_DIR to a writable folder."
    ),
    errno.ENOSPC: (
        "No space left on the device holding {where}: nothing was kept. Free some "
        "space (or set GRAVITEX_OUTPUT_DIR to a folder on another disk) and call again."
    ),
    errno.EDQUOT: (
        "The disk quota for {where} is used up: nothing was kept. Free some space "
        "(or set GRAVITEX_OUTPUT_DIR to another folder) and call again."
    ),
    errno.EACCES: (
        "Permission denied for {where}. Give this user access to it, or set "
        "GRAVITEX_OUTPUT_DIR / GRAVITEX_STATE_DIR to a folder it may write."
    ),
    errno.EPERM: (
        "Operation not permitted on {where}. Give this user access to it, or set "
        "GRAVITEX_OUTPUT_DIR / GRAVITEX_STATE_DIR to a folder it may write."
    ),
    errno.ENOENT: (
        "{where} does not exist (moved or deleted while in use?). Call again; if a "
        "saved file is missing, download_video saves it anew."
    ),
    errno.EISDIR: "{where} is a folder where a file was expected: move it away and call again.",
    errno.ENOTDIR: "A part of {where} is a file where a folder was expected: move it away.",
    errno.EMFILE: "Too many open files in this process (at {where}): call again in a moment.",
    errno.ENFILE: "Too many open files on this system (at {where}): call again in a moment.",
    errno.EIO: "An input/output error on {where}: the disk may be failing. Check it.",
}


def _os_message(exc: OSError) -> str:
    name = exc.filename if exc.filename is not None else exc.filename2
    where = f"'{name}'" if name is not None else "a file of the server"
    advice = _OS_ADVICE.get(exc.errno or 0)
    reason = exc.strerror or type(exc).__name__
    if advice is None:
        return f"A file operation on {where} failed ({reason}). Check the folder and call again."
    return f"{advice.format(where=where)} ({reason})"


def failure_message(exc: BaseException) -> str:
    """The text of the ``isError`` result for ``exc``: what happened and what to do."""
    failure = first_failure(exc)
    if isinstance(failure, GravitexError):
        return str(failure)
    if isinstance(failure, OSError):
        return _os_message(failure)
    if isinstance(failure, RecursionError):
        return "The arguments are nested too deeply to handle. Nothing was done."
    if isinstance(failure, MemoryError):
        return "The server ran out of memory on this call. Try smaller arguments."
    # Unexpected: its own text may hold internals; the log has the traceback.
    return (
        f"Internal error ({type(failure).__name__}) in the server; it is logged with "
        "its traceback. Call again; if it recurs, report it with the server's log."
    )


def log_failure(tool: str, exc: BaseException, *, deliberate: bool = False) -> None:
    """Log a failed call: a known failure in one line, an unexpected one with its
    traceback. ``deliberate``: a refusal the tool raised on purpose (known)."""
    failure = first_failure(exc)
    if deliberate or isinstance(failure, GravitexError | OSError):
        logger.info("tool %s failed: %s: %s", tool, type(failure).__name__, failure)
    else:
        logger.error("tool %s raised an unexpected exception", tool, exc_info=failure)
