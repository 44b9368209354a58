"""Validation: the unified arguments checked against the chosen model, before anything is sent.

:func:`validate` reads only the catalog's data; it has no per-model code. It
reports every problem of a call in one :class:`InvalidArgumentsError`, each
naming the field, the model and what is valid:

* an unknown model, an empty prompt;
* an argument the model does not take, a value it does not support;
* Seedance ``--markers`` written in the prompt, checked like the arguments
  they stand for, and refused when they contradict an explicit argument;
* a set of images that is none of the model's modes;
* a pair of settings the model refuses together (``exclusions``);
* a size that disagrees with the aspect ratio or resolution that pick it.

Media values are not looked at here: ``inputs.resolve_media`` checks them
(:mod:`gravitex_mcp.request.prepare` puts both kinds of problems in one error).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..catalog.describe import argument_names, valid_values_text
from ..catalog.markers import FoundMarker, find_prompt_markers, marker_value
from ..catalog.models import (
    ARGUMENT_TYPES,
    CATALOG,
    MEDIA_KINDS,
    MODE_ARGUMENTS,
    MODE_DEFINING_ARGUMENTS,
    MODEL_IDS,
    ModelSpec,
    Value,
    derived_size,
    format_size,
    format_value,
    parse_size,
    takers,
    unknown_model_problem,
)
from ..domain import Mode
from ..errors import InvalidArgumentsError, Problem
from ..redact import clip
from .arguments import MAX_PROMPT_CHARS, SERVER_ARGUMENTS, GenerateVideoInput, VideoArguments
from .problems import NEEDED, json_kind, shown_value

_ECHO_LIMIT = 80
_DESCRIBE_PROMPT: Final = "describe the video to generate (subject, action, scene, camera)"
# Characters that draw nothing although Unicode calls them letters or symbols.
_BLANK_LETTERS: Final = frozenset("\u115f\u1160\u3164\uffa0\u2800")


@dataclass(frozen=True)
class CheckedRequest:
    """A call that passed validation, in the form translation consumes.

    ``arguments`` are the unified arguments the caller gave besides ``model``
    and ``prompt``, normalised (``size`` spelled the model's way); ``settings``
    adds the values of the prompt's ``--markers``; ``in_prompt`` names the
    arguments a marker written in the prompt already carries. ``size`` is the
    given size or the one the ``size_from`` arguments pick (``None``: neither).
    ``notes`` tell the caller about settings that are accepted but will not do
    what they say.
    """

    spec: ModelSpec
    mode: Mode
    prompt: str
    arguments: Mapping[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    in_prompt: frozenset[str] = frozenset()
    size: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Setting:
    """An accepted value and where it came from (the argument, or a prompt marker)."""

    value: Any
    field: str
    shown: str


def validate(args: VideoArguments) -> CheckedRequest:
    """The checked request for ``args`` when the call is valid for its model.

    Raises :class:`InvalidArgumentsError` listing every problem found.
    """
    return check_given(args.given())


def check_given(given: Mapping[str, Any]) -> CheckedRequest:
    """:func:`validate` for the arguments a caller gave (``VideoArguments.given()``)."""
    model_id, prompt = str(given["model"]), str(given["prompt"])
    spec = CATALOG.get(model_id)
    problems: list[Problem] = []
    if spec is None:
        problems.append(unknown_model_problem(model_id))
    prompt_problem = _prompt_problem(prompt)
    if prompt_problem is not None:
        problems.append(Problem("prompt", prompt_problem))
    if spec is None:
        # Without a model nothing else can be judged.
        raise InvalidArgumentsError(problems)
    review = _Review(spec, given, prompt if prompt_problem is None else "")
    problems.extend(review.problems)
    if problems:
        raise InvalidArgumentsError(problems, model=spec.id)
    assert review.mode is not None  # no problems: the media make up a mode
    values = {name: s.value for name, s in review.settings.items()}
    return CheckedRequest(
        spec=spec,
        mode=review.mode,
        prompt=prompt,
        arguments={k: review.settings[k].value for k in given if k not in ("model", "prompt")},
        settings=values,
        in_prompt=review.in_prompt,
        size=_picked_size(spec, values),
        notes=tuple(a.note for a in spec.advisories if a.setting.matches(values)),
    )


def _prompt_problem(prompt: str) -> str | None:
    """Why the prompt is refused before it is read any further, or ``None``."""
    if len(prompt) > MAX_PROMPT_CHARS:
        return (
            f"is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS} characters. "
            "Shorten it: describe the subject, action, scene and camera"
        )
    if not prompt.strip():
        return f"is empty; {_DESCRIBE_PROMPT}"
    if not any(_visible(ch) for ch in prompt):
        return (
            "has no visible character (only zero-width, control or blank characters); "
            + _DESCRIBE_PROMPT
        )
    return None


def _visible(ch: str) -> bool:
    # Cc control, Cf format (zero-width space/joiners, BOM, bidi marks), Z* separators.
    category = unicodedata.category(ch)
    return category[0] != "Z" and category not in ("Cc", "Cf") and ch not in _BLANK_LETTERS


def _picked_size(spec: ModelSpec, values: Mapping[str, Any]) -> tuple[int, int] | None:
    """The given size, else the one the ``size_from`` arguments pick (validated already)."""
    if "size" in values:
        return parse_size(str(values["size"]))
    return derived_size(spec, values)


def parse_request(raw: Mapping[str, Any]) -> GenerateVideoInput:
    """The raw tool arguments as a :class:`GenerateVideoInput`.

    A wrong type, an unknown name or a value outside the unified enums is reported
    in one :class:`InvalidArgumentsError` together with everything the chosen model
    refuses among the other arguments, each naming the model's valid values.
    """
    try:
        return GenerateVideoInput.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
    model_id = raw.get("model")
    spec = CATALOG.get(model_id) if isinstance(model_id, str) else None
    problems: list[Problem] = []
    bad: set[str] = set()
    for error in errors:
        loc = error["loc"]
        name = str(loc[0]) if loc else "arguments"
        if name in bad:
            continue
        bad.add(name)
        field = clip(name, _ECHO_LIMIT) + "".join(
            f"[{part}]" for part in loc[1:] if isinstance(part, int)
        )
        problems.append(Problem(field, _input_problem(spec, name, error)))
    # Judge the other arguments too, so the caller sees every problem at once.
    rest = {k: v for k, v in raw.items() if k not in bad}
    try:
        check_given(GenerateVideoInput.model_validate(rest).given())
    except InvalidArgumentsError as more:
        problems.extend(p for p in more.problems if p.field not in bad)
    except ValidationError:
        pass  # model or prompt is what is missing: reported above
    raise InvalidArgumentsError(problems, model=spec.id if spec else None)


def _input_problem(spec: ModelSpec | None, name: str, error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        names = ["model", "prompt", *spec.arguments] if spec else list(VideoArguments.model_fields)
        return (
            f"is not an argument of generate_video; valid arguments: "
            f"{', '.join(argument_names(names))}, {', '.join(SERVER_ARGUMENTS)}"
        )
    if kind == "missing":
        if name == "model":
            return f"is required; valid values: {', '.join(MODEL_IDS)}"
        return f"is required; {_DESCRIBE_PROMPT}"
    shown = _echo(error.get("input"))
    if name == "model":
        return unknown_model_problem(str(error.get("input"))).message
    needed = NEEDED.get(kind)
    if kind in ("literal_error", "enum") and not isinstance(error.get("input"), str):
        needed = "a string"  # the unified enums are all words: 16 is not "16:9"
    if spec is not None and name in spec.arguments:
        valid = valid_values_text(name, spec.arguments[name])
        if needed is not None:
            # The value's type is what is wrong: say so, or "4 is not valid … 4, 8, 12".
            return f"{_type_problem(error.get('input'), needed)}; {spec.id}'s {valid}"
        # pydantic's text for an enum lists the unified values; the model's follow.
        why = "" if kind in ("literal_error", "enum") else f" ({error['msg']})"
        return f"{shown} is not valid for {spec.id}{why}; {valid}"
    if spec is not None and name in VideoArguments.model_fields and name != "prompt":
        return _not_taken(spec, name)
    if needed is not None:
        return _type_problem(error.get("input"), needed)
    return f"{shown} is not valid: {error['msg']}"


# --- the review ---------------------------------------------------------------------------


@dataclass
class _Review:
    """Every check that needs the model, run once over the given arguments and the prompt."""

    spec: ModelSpec
    given: Mapping[str, Any]
    prompt: str
    problems: list[Problem] = field(default_factory=list)
    settings: dict[str, _Setting] = field(default_factory=dict)
    in_prompt: frozenset[str] = frozenset()
    mode: Mode | None = None

    def __post_init__(self) -> None:
        spec, given = self.spec, self.given
        for name, value in given.items():
            if name in ("model", "prompt"):
                continue
            if not spec.takes(name):
                self.problems.append(Problem(name, _not_taken(spec, name)))
                continue
            shown = _echo(value)
            normal, message = check_value(spec, name, value, shown)
            if message is not None:
                self.problems.append(Problem(name, message))
                continue
            self.settings[name] = _Setting(normal, name, _accepted(normal))
        mentioned = set(given)
        found = find_prompt_markers(self.prompt, spec.family)
        self.in_prompt = frozenset(marker.argument for marker in found)
        self.problems.extend(_review_markers(spec, found, self.settings, mentioned))
        self.mode, problems = _review_mode(spec, given)
        self.problems.extend(problems)
        self.problems.extend(_review_exclusions(spec, self.settings))
        self.problems.extend(_review_size(spec, self.settings, mentioned))


def check_value(spec: ModelSpec, name: str, value: Any, shown: str) -> tuple[Any, str | None]:
    """``(normalised value, None)``, or ``(value, message)`` saying what is valid
    (``name`` is an argument ``spec`` takes; ``shown`` is how errors echo ``value``)."""
    arg = spec.arguments[name]
    if isinstance(value, list) and arg.maximum is not None and len(value) > arg.maximum:
        # Counted before any item is looked at: the items may be large files.
        return value, f"{len(value)} items given; {spec.id} takes {valid_values_text(name, arg)}"
    if name in MEDIA_KINDS or (isinstance(value, bool) and not arg.choices):
        return value, None  # media: inputs.resolve_media checks them; booleans: any
    normal = value
    if name == "size":
        size = parse_size(str(value))
        if size is None:
            return value, f"{shown} is not a size; write it as WxH or W*H (e.g. 1280x720)"
        normal = format_size(size, spec.size_separator)
    unsupported = f"{shown} is not supported by {spec.id}; {valid_values_text(name, arg)}"
    if arg.choices and normal not in arg.choices:
        return value, unsupported
    if isinstance(normal, int) and not isinstance(normal, bool):
        too_low = arg.minimum is not None and normal < arg.minimum
        too_high = arg.maximum is not None and normal > arg.maximum
        if too_low or too_high:
            return value, unsupported
    if arg.pattern is not None and re.search(arg.pattern, str(normal)) is None:
        return value, f"{shown} is not accepted by {spec.id}; {valid_values_text(name, arg)}"
    return normal, None


def _not_taken(spec: ModelSpec, name: str) -> str:
    others = takers(name)
    where = f"models that take it: {', '.join(others)}" if others else "no model takes it"
    takes = ", ".join(argument_names(["model", "prompt", *spec.arguments]))
    return f"{spec.id} does not take {name} ({where}); arguments {spec.id} takes: {takes}"


def _review_markers(
    spec: ModelSpec,
    markers: list[FoundMarker],
    settings: dict[str, _Setting],
    mentioned: set[str],
) -> list[Problem]:
    """Check the prompt's markers; the good ones join ``settings`` (and ``mentioned``)."""
    problems: list[Problem] = []
    seen: dict[str, tuple[FoundMarker, Value]] = {}
    for found in markers:
        argument = found.argument
        mentioned.add(argument)
        where = f"{found} in the prompt"
        if not spec.takes(argument):
            problems.append(Problem("prompt", f"{where}: {_not_taken(spec, argument)}"))
            continue
        arg = spec.arguments[argument]
        if found.raw is None:
            problems.append(
                Problem(
                    "prompt",
                    f"--{found.name} has no value; write --{found.name} <value> "
                    f"({valid_values_text(argument, arg)})",
                )
            )
            continue
        value = marker_value(argument, found.raw)
        if value is None:
            kind = "true or false" if ARGUMENT_TYPES[argument] == "boolean" else "a whole number"
            problems.append(
                Problem(
                    "prompt",
                    f"{where}: {found.raw!r} is not {kind}; {valid_values_text(argument, arg)}",
                )
            )
            continue
        # The prompt's own text, as written there (not a JSON value).
        normal, message = check_value(spec, argument, value, clip(found.raw, _ECHO_LIMIT))
        if message is not None:
            problems.append(Problem("prompt", f"{where}: {message}"))
            continue
        if argument in seen:
            earlier, earlier_value = seen[argument]
            if earlier_value != normal:
                problems.append(
                    Problem("prompt", f"{earlier} and {found} both set {argument}; keep one")
                )
            continue
        seen[argument] = (found, normal)
        explicit = settings.get(argument)
        if explicit is None:
            settings[argument] = _Setting(normal, "prompt", where)
        elif explicit.value != normal:
            problems.append(
                Problem(
                    argument,
                    f"{explicit.shown} conflicts with {where}; set {argument} once, "
                    "as an argument or as a prompt marker",
                )
            )
    return problems


def _review_mode(spec: ModelSpec, given: Mapping[str, Any]) -> tuple[Mode | None, list[Problem]]:
    """The images (and remix id) given must make up exactly one of the model's modes."""
    media = [name for name in MODE_DEFINING_ARGUMENTS if name in given]
    if any(not spec.takes(name) for name in media):
        return None, []  # already reported as not taken
    for mode in spec.modes:
        if set(MODE_ARGUMENTS[mode]) == set(media):
            return mode, []
    modes = "; ".join(
        f"{mode.value} ({' + '.join(MODE_ARGUMENTS[mode]) or 'no image'})"
        for mode in Mode
        if mode in spec.modes
    )
    if not media:
        needed = next(n for mode in Mode if mode in spec.modes for n in MODE_ARGUMENTS[mode])
        message = f"is required by {spec.id}, which has no text-to-video mode; its modes: {modes}"
        return None, [Problem(needed, message)]
    call = f"{media[0]} alone" if len(media) == 1 else " + ".join(media) + " together"
    return None, [Problem(media[-1], f"{call} is not a mode of {spec.id}; its modes: {modes}")]


def _review_exclusions(spec: ModelSpec, settings: Mapping[str, _Setting]) -> list[Problem]:
    values = {name: s.value for name, s in settings.items()}
    problems: list[Problem] = []
    for exclusion in spec.exclusions:
        if not (exclusion.first.matches(values) and exclusion.second.matches(values)):
            continue
        second = settings[exclusion.second.argument]
        message = (
            f"{second.shown} cannot be combined with {exclusion.first} on {spec.id}: "
            f"{exclusion.reason}"
        )
        choices = spec.arguments[exclusion.second.argument].choices
        others = [format_value(c) for c in choices if c != exclusion.second.value]
        if others:
            message += f"; valid values with {exclusion.first.argument}: {', '.join(others)}"
        problems.append(Problem(second.field, message))
    return problems


def _review_size(
    spec: ModelSpec, settings: Mapping[str, _Setting], mentioned: set[str]
) -> list[Problem]:
    """The arguments that pick the size must all be there, pick one, and agree with size."""
    derivation = spec.size_from
    if derivation is None or not any(name in mentioned for name in derivation.by):
        return []
    if any(name in mentioned and name not in settings for name in (*derivation.by, "size")):
        return []  # a refused value: already reported
    by = " + ".join(derivation.by)
    missing = [name for name in derivation.by if name not in settings]
    if missing:
        given = ", ".join(
            f"{name} {settings[name].shown}" for name in derivation.by if name in settings
        )
        choices = valid_values_text(missing[0], spec.arguments[missing[0]])
        instead = "leave out " + given if "size" in settings else "give size instead"
        return [
            Problem(
                missing[0],
                f"{spec.id} picks size from {by} together, and {given} came without "
                f"{missing[0]}: add {missing[0]} ({choices}) or {instead}",
            )
        ]
    key = tuple(str(settings[name].value) for name in derivation.by)
    combo = " + ".join(f"{name} {settings[name].shown}" for name in derivation.by)
    picked = derivation.table.get(key)
    if picked is None:
        valid = "; ".join(
            " ".join(k) + " -> " + format_size(v, spec.size_separator)
            for k, v in derivation.table.items()
        )
        last = derivation.by[-1]
        return [
            Problem(
                settings[last].field,
                f"{spec.id} has no size for {combo}; valid combinations: {valid}",
            )
        ]
    size = settings.get("size")
    if size is not None and size.value != format_size(picked, spec.size_separator):
        return [
            Problem(
                "size",
                f"{size.shown} does not match {combo}, which picks "
                f"{format_size(picked, spec.size_separator)} on {spec.id}; give size alone, "
                f"or {by} alone",
            )
        ]
    return []


def _echo(value: Any) -> str:
    """A short rendering of a caller's value as JSON writes it (``"4"`` is a string, ``4``
    a number): no query strings, at most 80 characters."""
    if isinstance(value, list):
        return f"a list of {len(value)} items"  # never the items: they may be data URLs
    if isinstance(value, str) and "://" in value and "?" in value:
        value = value.split("?", 1)[0] + "?…"
    return shown_value(value, _ECHO_LIMIT)


def _accepted(value: Any) -> str:
    """An accepted value as later messages show it: as the valid values are written
    (``16:9``, not ``"16:9"``), clipped, never a list's items or a URL's query."""
    if isinstance(value, str):
        if "://" in value and "?" in value:
            value = value.split("?", 1)[0] + "?…"
        return clip(value, _ECHO_LIMIT)
    return _echo(value)


def _type_problem(value: Any, needed: str) -> str:
    """``"4" is a string, not an integer (write 4, without quotes)``."""
    problem = f"{_echo(value)} is {json_kind(value)}, not {needed}"
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if parsed is not None and NEEDED.get(_pydantic_type(parsed)) == needed:
            problem += f" (write {value.strip()}, without quotes)"
    return problem


def _pydantic_type(value: Any) -> str:
    """The type-error code a value of ``value``'s kind would be refused under."""
    if isinstance(value, bool):
        return "bool_type"
    if isinstance(value, int):
        return "int_type"
    if isinstance(value, float):
        return "float_type"
    return ""
