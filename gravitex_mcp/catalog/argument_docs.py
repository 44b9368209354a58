"""Which models take each unified argument, and with what values, as text for its description.

The ``generate_video`` argument descriptions end with this text, so the
per-model value lists an LLM reads are the catalog's own, never restated by
hand. Models with the same values are named together: by a shared id prefix
(``veo-3.*``), as a family (``the Seedance family``), or a family but a few.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..domain import Family
from . import models as catalog
from .models import ARGUMENT_TYPES, ArgSpec, format_value


def _values(name: str, arg: ArgSpec) -> str:
    if arg.choices:
        return ", ".join(format_value(c) for c in arg.choices)
    if arg.minimum is not None and arg.maximum is not None:
        return f"{arg.minimum} to {arg.maximum}"
    if ARGUMENT_TYPES[name] == "array" and arg.maximum is not None:
        return f"1 to {arg.maximum} items"
    return ""


def _prefixed(ids: Sequence[str]) -> str | None:
    """``prefix*`` when exactly the catalog's ids starting with a shared prefix are ``ids``."""
    if len(ids) < 2:
        return None
    prefix = ids[0]
    for other in ids[1:]:
        while not other.startswith(prefix):
            prefix = prefix[:-1]
    if prefix and {m for m in catalog.MODEL_IDS if m.startswith(prefix)} == set(ids):
        return prefix + "*"
    return None


def group_name(ids: Iterable[str]) -> str:
    """A short name for a set of model ids, exact about which ids it covers."""
    wanted = [m for m in catalog.MODEL_IDS if m in set(ids)]
    parts: list[str] = []
    for family in Family:
        members = [s.id for s in catalog.models(family)]
        mine = [m for m in members if m in wanted]
        if not mine:
            continue
        rest = [m for m in members if m not in mine]
        short = _prefixed(mine)
        if short is not None or len(mine) == 1:
            parts.append(short or mine[0])
        elif not rest:
            parts.append(f"the {family.value.capitalize()} family")
        elif len(rest) < len(mine):
            but = group_name(rest).replace(", ", " and ")
            parts.append(f"the {family.value.capitalize()} family (except {but})")
        else:
            parts.append(", ".join(mine))
    return ", ".join(parts)


def takers_text(name: str) -> str:
    """``"<models>: <values>. <models>: <values>."`` for every model taking ``name``.

    Models with the same values form one group, in catalog order; an argument
    whose values are not restricted (booleans, media) gets ``"Taken by <models>."``.
    """
    groups: dict[str, list[str]] = {}
    for spec in catalog.models():
        if name in spec.arguments:
            groups.setdefault(_values(name, spec.arguments[name]), []).append(spec.id)
    if list(groups) == [""]:
        text = f"Taken by {group_name(groups[''])}."
    else:
        text = " ".join(f"{group_name(ids)}: {values}." for values, ids in groups.items())
    return " ".join([text, *_rules(name)])


def _rules(name: str) -> list[str]:
    """The catalog's rules about ``name``: size picking, exclusions, advisories, requirement."""
    pickers: dict[tuple[str, ...], list[str]] = {}
    advised: dict[str, list[str]] = {}
    rules: list[str] = []
    for spec in catalog.models():
        for advisory in spec.advisories:
            if advisory.setting.argument == name:
                advised.setdefault(advisory.note, []).append(spec.id)
        if spec.size_from is not None and name in spec.size_from.by:
            pickers.setdefault(spec.size_from.by, []).append(spec.id)
        for ex in spec.exclusions:
            if name in (ex.first.argument, ex.second.argument):
                rules.append(f"{spec.id}: not {ex.first} with {ex.second} ({ex.reason}).")
    picks = [
        f"On {group_name(ids)}, {' + '.join(by)} pick{'' if len(by) > 1 else 's'} size."
        for by, ids in pickers.items()
    ]
    notes = [f"{group_name(ids)}: {note}." for note, ids in advised.items()]
    required = [
        spec.id
        for spec in catalog.models()
        if all(name in catalog.MODE_ARGUMENTS[mode] for mode in spec.modes)
    ]
    if required:
        notes.append(f"Required by {group_name(required)}.")
    if name == "image":
        matching = [spec.id for spec in catalog.models() if spec.image_must_match_size]
        notes.append(f"{group_name(matching)}: its pixel size must equal the request size.")
    return picks + rules + notes


def markers_text() -> str:
    """The prompt markers of every family that has them: ``"--ratio, --dur, ..."``."""
    markers = (m for family in catalog.PROMPT_MARKERS.values() for m in family)
    return ", ".join("--" + m.names[0] for m in markers)


def refused_values_text(name: str, values: Iterable[str]) -> str:
    """``"No model takes 4k."`` for the unified values no model accepts (or ``""``)."""
    accepted = {c for spec in catalog.models() for c in spec.arguments.get(name, ArgSpec()).choices}
    missing = [v for v in values if v not in accepted]
    return f"No model takes {', '.join(missing)}." if missing else ""
