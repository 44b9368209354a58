"""The ``storyboard`` prompt: a video longer than one clip, shot by shot.

Each shot is generated in order; where the model takes a first frame, each shot
after the first starts from the previous shot's last frame (``extract_frames``),
so the shots flow into each other; then ``join_videos`` joins them. The prompt
only writes the plan for the agent: the tools do the work, each call bounded.
"""

from __future__ import annotations

import json
from typing import Final

from ..catalog.describe import valid_values_text
from ..catalog.models import ModelSpec, get_model
from ..domain import Mode
from ..errors import InvalidArgumentsError
from ..redact import clip
from .prompt_args import checked_text, quoted

MIN_SHOTS: Final = 2
MAX_SHOTS: Final = 20  # what join_videos takes
#: The most characters all the shots may take together.
MAX_SHOTS_TEXT: Final = 20_000


def parse_shots(shots: str) -> list[str]:
    """Shots from a JSON list of strings, or one shot per non-empty line."""
    text = checked_text("shots", shots, limit=MAX_SHOTS_TEXT)
    items: list[str]
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentsError.about(
                "shots", f"is not a valid JSON list ({exc.msg}); or give one per line"
            ) from exc
        except RecursionError as exc:  # "[[[[…" thousands deep
            raise InvalidArgumentsError.about(
                "shots", "is nested too deeply; give a flat JSON list of strings"
            ) from exc
        if not isinstance(loaded, list) or not all(isinstance(s, str) for s in loaded):
            raise InvalidArgumentsError.about("shots", "must be a JSON list of strings")
        items = [s.strip() for s in loaded if s.strip()]
    else:
        items = [line.strip() for line in text.splitlines() if line.strip()]
    if not MIN_SHOTS <= len(items) <= MAX_SHOTS:
        raise InvalidArgumentsError.about(
            "shots",
            f"must hold {MIN_SHOTS} to {MAX_SHOTS} shots (a JSON list, or one per "
            f"line); got {len(items)}",
        )
    return items


def _checked_duration(spec: ModelSpec, duration: str | None) -> str | None:
    """``duration`` as digits when ``spec`` takes it; refused here, not shot by shot later."""
    if duration is None or not duration.strip():
        return None
    from ..request.validation import check_value  # the one value check: loaded by the first plan

    text = duration.strip()
    arg = spec.arguments.get("duration")
    if arg is None:
        raise InvalidArgumentsError.about("duration", f"{spec.id} does not take a duration")
    if not (text.isascii() and text.isdigit()):  # '²'.isdigit() is True, int('²') fails
        raise InvalidArgumentsError.about(
            "duration",
            f"{clip(text, 20)!r} is not a whole number of seconds; "
            f"{valid_values_text('duration', arg)}",
        )
    seconds = int(text)
    _, problem = check_value(spec, "duration", seconds, repr(text))
    if problem is not None:
        raise InvalidArgumentsError.about("duration", problem)
    return str(seconds)


def storyboard_text(shots: str, model: str, duration: str | None = None) -> str:
    """The plan the agent follows to make the storyboard (InvalidArgumentsError if bad)."""
    items = parse_shots(shots)
    spec = get_model(model.strip())
    duration = _checked_duration(spec, duration)
    chained = Mode.FIRST_FRAME in spec.modes and spec.takes("image")
    timing = f', "duration": {duration}' if duration else ""
    lines = [f"Make one video from these {len(items)} shots, in this order, with {spec.id}:"]
    # Quoted: a shot's own line breaks cannot start an instruction line.
    lines += [f"{i}. {quoted(shot)}" for i, shot in enumerate(items, 1)]
    lines += [
        "",
        "Steps:",
        f'1. Shot 1: call generate_video with {{"model": "{spec.id}", "prompt": <shot 1>'
        f'{timing}, "download": true, "idempotency_key": "storyboard-<topic>-1"}}; while '
        "it is not finished, call check_video_task with its task_id and download: true.",
    ]
    if chained:
        lines.append(
            "2. Each next shot: call extract_frames on the previous shot's task to get its "
            "last frame, and pass that frame as `image` to generate_video with the next "
            "shot's prompt (same model, duration and aspect ratio, a new idempotency_key "
            "per shot), so each shot starts where the last one ended. Wait for it as above."
        )
    else:
        lines.append(
            f"2. Each next shot: {spec.id} does not start from an image, so generate each "
            "shot from its prompt alone, repeating the subject, setting, lighting and "
            "style words so the shots match (a new idempotency_key per shot)."
        )
    lines += [
        "3. When every shot is saved, call join_videos with all the task_ids in shot order "
        '(and a filename such as "storyboard"); report its path and probe duration.',
        "If a shot fails, fix its prompt or arguments as the error says and generate that "
        "shot again before joining; never resubmit a shot whose task is still running.",
    ]
    return "\n".join(lines)
