"""Logging to stderr, with secrets scrubbed.

stdout of a stdio server carries only MCP messages, so every handler here
writes to stderr. Anything that looks like an API key or a signed URL's query
string, and the configured secrets themselves, are scrubbed from every log
record as it is made (message, arguments, traceback text), whatever logger
made it and whatever handler takes it: ``httpcore2`` logs redirect ``Location``
headers at DEBUG, uvicorn installs handlers of its own, and a test's capture
handler sees records too. This is a last line of defence behind the code's own care.

Every record also carries ``task_id``: the task the code that logged it works on
(:func:`task_context`, a context variable: it follows the call into the tasks it
starts), or ``None``; the stderr lines show it as ``[task <id>]``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from .redact import redact_url, scrub

#: Secrets named at start-up (the API key, the HTTP token), scrubbed verbatim.
_SECRETS: list[str] = []

#: Shortest configured secret scrubbed verbatim (shorter ones would mangle ordinary text).
_MIN_SECRET = 4


def _scrub_all(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "[redacted]")
    return scrub(text)


def _message_of(record: logging.LogRecord) -> str:
    """The text ``record`` would print, whatever its ``msg`` and ``args`` hold."""
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - arguments that do not fit the message
        # logging would report this record's error with its raw arguments.
        try:
            return f"{record.msg!r} % {record.args!r}"
        except Exception:  # noqa: BLE001 - an argument whose repr fails
            return f"{type(record.msg).__name__} message with unprintable arguments"


def scrub_record(record: logging.LogRecord) -> None:
    """Scrub ``record`` in place: its final message, traceback and stack text.

    The message is formatted here and kept only as scrubbed text (``args`` emptied),
    whatever form it came in (a format with a tuple or a dict of arguments, bytes,
    lists of header tuples): a handler or formatter that reads ``args`` itself must
    find nothing left to leak.
    """
    record.msg, record.args = _scrub_all(_message_of(record)), None
    if record.exc_info and not record.exc_text:
        # Exception texts name URLs too (httpx's redirect errors, say).
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = _scrub_all(text)
    if record.stack_info:
        record.stack_info = _scrub_all(record.stack_info)


#: The task the current code works on; read into every record as ``task_id``.
_TASK_ID: ContextVar[str | None] = ContextVar("gravitex_task_id", default=None)


@contextmanager
def task_context(task_id: str | None) -> Iterator[None]:
    """Log records made inside carry ``task_id`` (nothing changes for ``None``)."""
    if not task_id:
        yield
        return
    token = _TASK_ID.set(task_id)
    try:
        yield
    finally:
        _TASK_ID.reset(token)


class _TaskFormatter(logging.Formatter):
    """The stderr line, with ``[task <id>]`` after the logger's name when there is one."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        task = getattr(record, "task_id", None)
        line = super().formatMessage(record)
        if not task:
            return line
        head, sep, tail = line.partition(": ")
        return f"{head} [task {task}]{sep}{tail}"


_FactoryFn = Callable[..., logging.LogRecord]


def _install_scrubbing_factory() -> None:
    base: _FactoryFn = logging.getLogRecordFactory()
    if getattr(base, "_gravitex_scrubs", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        scrub_record(record)
        record.task_id = _TASK_ID.get()
        return record

    factory._gravitex_scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


#: Loggers kept at WARNING or above: they log full request URLs at INFO.
NOISY = ("httpx2", "httpx", "httpcore", "uvicorn.access")


def configure_logging(
    level: str, stream: TextIO | None = None, *, secrets: Iterable[str | None] = ()
) -> None:
    """Send every log record to stderr (or ``stream``) at ``level``, scrubbed of
    key-like tokens, URL query strings and ``secrets``."""
    _SECRETS[:] = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True)
    _install_scrubbing_factory()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_TaskFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx-style clients log full URLs (signed query strings) at INFO.
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class _RedactURLArgs(logging.Filter):
    """Shows the URL arguments of a library's log records (``"HTTP Request: %s %s"``)
    by :func:`~gravitex_mcp.redact.redact_url`: no signed query string."""

    def __init__(self, url_type: type) -> None:
        super().__init__()
        self.url_type = url_type

    def filter(self, record: logging.LogRecord) -> bool:
        args, kind = record.args, self.url_type
        if isinstance(args, tuple) and any(isinstance(a, kind) for a in args):
            record.args = tuple(redact_url(str(a)) if isinstance(a, kind) else a for a in args)
        return True


def redact_url_args(logger_name: str, url_type: type) -> None:
    """Redact ``url_type`` arguments of ``logger_name``'s records (installed once)."""
    target = logging.getLogger(logger_name)
    if not any(isinstance(f, _RedactURLArgs) and f.url_type is url_type for f in target.filters):
        target.addFilter(_RedactURLArgs(url_type))
