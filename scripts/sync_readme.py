"""Rewrite the README's model table from the catalog: ``python3 scripts/sync_readme.py``."""

from __future__ import annotations

from pathlib import Path

from gravitex_mcp.model_table import models_table, replace_block

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    README.write_text(replace_block(text, models_table()), encoding="utf-8")


if __name__ == "__main__":
    main()
