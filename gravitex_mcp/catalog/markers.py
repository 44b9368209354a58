"""Seedance ``--markers``: settings written inside the prompt, found and read as values.

The markers themselves (which argument each stands for, how it is spelled) are
catalog data (:data:`~gravitex_mcp.catalog.models.PROMPT_MARKERS`); this module only
reads a prompt. :mod:`gravitex_mcp.request.validation` calls it once per request and
hands what it found to translation inside the checked request.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain import Family
from .models import ARGUMENT_TYPES, PROMPT_MARKERS, Value


@dataclass(frozen=True, slots=True)
class FoundMarker:
    """A ``--name value`` marker found in a prompt.

    ``name`` is as written (without the dashes); ``raw`` is the value token,
    ``None`` when the marker ends the prompt or is followed by another marker.
    """

    name: str
    argument: str
    raw: str | None

    def __str__(self) -> str:
        return f"--{self.name}" if self.raw is None else f"--{self.name} {self.raw}"


def find_prompt_markers(prompt: str, family: Family) -> list[FoundMarker]:
    """The settings markers of ``family`` written in ``prompt``, in prompt order.

    Names are matched case-insensitively, as ``--name value`` or ``--name=value``
    (a caller may write either; both must be checked like the arguments they stand
    for); any other ``--word`` is ordinary prompt text. Families without markers
    get ``[]``.
    """
    by_name = {name: m.argument for m in PROMPT_MARKERS.get(family, ()) for name in m.names}
    if not by_name:
        return []
    tokens = prompt.split()
    found: list[FoundMarker] = []
    for index, token in enumerate(tokens):
        if not token.startswith("--"):
            continue
        name, equals, inline = token[2:].partition("=")
        argument = by_name.get(name.lower())
        if argument is None:
            continue
        if equals:
            raw = inline or None
        else:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            raw = None if following is None or following.startswith("--") else following
        found.append(FoundMarker(name, argument, raw))
    return found


def marker_value(argument: str, raw: str) -> Value | None:
    """A marker's text as the argument's type (``"5"`` -> 5); ``None`` if it is not one."""
    kind = ARGUMENT_TYPES[argument]
    if kind == "integer":
        digits = raw[1:] if raw[:1] in "+-" else raw
        return int(raw) if digits.isascii() and digits.isdigit() else None
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower())
    return raw


def prompt_settings(prompt: str, family: Family) -> dict[str, Value]:
    """The settings ``prompt`` writes as markers, by argument (``--dur 10`` ->
    ``{"duration": 10}``); markers without a usable value are left out."""
    settings: dict[str, Value] = {}
    for found in find_prompt_markers(prompt, family):
        value = None if found.raw is None else marker_value(found.argument, found.raw)
        if value is not None:
            settings[found.argument] = value
    return settings
