"""The model catalog as a Markdown table, for the README (kept in sync by a test)."""

from __future__ import annotations

from typing import Any

from . import catalog
from .domain import Family

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
        described = catalog.describe(spec)
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


def replace_block(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table``."""
    start = text.index(START) + len(START)
    end = text.index(END)
    return f"{text[:start]}\n{table}\n{text[end:]}"
