"""Rewrite what is generated from the code: ``.venv/bin/python scripts/sync_readme.py``.

The README's model table (from the catalog) and status table (from the journal's
status enum), and the ``tools`` list of ``manifest.json`` (from the server's tools).
Tests fail while any of them is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio

from gravitex_mcp.server.model_table import (
    STATUS_END,
    STATUS_START,
    models_table,
    replace_block,
    statuses_table,
)
from gravitex_mcp.server.tool_index import listed_tools, manifest_tools

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MANIFEST = ROOT / "manifest.json"


def synced_readme(text: str) -> str:
    """``text`` (the README) with both generated tables rewritten."""
    text = replace_block(text, models_table())
    return replace_block(text, statuses_table(), start=STATUS_START, end=STATUS_END)


async def synced_manifest(text: str) -> str:
    """``text`` (manifest.json) with its ``tools`` list rewritten from the server's."""
    manifest: dict[str, Any] = json.loads(text)
    manifest["tools"] = manifest_tools(await listed_tools())
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    README.write_text(synced_readme(README.read_text(encoding="utf-8")), encoding="utf-8")
    manifest = anyio.run(synced_manifest, MANIFEST.read_text(encoding="utf-8"))
    MANIFEST.write_text(manifest, encoding="utf-8")


if __name__ == "__main__":
    main()
