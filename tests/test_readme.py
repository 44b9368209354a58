"""The README stays true: its model table matches the catalog, its commands exist."""

from __future__ import annotations

from pathlib import Path

from gravitex_mcp import catalog
from gravitex_mcp.journal import JournalStatus
from gravitex_mcp.model_table import (
    END,
    START,
    STATUS_END,
    STATUS_START,
    models_table,
    replace_block,
    statuses_table,
)
from gravitex_mcp.simulator import SimulatorConfig

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_model_table_is_in_sync_with_the_catalog() -> None:
    assert replace_block(README, models_table()) == README, (
        "README model table is stale: run .venv/bin/python scripts/sync_readme.py"
    )


def test_status_table_is_in_sync_with_the_journal() -> None:
    synced = replace_block(README, statuses_table(), start=STATUS_START, end=STATUS_END)
    assert synced == README, "README status table is stale: run scripts/sync_readme.py"
    block = README[README.index(STATUS_START) : README.index(STATUS_END)]
    for status in JournalStatus:
        assert f"| `{status.value}` |" in block


def test_the_commands_and_the_simulators_markers_are_documented() -> None:
    config = SimulatorConfig()
    for text in (
        f"`{config.fail_marker}`",
        f"`{config.short_marker}`",
        "gravitex-mcp simulator",
        "gravitex-mcp schemas --check",
        "`wan2-1-14b-*`",
        '"args": ["--simulate"]',
    ):
        assert text in README, text


def test_every_model_has_a_row() -> None:
    block = README[README.index(START) : README.index(END)]
    for model_id in catalog.MODEL_IDS:
        assert f"`{model_id}`" in block


def test_the_two_commands_come_first() -> None:
    demo = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/gravitex-mcp demo"
    tests = "python3 scripts/check.py"
    assert demo in README
    assert tests in README
    assert README.index(demo) < README.index("## Use it from your MCP client")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci


def test_every_environment_variable_is_documented() -> None:
    for name in (
        "GRAVITEX_API_KEY",
        "GRAVITEX_BASE_URL",
        "GRAVITEX_OUTPUT_DIR",
        "GRAVITEX_STATE_DIR",
        "GRAVITEX_INPUT_DIRS",
        "GRAVITEX_HTTP_TOKEN",
        "GRAVITEX_SIMULATE",
        "GRAVITEX_LOG_LEVEL",
        "GRAVITEX_PUBLIC_URL",
        "GRAVITEX_MEDIA",
    ):
        assert f"`{name}`" in README, name
