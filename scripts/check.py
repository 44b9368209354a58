"""The project's test command: one venv, then lint, format check, type check, tests.

Usage: ``python3 scripts/check.py [pytest args...]``. It needs only Python: it
creates ``.venv`` next to this repo (if missing), installs the package with its
dev extras into it, and runs ruff, mypy, lint-imports and pytest from there. The exit
code is the first failing step's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def _bin(name: str) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    suffix = ".exe" if os.name == "nt" else ""
    return VENV / sub / f"{name}{suffix}"


def _run(*cmd: str | Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    result = subprocess.run([str(c) for c in cmd], cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(result.returncode)


def main(argv: list[str]) -> None:
    if not _bin("python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    py = _bin("python")
    _run(py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", ".[dev]")
    _run(py, "-m", "ruff", "check", ".")
    _run(py, "-m", "ruff", "format", "--check", ".")
    _run(py, "-m", "mypy")
    _run(_bin("lint-imports"))  # the layers: [tool.importlinter] in pyproject.toml
    _run(py, "-m", "pytest", *argv)


if __name__ == "__main__":
    main(sys.argv[1:])
