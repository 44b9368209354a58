"""A server on the simulator with a fake clock, for in-memory ``mcp.Client`` tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent

from gravitex_mcp.server.app import AppState, build_server
from gravitex_mcp.settings import Settings
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport

# Re-exported: tests written before conftest.py held it import it from here.
from tests.conftest import FakeClock as FakeClock

API_KEY = "sk-test-0123456789"


@dataclass
class Harness:
    settings: Settings
    sim: Simulator
    clock: FakeClock
    server: MCPServer[AppState]
    progress: list[tuple[float, float | None, str | None]] = field(default_factory=list)

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append((progress, total, message))


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    values: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": "https://api.gravitex.ai",
        "output_dir": tmp_path / "videos",
        "state_dir": tmp_path / "state",
        "input_dirs": (inputs.resolve(),),
    }
    values.update(overrides)
    return Settings(**values)


def make_harness(
    tmp_path: Path,
    *,
    sim_config: SimulatorConfig | None = None,
    sim: Simulator | None = None,
    clock: FakeClock | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    **settings_overrides: Any,
) -> Harness:
    clock = clock or FakeClock()
    config = sim_config or SimulatorConfig(
        api_keys=frozenset({API_KEY}), queued_seconds=4, processing_seconds=16
    )
    sim = sim or Simulator(config, clock=clock.monotonic)
    settings = make_settings(tmp_path, **settings_overrides)
    server = build_server(settings, transport=transport or simulator_transport(sim), clock=clock)
    return Harness(settings=settings, sim=sim, clock=clock, server=server)


@asynccontextmanager
async def connected(h: Harness) -> AsyncIterator[Client]:
    async with Client(h.server, raise_exceptions=False) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None, text_of(result)
    return dict(result.structured_content)
