"""``gravitex-mcp demo``: the main job end to end, on the simulator.

It starts this server as a subprocess over stdio with ``--simulate`` and drives
it with the official MCP client, the way Claude Desktop would: list models,
generate with progress, wait, download, then the probe of the saved file and
its contact sheet. The last line printed is the saved file's path.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, MCPError, StdioServerParameters
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

from ..catalog import models as catalog
from ..errors import first_failure
from ..settings import Settings
from ..simulator.clips import SHORT_SIDE
from .demo_inputs import demo_arguments, describe_arguments

PROMPT = "A paper boat drifting down a rain-soaked street at dusk, neon reflections"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _text(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def _structured(result: CallToolResult, tool: str) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"{tool} failed: {_text(result)}")
    return dict(result.structured_content)


async def _drive(params: StdioServerParameters | MCPServer[Any], model: str) -> Path:
    """Run the job against ``params`` (a subprocess, or a server in memory for tests)."""
    async with Client(params, read_timeout_seconds=120) as client:
        tools = await client.list_tools()
        _say(f"Connected over stdio; tools: {', '.join(t.name for t in tools.tools)}")

        models = _structured(await client.call_tool("list_models", {}), "list_models")["models"]
        families = sorted({m["family"] for m in models})
        _say(f"{len(models)} models in {len(families)} families: {', '.join(families)}")

        async def progress(progress: float, total: float | None, message: str | None) -> None:
            _say(f"  … {message or progress}")

        # Values the model accepts, read from the catalog (images generated where needed).
        chosen = demo_arguments(catalog.get_model(model), PROMPT)
        _say(f"Generating with {model} ({describe_arguments(chosen)}): {PROMPT!r}")
        arguments = {**chosen, "wait_seconds": 30, "download": True}
        result = _structured(
            await client.call_tool("generate_video", arguments, progress_callback=progress),
            "generate_video",
        )
        task_id = str(result["task_id"])
        _say(f"Task {task_id}: {result['status']}")
        while result.get("path") is None and result["status"] not in ("failed",):
            result = _structured(
                await client.call_tool(
                    "check_video_task",
                    {"task_id": task_id, "wait_seconds": 30, "download": True},
                    progress_callback=progress,
                ),
                "check_video_task",
            )
            _say(f"Task {task_id}: {result['status']}")
        if result["status"] == "failed":
            raise RuntimeError(f"the task failed: {result.get('error')}")
        tasks = _structured(
            await client.call_tool("list_video_tasks", {"limit": 1}), "list_video_tasks"
        )["tasks"]
        _say(f"Journal: {len(tasks)} task(s); newest {tasks[0]['task_id']} {tasks[0]['status']}")
        _say(f"Saved {result['size_bytes']} bytes, sha256 {str(result['sha256'])[:16]}…")
        probe = result.get("probe")
        if probe:
            fps = f"{probe['fps']:g} fps, " if probe.get("fps") else ""
            _say(
                f"Probe: {probe['duration_seconds']:.1f} s, {probe['width']}x{probe['height']}, "
                f"{fps}{probe['video_codec']}, {'with' if probe['has_audio'] else 'no'} audio"
            )
        notes = "; ".join(result["notes"])
        if notes:
            # A size or resolution note is the simulator's doing, not a fault to chase.
            notes += (
                f" (the simulator draws small clips, {SHORT_SIDE} px on the short side: "
                "only their duration and aspect ratio follow the request)"
            )
        _say(f"Notes: {notes or 'none (the clip is what was asked)'}")
        if result.get("preview"):
            _say(f"Contact sheet: {result['preview']['path']}")
        return Path(str(result["path"]))


def run_demo(settings: Settings, *, model: str, state_dir: Path | None = None) -> int:
    """Run the demo; returns the exit status.

    The journal goes to ``state_dir`` when given (``demo --state-dir``), else to a
    temporary folder: a simulated task must not land in the user's real journal.
    """
    with tempfile.TemporaryDirectory(prefix="gravitex-demo-state-") as temp:
        state = str(state_dir) if state_dir is not None else temp
        env = {
            "GRAVITEX_SIMULATE": "1",
            "GRAVITEX_OUTPUT_DIR": str(settings.output_dir),
            "GRAVITEX_STATE_DIR": state,
            "GRAVITEX_LOG_LEVEL": "WARNING",
            "GRAVITEX_SIMULATOR_SECONDS": str(settings.simulator_seconds),
        }
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "gravitex_mcp", "--simulate"], env=env
        )
        try:
            path = anyio.run(_drive, params, model)
        except (RuntimeError, MCPError, OSError, ExceptionGroup) as exc:
            sys.stderr.write(f"gravitex-mcp demo: {first_failure(exc)}\n")
            return 1
    _say("Video saved to:")
    _say(str(path))
    return 0
