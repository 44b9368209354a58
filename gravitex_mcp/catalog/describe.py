"""The catalog in words and JSON: each argument's valid values for error messages, and
each model described for ``list_models``, ``gravitex://models``, the README and the
generated JSON Schemas. Written from the table in ``models``; no data of its own."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..domain import Mode
from .models import (
    ARGUMENT_TYPES,
    MEDIA_KINDS,
    MODE_ARGUMENTS,
    PROMPT_MARKERS,
    ArgSpec,
    ModelSpec,
    format_size,
    format_value,
)


def valid_values_text(name: str, arg: ArgSpec) -> str:
    """What ``arg`` (the spec of argument ``name``) accepts, in words, for error messages."""
    if arg.choices:
        return "valid values: " + ", ".join(format_value(c) for c in arg.choices)
    if arg.minimum is not None and arg.maximum is not None:
        return f"valid range: {arg.minimum} to {arg.maximum}"
    if arg.minimum is not None:
        return f"valid: {arg.minimum} or more"
    if arg.pattern_hint:
        return f"valid: {arg.pattern_hint}"
    if ARGUMENT_TYPES.get(name) == "array" and arg.maximum is not None:
        return f"valid: 1 to {arg.maximum} items"
    if ARGUMENT_TYPES.get(name) == "boolean":
        return "valid values: true, false"
    return f"valid: any {ARGUMENT_TYPES.get(name, 'value')}"


def describe_argument(spec: ModelSpec, name: str) -> dict[str, Any]:
    """JSON Schema-like description of one argument of ``spec``."""
    arg = spec.arguments[name]
    kind = ARGUMENT_TYPES[name]
    out: dict[str, Any] = {"type": kind}
    if kind == "array":
        out["items"] = {"type": "string"}
        out["minItems"] = 1
        if arg.maximum is not None:
            out["maxItems"] = arg.maximum
    if arg.choices:
        out["enum"] = list(arg.choices)
    if arg.minimum is not None:
        out["minimum"] = arg.minimum
    if arg.maximum is not None and kind != "array":
        out["maximum"] = arg.maximum
    if arg.pattern is not None:
        out["pattern"] = arg.pattern
    if arg.pattern_hint:
        out["format_hint"] = arg.pattern_hint
    media = MEDIA_KINDS.get(name)
    if media == "image":
        out["accepts"] = "https URL, data:image/...;base64 URL, or a local path (PNG/JPEG/WEBP)"
    elif media == "audio":
        out["accepts"] = "https URL"
    for marker in PROMPT_MARKERS.get(spec.family, ()):
        if marker.argument == name:
            out["prompt_marker"] = "--" + marker.names[0]
    if arg.note:
        out["note"] = arg.note
    return out


def _rules(spec: ModelSpec) -> list[str]:
    rules = [
        f"{mode.value}: " + (" + ".join(MODE_ARGUMENTS[mode]) or "no image")
        for mode in Mode
        if mode in spec.modes
    ]
    rules += [f"not {ex.first} with {ex.second}: {ex.reason}" for ex in spec.exclusions]
    if spec.size_from is not None:
        rules.append(
            f"{' + '.join(spec.size_from.by)} pick size (see derived_sizes); "
            "a given size must agree with them"
        )
    return rules


def describe(spec: ModelSpec) -> dict[str, Any]:
    """``spec`` as JSON-able data: id, family, modes, every argument's valid values, notes."""
    prompt: dict[str, Any] = {"type": "string", "required": True}
    if spec.family in PROMPT_MARKERS:
        prompt["note"] = (
            "may carry --markers ("
            + ", ".join("--" + n for m in PROMPT_MARKERS[spec.family] for n in m.names)
            + ")"
        )
    out: dict[str, Any] = {
        "id": spec.id,
        "family": spec.family.value,
        "delivery": spec.delivery.value,
        "summary": spec.summary,
        "modes": [mode.value for mode in Mode if mode in spec.modes],
        "arguments": {
            "model": {"type": "string", "const": spec.id, "required": True},
            "prompt": prompt,
            **{name: describe_argument(spec, name) for name in spec.arguments},
        },
        "rules": _rules(spec),
        "notes": list(spec.notes),
    }
    if spec.size_from is not None:
        out["derived_sizes"] = {
            " ".join(key): format_size(size, spec.size_separator)
            for key, size in spec.size_from.table.items()
        }
    return out


def argument_names(names: Iterable[str]) -> list[str]:
    """``names`` in the canonical argument order (unknown names last, as given)."""
    order = {name: index for index, name in enumerate(("model", "prompt", *ARGUMENT_TYPES))}
    return sorted(names, key=lambda n: order.get(n, len(order)))
