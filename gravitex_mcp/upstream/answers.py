"""The API's answers read: task snapshots, task errors and the API's own words.

Pure functions over parsed JSON and bytes (no I/O): what a submit or query
answer says about its task, and the message inside an error body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..domain import TaskStatus
from ..errors import InvalidArgumentsError, MalformedResponseError
from ..redact import clip

#: Longest upstream message quoted in an error.
MAX_UPSTREAM_MESSAGE: Final = 300
MAX_TASK_ID_LENGTH: Final = 256

_HTML_START = re.compile(rb"^\s*<(?:!doctype|html|head|body|\?xml|[a-z]+[\s>])", re.IGNORECASE)


@dataclass(frozen=True)
class TaskError:
    """Why a task failed, as the API put it."""

    code: str | int | None
    message: str


@dataclass(frozen=True)
class TaskSnapshot:
    """One answer about a task.

    ``status`` is the contract's status (``UNKNOWN`` for anything the API says
    that the contract does not name; the API's word is in ``raw_status``).
    ``url`` is the signed video link when the API gave one (kept out of the
    repr, like ``raw``, because it carries a signature).
    """

    task_id: str
    status: TaskStatus
    raw_status: str | None
    url: str | None = field(repr=False)
    error: TaskError | None
    raw: dict[str, Any] = field(repr=False)
    request_id: str | None = None


def request_id(headers: Mapping[str, str]) -> str | None:
    """The request id the API sent back, for error messages."""
    for name in ("x-request-id", "request-id"):
        value = headers.get(name)
        if value and value.strip():
            return value.strip()[:200]
    return None


def shorten(text: str, limit: int = MAX_UPSTREAM_MESSAGE) -> str:
    return clip(" ".join(text.split()), limit)


def message_of(value: Any, depth: int = 0) -> str | None:
    """The human message inside an upstream error value (str, dict or list of those)."""
    if depth > 3 or value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        for key in ("message", "msg", "detail", "error"):
            found = message_of(value.get(key), depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list):
        parts = [m for m in (message_of(v, depth + 1) for v in value[:5]) if m]
        return "; ".join(parts) or None
    return None


def looks_like_html(body: bytes, content_type: str) -> bool:
    return "html" in content_type.lower() or bool(_HTML_START.match(body[:200]))


def upstream_message(body: bytes, content_type: str) -> str | None:
    """The API's own words from an error body, or ``None`` if it gave none usable."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        if looks_like_html(body, content_type):
            return None
        text = body.decode("utf-8", errors="replace").strip()
        return shorten(text) if text else None
    if isinstance(data, dict):
        for key in ("error", "message", "detail", "msg"):
            found = message_of(data.get(key))
            if found:
                return shorten(found)
        return None
    found = message_of(data)
    return shorten(found) if found else None


def code_of(value: Any) -> str | int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return value.strip() or None
    return str(value)


def task_error(raw: Mapping[str, Any]) -> TaskError | None:
    """``error: {code, message}``, ``error: "text"`` or ``metadata.output.{code,message}``
    (whose message also serves an ``error`` that has a code only)."""
    err = raw.get("error")
    if isinstance(err, str) and err.strip():
        return TaskError(code=None, message=err.strip())
    metadata = raw.get("metadata")
    output = metadata.get("output") if isinstance(metadata, dict) else None
    output = output if isinstance(output, dict) else {}
    fallback = message_of(output.get("message"))
    if isinstance(err, dict):
        message = message_of(err.get("message")) or message_of(err.get("msg"))
        code = code_of(err.get("code"))
        if message or code is not None:
            message = message or fallback or "The API gave an error code without a message."
            return TaskError(code=code, message=message)
    return TaskError(code=code_of(output.get("code")), message=fallback) if fallback else None


def task_id_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def check_task_id(task_id: str) -> str:
    if not isinstance(task_id, str) or not task_id.strip():
        raise InvalidArgumentsError.about(
            "task_id", "must be a non-empty task id, as returned by generate_video"
        )
    tid = task_id.strip()
    if (
        tid in {".", ".."}
        or len(tid) > MAX_TASK_ID_LENGTH
        or any(ord(c) < 32 or ord(c) == 127 for c in tid)
    ):
        raise InvalidArgumentsError.about(
            "task_id",
            f"is not a valid task id (at most {MAX_TASK_ID_LENGTH} printable "
            "characters, as returned by generate_video)",
        )
    return tid


def parse_task(
    raw: Any,
    *,
    service: str,
    doing: str,
    scrub: Callable[[str], str],
    fallback_task_id: str | None,
    request_id: str | None,
    submitted: bool,
) -> TaskSnapshot:
    """The snapshot in a submit's or query's JSON answer (``submitted``: a submit's, which
    must name its task); :class:`MalformedResponseError` when it holds none."""
    if not isinstance(raw, dict):
        raise MalformedResponseError(
            f"{service} sent JSON that is not an object while {doing}.",
            status_code=200,
            request_id=request_id,
        )
    task_id = task_id_of(raw.get("task_id"))
    if task_id is None:
        task_id = task_id_of(raw.get("id"))
    status_value = raw.get("status")
    raw_status = status_value.strip() if isinstance(status_value, str) else None
    if submitted:
        if task_id is None:
            upstream = message_of(raw.get("error")) or message_of(raw.get("message"))
            said = f" (it said: {shorten(scrub(upstream))})" if upstream else ""
            raise MalformedResponseError(
                f"The answer has no task_id{said}.", status_code=200, request_id=request_id
            )
        status = TaskStatus.SUBMITTED if raw_status is None else TaskStatus.parse(raw_status)
    else:
        if task_id is None and raw_status is None:
            upstream = message_of(raw.get("error")) or message_of(raw.get("message"))
            said = f" It said: {shorten(scrub(upstream))}" if upstream else ""
            raise MalformedResponseError(
                f"{service} answered without a task_id or status while {doing}.{said}",
                status_code=200,
                request_id=request_id,
            )
        # The caller's id names the task (the journal is keyed by it); upstream's is in raw.
        task_id = fallback_task_id or task_id
        status = TaskStatus.parse(raw_status)
    assert task_id is not None
    url_value = raw.get("url")
    url = url_value.strip() if isinstance(url_value, str) and url_value.strip() else None
    error = task_error(raw)
    if error is None and status is TaskStatus.FAILED:
        error = TaskError(code=None, message="The task failed; the API gave no reason.")
    return TaskSnapshot(
        task_id=task_id,
        status=status,
        raw_status=raw_status,
        url=url,
        error=error,
        raw=raw,
        request_id=request_id,
    )
