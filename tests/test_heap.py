"""The server freezes its start-up heap before serving: the collector's full passes,
which run on the event loop thread, then never walk the modules, SDK and schemas."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import anyio
import pytest

from gravitex_mcp.cli import main as cli


def test_settle_heap_moves_what_exists_out_of_the_collectors_reach() -> None:
    kept = [object() for _ in range(10)]  # noqa: F841 - alive across the freeze
    try:
        cli.settle_heap()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
def test_the_heap_is_frozen_when_serving_begins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    frozen_at_serving: list[int] = []

    def fake_run(*_args: Any, **_kwargs: Any) -> None:
        frozen_at_serving.append(gc.get_freeze_count())

    monkeypatch.setattr(anyio, "run", fake_run)  # the module cli calls
    env = {
        "GRAVITEX_OUTPUT_DIR": str(tmp_path / "videos"),
        "GRAVITEX_STATE_DIR": str(tmp_path / "state"),
        "GRAVITEX_API_KEY": "sk-test",
        "HOME": str(tmp_path),
    }
    argv = ["--transport", transport]
    if transport != "stdio":
        argv += ["--host", "127.0.0.1", "--port", "8765"]
    try:
        assert gc.get_freeze_count() == 0
        assert cli.run(argv, env) == 0
    finally:
        gc.unfreeze()
    assert len(frozen_at_serving) == 1
    assert frozen_at_serving[0] > 0
