"""MCP prompts (clients show them as slash commands): make_video, continue_video, storyboard.

Each returns one user message telling the agent the steps with this server's
tools, so a person can start a job by picking the command and typing an idea.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts import Prompt
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import Field, ValidationError

from ..catalog import models as catalog
from ..errors import InvalidArgumentsError
from .prompt_args import checked_seconds, checked_task_id, checked_text, quoted

logger = logging.getLogger(__name__)


def _model_line(model: str | None) -> str:
    if model:
        spec = catalog.get_model(model.strip())  # an unknown id names the valid ones
        return (
            f"Use the model {spec.id}. If you are not sure which durations, sizes or "
            "modes it accepts, call list_models first and pick valid values from it."
        )
    return (
        "Call list_models first and choose the model that fits the idea best "
        f"(for example {catalog.MODEL_IDS[0]} or {catalog.MODEL_IDS[3]}); use only the "
        "durations, aspect ratios and resolutions it lists."
    )


def make_video_text(idea: str, model: str | None = None, seconds: str | None = None) -> str:
    """The ``make_video`` instructions for ``idea`` (InvalidArgumentsError if an argument
    is bad); the idea is quoted, so it cannot add an instruction line."""
    idea = checked_text("idea", idea)
    model_line = _model_line(model)
    length = (
        f"Aim for about {checked_seconds('seconds', seconds)} seconds: use the nearest "
        "duration the model allows."
        if seconds and seconds.strip()
        else "Use the model's shortest duration unless the idea needs more."
    )
    return "\n".join(
        [
            f"Make a video of this idea (in quotes): {quoted(idea)}",
            "",
            "Steps:",
            f"1. {model_line}",
            f"2. {length}",
            "3. Write a vivid prompt (subject, action, setting, camera, light) and call "
            "generate_video with download: true.",
            "4. If the task is not finished when the call returns, call check_video_task "
            "with its task_id and download: true until it has a path.",
            "5. Tell me where the video was saved, and if the result includes a contact "
            "sheet (a grid of frames), show it so I can see the video at a glance.",
            "If an argument is refused, read the error: it names the valid values.",
        ]
    )


def continue_video_text(task_id: str, idea: str | None = None) -> str:
    """The ``continue_video`` instructions for the task ``task_id`` (InvalidArgumentsError
    if an argument is bad); the id is checked, the idea quoted."""
    task_id = checked_task_id("task_id", task_id)
    next_part = (
        f"what happens next (in quotes): {quoted(checked_text('idea', idea))}"
        if idea and idea.strip()
        else "a natural continuation of the scene"
    )
    return "\n".join(
        [
            f"Continue the video of task {task_id} with {next_part}.",
            "",
            "Steps:",
            f"1. Read the task (resource gravitex://tasks/{task_id} or check_video_task) "
            "for its model and prompt; download it first if it has no saved path.",
            f'2. Call extract_frames with task_id "{task_id}" and at: ["last"] to get its '
            "last frame as an image file.",
            "3. Call generate_video with the same model when it accepts an image "
            "(list_models shows each model's modes; otherwise pick one that does), the "
            "last frame's path as image, a prompt that carries the scene on, and "
            "download: true.",
            "4. Wait with check_video_task until it has a path, then tell me where both "
            "parts are saved and show the contact sheet if the result includes one.",
        ]
    )


def register_prompts(server: MCPServer[Any]) -> None:
    """Add ``make_video``, ``continue_video`` and ``storyboard`` to ``server``."""

    def make_video(
        idea: Annotated[str, Field(description="What the video should show.")],
        model: Annotated[
            str | None,
            Field(description="A model id from list_models (optional: the agent picks one)."),
        ] = None,
        seconds: Annotated[
            str | None, Field(description="About how long, in seconds (optional).")
        ] = None,
    ) -> str:
        return make_video_text(idea, model, seconds)

    def continue_video(
        task_id: Annotated[str, Field(description="The task id of the video to continue.")],
        idea: Annotated[str | None, Field(description="What happens next (optional).")] = None,
    ) -> str:
        return continue_video_text(task_id, idea)

    def storyboard(
        shots: Annotated[
            str,
            Field(description="The shots in order: a JSON list of strings, or one per line."),
        ],
        model: Annotated[
            str, Field(description="The model id for every shot.")
        ] = catalog.MODEL_IDS[0],
        duration: Annotated[
            str | None, Field(description="Seconds per shot (one the model takes).")
        ] = None,
    ) -> str:
        from .storyboard import storyboard_text  # loaded by the first storyboard

        return storyboard_text(shots, model, duration)

    # Each prompt is named after its function.
    for fn, title, description in (
        (
            make_video,
            "Make a video",
            "Turn an idea into a saved video: pick a model, generate, download, show it.",
        ),
        (
            continue_video,
            "Continue a video",
            "Make the next shot of a finished video, starting from its last frame.",
        ),
        (
            storyboard,
            "Storyboard: a longer video, shot by shot",
            "Plan a video longer than one clip: each shot generated in order (from the "
            "previous shot's last frame where the model takes an image), then joined.",
        ),
    ):
        server.add_prompt(CheckedPrompt.from_function(fn, title=title, description=description))


class CheckedPrompt(Prompt):
    """A prompt whose every failure is a prompt error naming the argument.

    The SDK turns any exception but ``MCPError`` into a bare "Error rendering prompt":
    the person would never see which argument to change. Here a refused argument
    (wrong type, too deep, not valid) names it and what is valid; anything else is
    logged with its traceback and named by its class.
    """

    async def render(self, arguments: dict[str, Any] | None, context: Any) -> Any:
        known = {a.name for a in self.arguments or []}
        unknown = sorted(set(arguments or {}) - known)
        if unknown:
            raise self._invalid(
                f"{', '.join(unknown)}: not an argument of {self.name} "
                f"(it takes {', '.join(sorted(known))})"
            )
        try:
            return await super().render(arguments, context)
        except MCPError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

    def _invalid(self, problems: str) -> MCPError:
        return MCPError(INVALID_PARAMS, f"Invalid {self.name} arguments: {problems}")

    def _error(self, exc: Exception) -> MCPError:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if isinstance(cause, InvalidArgumentsError):
            return self._invalid("; ".join(str(p) for p in cause.problems))
        if isinstance(cause, ValidationError):
            wrong = []
            for error in cause.errors():
                where = ".".join(str(part) for part in error["loc"]) or "arguments"
                wrong.append(f"{where}: {error['msg']} (every argument is a string)")
            return self._invalid("; ".join(dict.fromkeys(wrong)))
        if isinstance(cause, RecursionError):
            return self._invalid("an argument is nested too deeply to read")
        if isinstance(exc, ValueError) and str(exc).startswith("Missing required arguments"):
            return self._invalid(str(exc))
        logger.error("prompt %s raised an unexpected exception", self.name, exc_info=cause)
        return MCPError(
            INTERNAL_ERROR,
            f"Internal error ({type(cause).__name__}) rendering the {self.name} prompt; it "
            "is logged with its traceback.",
        )
