"""The source distribution carries what its tests need, and they pass from it.

Builds the sdist with hatchling (no network: the backend is a dev dependency),
unpacks it, checks that every test file and everything the tests read is in it,
then runs the packaging and README tests from the unpacked tree. The whole suite
from an unpacked sdist is a documented manual check (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.proc import REPO

pytestmark = pytest.mark.slow  # builds the sdist and runs tests from it

#: Files outside the package that tests open (relative to the project root).
READ_BY_TESTS = (
    "README.md",
    "LICENSE",
    "manifest.json",
    "server.json",
    ".ci/run",
    "scripts/pack_mcpb.py",
    "scripts/check.py",
    "scripts/team.py",  # imported by tests/test_team_e2e.py
    "tests/data/server.schema.json",
    "gravitex_mcp/simulator/assets/sample.mp4",
)


def _build_and_unpack(tmp_path: Path) -> Path:
    out = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(tmp_path / "unpacked", filter="data")
        else:  # pragma: no cover - our own archive, built just above
            tar.extractall(tmp_path / "unpacked")
    (root,) = (tmp_path / "unpacked").iterdir()
    return root


def test_the_sdist_holds_every_test_and_what_the_tests_read(tmp_path: Path) -> None:
    root = _build_and_unpack(tmp_path)
    for name in READ_BY_TESTS:
        assert (root / name).is_file(), f"{name} is missing from the sdist"
    tests = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "tests").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    packed = {
        p.relative_to(root).as_posix()
        for p in (root / "tests").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert tests <= packed, sorted(tests - packed)
    assert not (root / ".venv").exists()


def test_tests_pass_from_the_unpacked_sdist(tmp_path: Path) -> None:
    root = _build_and_unpack(tmp_path)
    probe = "import gravitex_mcp, sys; sys.stdout.write(gravitex_mcp.__file__)"
    where = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert Path(where).is_relative_to(root), "the tests below must import the unpacked copy"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_readme.py",
            "tests/test_packaging.py",
            "tests/cli/test_schemas.py",
            "-k",
            "not mcpb_cli",  # the npm download is covered by the main run
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
