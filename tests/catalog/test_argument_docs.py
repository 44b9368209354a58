"""The argument descriptions say exactly what the catalog says, model by model."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import replace

import pytest

from gravitex_mcp.catalog import argument_docs
from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.catalog.argument_docs import group_name
from gravitex_mcp.catalog.models import ARGUMENT_TYPES, CATALOG, MODEL_IDS, ArgSpec
from gravitex_mcp.domain import Family
from gravitex_mcp.request.arguments import VideoArguments


def resolve(label: str) -> set[str]:
    """The model ids a label of the descriptions names (an independent reading)."""
    ids: set[str] = set()
    for part in label.split(", "):
        family = re.fullmatch(r"the (\w+) family(?: \(except (.+)\))?", part)
        if family is not None:
            members = {m.id for m in catalog.models(Family(family.group(1).lower()))}
            for excluded in (family.group(2) or "").split(" and "):
                members -= resolve(excluded) if excluded else set()
            ids |= members
        elif part.endswith("*"):
            ids |= {m for m in MODEL_IDS if m.startswith(part[:-1])}
        else:
            assert part in CATALOG, f"{part!r} names no model"
            ids.add(part)
    return ids


def expected_values(name: str, arg: ArgSpec) -> str:
    if arg.choices:
        return ", ".join(str(c) for c in arg.choices)
    if arg.minimum is not None and arg.maximum is not None:
        return f"{arg.minimum} to {arg.maximum}"
    if ARGUMENT_TYPES[name] == "array" and arg.maximum is not None:
        return f"1 to {arg.maximum} items"
    return ""


def sentences(description: str) -> list[tuple[set[str], str]]:
    """``(models, text after the colon)`` of every ``<models>: <values>.`` sentence."""
    found = []
    for sentence in re.split(r"(?<=\.) ", description):
        label, colon, rest = sentence.partition(": ")
        if colon and all(resolvable(p) for p in label.split(", ")):
            found.append((resolve(label), rest.removesuffix(".")))
    return found


def resolvable(part: str) -> bool:
    return part in CATALOG or part.endswith("*") or part.startswith("the ")


@pytest.mark.parametrize("name", list(ARGUMENT_TYPES))
def test_every_model_is_named_with_its_own_values(name: str) -> None:
    description = VideoArguments.model_fields[name].description or ""
    takers = {spec.id for spec in catalog.models() if name in spec.arguments}
    valued = {m for m in takers if expected_values(name, CATALOG[m].arguments[name])}
    if not valued:
        taken = re.search(r"Taken by (.+?)\.(?: |$)", description)
        assert taken is not None, description
        assert resolve(taken.group(1)) == takers
        return
    value_sentences = [(ids, text) for ids, text in sentences(description) if ids <= valued]
    for model in takers:
        texts = [text for ids, text in value_sentences if model in ids]
        wanted = expected_values(name, CATALOG[model].arguments[name])
        assert wanted in texts, f"{name}: {model} should be listed with {wanted!r}"
    named = set().union(*(ids for ids, _ in value_sentences))
    assert named == takers


def test_group_names_are_exact() -> None:
    for family in Family:
        members = [m.id for m in catalog.models(family)]
        assert resolve(group_name(members)) == set(members)
        for index in range(len(members)):
            some = members[: index + 1]
            assert resolve(group_name(some)) == set(some), group_name(some)


def test_family_globs_in_the_prose_match_the_catalog() -> None:
    description = VideoArguments.model_fields["model"].description or ""
    globs = re.search(r"Seedance-family models \(([^)]+)\)", description)
    assert globs is not None
    patterns = globs.group(1).split(", ")
    matched = {m for m in MODEL_IDS if any(fnmatch.fnmatch(m, p) for p in patterns)}
    assert matched == {m.id for m in catalog.models(Family.SEEDANCE)}


def test_a_changed_catalog_changes_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # The text is computed from the table, not written beside it.
    before = argument_docs.takers_text("duration")
    sora = CATALOG["sora-2"]
    longer = {**sora.arguments, "duration": ArgSpec(choices=(4, 8, 12, 16))}
    table = tuple(replace(m, arguments=longer) if m is sora else m for m in catalog.models())
    monkeypatch.setattr(catalog, "_MODELS", table)
    assert "sora-2: 4, 8, 12, 16." in argument_docs.takers_text("duration")
    assert argument_docs.takers_text("duration") != before
