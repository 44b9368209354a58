"""The server's tools named in one line each, from the tools themselves.

The server's instructions and the bundle's ``manifest.json`` list every tool by
these lines, so neither can miss one (``scripts/sync_readme.py`` writes the
manifest's list; a test compares it with the server's).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

#: A sentence ends at . ! or ? followed by white space (not inside "..." or "e.g.").
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)][.!?])\s")


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str | None: ...


def summary(description: str | None) -> str:
    """The first sentence of a tool's description."""
    text = " ".join((description or "").split())
    return _SENTENCE_END.split(text, maxsplit=1)[0]


def manifest_tools(tools: Sequence[_Named]) -> list[dict[str, str]]:
    """The ``tools`` list of ``manifest.json``: every tool, in the server's order."""
    return [{"name": tool.name, "description": summary(tool.description)} for tool in tools]


INTRO = """\
Make videos with Sora 2, Google Veo, Alibaba Wan and ByteDance Doubao Seedance.
The usual order: list_models, then generate_video (it returns a task_id), then
check_video_task until the task finishes (download: true saves the video).
Pass idempotency_key to generate_video so that a retried call never pays twice.
Videos take 1-5 minutes. Bad arguments are refused before anything is sent (nothing is charged).
The tools:
"""


def instructions(tools: Sequence[_Named]) -> str:
    """The server's instructions: how to go about it, then every tool in one line."""
    return INTRO + "".join(f"- {tool.name}: {summary(tool.description)}\n" for tool in tools)


async def listed_tools() -> list[_Named]:
    """The tools as a client lists them (for the sync script and its test)."""
    import tempfile
    from pathlib import Path

    from ..settings import Settings
    from .app import build_server  # the server imports this module

    # Building the server does no I/O (its lifespan does); the folders are never made.
    nowhere = Path(tempfile.gettempdir()) / "gravitex-mcp-tool-index"
    settings = Settings(api_key=None, simulate=True, output_dir=nowhere, state_dir=nowhere)
    return list(await build_server(settings).list_tools())
