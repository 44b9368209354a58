"""The server freezes its start-up heap before serving: the collector's full passes,
which run on the event loop thread, then never walk the modules, SDK and schemas."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gravitex_mcp.cli import main as cli


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """settle_heap changes the collector process-wide: put it back for the other tests."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


@pytest.mark.usefixtures("restore_gc")
def test_settle_heap_moves_what_exists_out_of_the_collectors_reach() -> None:
    kept = [object() for _ in range(10)]  # noqa: F841 - alive across the freeze
    cli.settle_heap()
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restore_gc")
def test_a_burst_of_live_objects_sets_off_no_full_collection() -> None:
    """300k containers that stay alive (the calls in flight under load) went through
    generation 0 and 1 ~430 and ~40 times: with Python's thresholds that made about
    four full passes, each walking all of them on the event loop."""
    cli.settle_heap()
    full = gc.get_stats()[2]["collections"]
    kept: list[list[object]] = [[] for _ in range(300_000)]
    assert gc.get_stats()[2]["collections"] == full, len(kept)


@pytest.mark.usefixtures("restore_logging", "restore_gc")  # cli.run configures both
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
    assert gc.get_freeze_count() == 0
    assert cli.run(argv, env) == 0
    assert len(frozen_at_serving) == 1
    assert frozen_at_serving[0] > 0
