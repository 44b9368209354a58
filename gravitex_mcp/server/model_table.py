"""The model catalog as a Markdown table, for the README (kept in sync by a test)."""

from __future__ import annotations

import ast
import inspect
import textwrap
from enum import Enum
from typing import Any

from ..catalog import models as catalog
from ..catalog.describe import describe
from ..domain import Family

START = "<!-- models:start -->"
END = "<!-- models:end -->"

#: Columns of the table: heading and the unified argument shown in it.
_VALUE_COLUMNS = (
    ("duration (s)", "duration"),
    ("resolution", "resolution"),
    ("aspect ratio", "aspect_ratio"),
    ("size", "size"),
)
#: Every other unified argument, listed by name when a model takes it.
_FLAGS = tuple(
    name for name in catalog.ARGUMENT_TYPES if name not in {n for _, n in _VALUE_COLUMNS}
)


def _values(arg: dict[str, Any] | None) -> str:
    if arg is None:
        return "–"
    if "enum" in arg:
        return ", ".join(str(v) for v in arg["enum"])
    if "minimum" in arg and "maximum" in arg:
        return f"{arg['minimum']}–{arg['maximum']}"
    if "pattern" in arg:
        return "W*H, or from resolution + aspect ratio"
    return "any"


def models_table(family: Family | None = None) -> str:
    """One row per model (of ``family``, or all): family, modes, valid values and the
    other arguments it takes. The README's table and list_models' text."""
    head = ["model", "family", "modes", *(h for h, _ in _VALUE_COLUMNS), "also takes"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for spec in catalog.models(family):
        described = describe(spec)
        args: dict[str, Any] = described["arguments"]
        cells = [
            f"`{spec.id}`",
            spec.family.value,
            ", ".join(m.replace("_", " ") for m in described["modes"]),
            *(_values(args.get(name)) for _, name in _VALUE_COLUMNS),
            ", ".join(f"`{name}`" for name in _FLAGS if name in args) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_block(text: str, table: str, *, start: str = START, end: str = END) -> str:
    """``text`` with the block between the markers ``start`` and ``end`` replaced by
    ``table``."""
    head = text.index(start) + len(start)
    tail = text.index(end)
    return f"{text[:head]}\n{table}\n{text[tail:]}"


STATUS_START = "<!-- statuses:start -->"
STATUS_END = "<!-- statuses:end -->"


def member_docs(cls: type[Enum]) -> dict[str, str]:
    """The docstring under each member of ``cls`` (its meaning), by value.

    Raises :class:`ValueError` for a member without one: every value gets a meaning.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)):
            continue
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[cls[node.targets[0].id].value] = " ".join(after.value.value.split())
    missing = [m.value for m in cls if m.value not in docs]
    if missing:
        raise ValueError(f"{cls.__name__} members without a docstring: {missing}")
    return docs


def statuses_table() -> str:
    """The journal's status values (what ``list_video_tasks`` shows and filters by)."""
    from ..domain import JournalStatus

    lines = ["| status | meaning |", "| --- | --- |"]
    lines += [f"| `{value}` | {doc} |" for value, doc in member_docs(JournalStatus).items()]
    return "\n".join(lines)
