"""The layers are kept by the tests: every import-linter contract in pyproject.toml holds,
and a forbidden import added to the package breaks the contract that names it.

scripts/check.py runs ``lint-imports`` before pytest as well; running it here means
``pytest`` alone (the fast suite included) fails on a forbidden import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.proc import CLI_TIMEOUT, REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = [
    c["name"]
    for c in tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "importlinter"
    ]["contracts"]
]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports on the package under ``root`` (its pyproject.toml's contracts)."""
    env = {**os.environ, "PYTHONPATH": str(root)}  # before the editable install's path
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())  # lint-imports wraps long contract names


def test_every_contract_is_kept() -> None:
    result = _lint_imports(REPO)
    out = _one_line(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in out, name
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out


def _add_import(module: Path, line: str) -> None:
    with module.open("a", encoding="utf-8") as f:
        f.write(f"\n{line}\n")


def test_a_forbidden_import_breaks_the_contract_that_names_it(tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    package = tmp_path / "gravitex_mcp"
    shutil.copytree(REPO / "gravitex_mcp", package, ignore=shutil.ignore_patterns("__pycache__"))
    _add_import(package / "store" / "__init__.py", "import av")
    _add_import(package / "service" / "__init__.py", "import httpx2")
    _add_import(package / "catalog" / "__init__.py", "import gravitex_mcp.server")

    result = _lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    out = _one_line(result.stdout)
    broken = {name for name in CONTRACTS if f"{name} BROKEN" in out}
    assert broken == {
        next(n for n in CONTRACTS if n.startswith("PyAV (av) only in video/")),
        next(n for n in CONTRACTS if n.startswith("httpx2 only in upstream/")),
        next(n for n in CONTRACTS if n.startswith("Layers:")),
    }, out
    assert "gravitex_mcp.store -> av" in out
    assert "gravitex_mcp.service -> httpx2" in out
    assert "gravitex_mcp.catalog -> gravitex_mcp.server" in out
    assert f"Contracts: {len(CONTRACTS) - 3} kept, 3 broken." in out
