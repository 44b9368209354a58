"""Pack the Claude Desktop extension bundle: ``dist/gravitex-mcp-<version>.mcpb``.

An ``.mcpb`` is a zip with ``manifest.json`` at its root. The manifest uses the
``uv`` server type, so the bundle carries the project (``pyproject.toml`` and the
package) and Claude Desktop installs Python and the dependencies itself.

    python3 scripts/pack_mcpb.py [--out DIR]

``npx @anthropic-ai/mcpb validate manifest.json`` checks the manifest (the test
suite runs it when Node is installed).
"""

from __future__ import annotations

import argparse
import json
import sys
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Files at the top of the bundle, besides the package.
TOP_FILES = ("manifest.json", "pyproject.toml", "README.md", "LICENSE")
PACKAGE = "gravitex_mcp"
#: A fixed timestamp keeps two packs of the same tree byte-identical.
EPOCH = (2026, 1, 1, 0, 0, 0)


def bundle_files(repo: Path = REPO) -> Iterator[tuple[Path, str]]:
    """(file on disk, name in the bundle) for everything the bundle carries, sorted."""
    for name in TOP_FILES:
        yield repo / name, name
    package = repo / PACKAGE
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        yield path, path.relative_to(repo).as_posix()


def pack(out_dir: Path, repo: Path = REPO) -> Path:
    """Write the bundle into ``out_dir``; returns its path."""
    manifest = json.loads((repo / "manifest.json").read_text(encoding="utf-8"))
    target = out_dir / f"{manifest['name']}-{manifest['version']}.mcpb"
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path, name in bundle_files(repo):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bundle.writestr(info, path.read_bytes())
    partial.replace(target)  # no half-written bundle under the final name
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder")
    args = parser.parse_args(argv)
    print(pack(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
