"""The README stays true: its model table matches the catalog, its commands exist."""

from __future__ import annotations

from pathlib import Path

from gravitex_mcp import catalog
from gravitex_mcp.model_table import END, START, models_table, replace_block

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_model_table_is_in_sync_with_the_catalog() -> None:
    assert replace_block(README, models_table()) == README, (
        "README model table is stale: run python3 scripts/sync_readme.py"
    )


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
