"""Checking and quoting what a person types into a prompt (slash command).

A prompt's text goes to the agent as instructions, so an argument must never
become an instruction of its own: free text is quoted (one JSON string, its
line breaks escaped, so it cannot start a line), ids are checked against their
shape, and every refusal names the argument and what is valid.
"""

from __future__ import annotations

import json
import re
from typing import Final

from ..errors import InvalidArgumentsError

#: The most characters of free text (an idea, all the shots) a prompt takes.
MAX_TEXT: Final = 4000
#: Upstream task ids (``video_<hex>``, a UUID, ``cgt-<digits>-<hex>``) and local ids.
TASK_ID_SHAPE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
#: Line breaks JSON leaves unescaped but text readers honour.
_LINE_BREAKS: Final = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def quoted(text: str) -> str:
    """``text`` as one double-quoted string on one line (nothing in it starts a line)."""
    encoded = json.dumps(text, ensure_ascii=False)  # escapes \n, \r and every control
    return "".join(_LINE_BREAKS.get(c, c) for c in encoded)


def checked_text(name: str, value: str, *, limit: int = MAX_TEXT) -> str:
    """Free text, stripped; refused when empty or longer than ``limit`` characters."""
    text = value.strip()
    if not text:
        raise InvalidArgumentsError.about(name, "is empty; describe it in words")
    if len(text) > limit:
        raise InvalidArgumentsError.about(
            name, f"is {len(text)} characters long; at most {limit} are taken"
        )
    return text


def checked_task_id(name: str, value: str) -> str:
    """A task id of the shape the API and this server's journal use."""
    tid = value.strip()
    if not TASK_ID_SHAPE.fullmatch(tid):
        shown = quoted(tid[:40] + ("…" if len(tid) > 40 else ""))
        raise InvalidArgumentsError.about(
            name,
            f"{shown} is not a task id: 1 to 128 letters, digits, '_' or '-', as "
            "generate_video or list_video_tasks return (e.g. video_69095b4ce004)",
        )
    return tid


def checked_seconds(name: str, value: str) -> int:
    """A whole number of seconds written in ASCII digits ('²' is a digit to Python)."""
    text = value.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 4):
        raise InvalidArgumentsError.about(
            name, f"{quoted(text[:20])} is not a whole number of seconds (e.g. 8)"
        )
    return int(text)
