"""The ``gravitex-mcp`` command as a user runs it: a real subprocess, a clean environment.

Every failure a user can cause at start-up ends with exit status 2 and exactly one
line on stderr that names the fix: no traceback, no usage dump.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gravitex_mcp import __version__
from tests.proc import REPO, clean_env, free_port, run_cli

pytestmark = pytest.mark.slow  # each test runs the CLI in a subprocess


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused start, after checking its shape."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("gravitex-mcp"), line
    assert "error" in line, line
    assert "Traceback" not in result.stderr
    assert "usage:" not in result.stderr
    assert result.stdout == ""
    return line


def test_clean_env_drops_the_runners_gravitex_settings(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAVITEX_API_KEY", "sk-from-the-machine")
    monkeypatch.setenv("GRAVITEX_SIMULATE", "1")
    env = clean_env(home)
    assert not [k for k in env if k.startswith("GRAVITEX_")]
    assert env["HOME"] == str(home)


# --- information ---------------------------------------------------------------------


def test_version(home: Path) -> None:
    result = run_cli(["--version"], clean_env(home))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"gravitex-mcp {__version__}"


def test_help_lists_commands_and_flags(home: Path) -> None:
    result = run_cli(["--help"], clean_env(home))
    assert result.returncode == 0, result.stderr
    for word in ("demo", "simulator", "schemas", "--simulate", "--transport"):
        assert word in result.stdout, word
    for transport in ("stdio", "sse", "streamable-http"):
        assert transport in result.stdout, transport


# --- refused starts: one line, exit 2 -----------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--bogus"], "--bogus"),
        (["--transport", "carrier-pigeon"], "carrier-pigeon"),
        (["--port", "eighty"], "eighty"),
        (["--log-level", "LOUD"], "LOUD"),
        (["demo", "--bogus"], "--bogus"),
        (["simulator", "--port", "eighty"], "eighty"),
        (["schemas", "--frobnicate"], "--frobnicate"),
    ],
)
def test_bad_flag_is_one_line(home: Path, args: list[str], named: str) -> None:
    line = one_error_line(run_cli(args, clean_env(home)))
    assert named in line


@pytest.mark.parametrize("key", [None, "  "])
def test_a_missing_or_blank_key_starts_anyway_and_warns(home: Path, key: str | None) -> None:
    # Exiting here would show a client only "Failed to connect" (tests/test_new_user.py
    # has the whole conversation); stdin at EOF ends the stdio server cleanly.
    extra = {} if key is None else {"GRAVITEX_API_KEY": key}
    result = run_cli([], clean_env(home, **extra))
    assert result.returncode == 0, result.stderr
    assert "GRAVITEX_API_KEY is not set" in result.stderr
    assert "--simulate" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("variable", ["GRAVITEX_OUTPUT_DIR", "GRAVITEX_STATE_DIR"])
def test_unwritable_folder_names_the_variable(home: Path, variable: str) -> None:
    # A folder under a regular file cannot be created, even by root (chmod would not stop it).
    blocker = home / "a-file"
    blocker.write_text("not a folder")
    env = clean_env(home, **{variable: str(blocker / "videos")})
    line = one_error_line(run_cli(["--simulate"], env))
    assert variable in line
    assert str(blocker / "videos") in line


def test_demo_with_unwritable_output_folder_is_one_line(home: Path) -> None:
    blocker = home / "a-file"
    blocker.write_text("not a folder")
    env = clean_env(home, GRAVITEX_OUTPUT_DIR=str(blocker / "videos"))
    line = one_error_line(run_cli(["demo"], env))
    assert "GRAVITEX_OUTPUT_DIR" in line


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GRAVITEX_LOG_LEVEL", "LOUD"),
        ("GRAVITEX_SIMULATOR_SECONDS", "-3"),
        ("GRAVITEX_BASE_URL", "ftp://api.gravitex.ai"),
    ],
)
def test_bad_environment_value_is_one_line(home: Path, variable: str, value: str) -> None:
    line = one_error_line(run_cli(["--simulate"], clean_env(home, **{variable: value})))
    assert variable in line


def test_public_bind_without_token_is_refused_before_binding(home: Path) -> None:
    args = ["--simulate", "--transport", "streamable-http", "--host", "0.0.0.0"]
    args += ["--port", str(free_port())]
    result = run_cli(args, clean_env(home))
    line = one_error_line(result)
    assert "GRAVITEX_HTTP_TOKEN" in line
    assert "0.0.0.0" in line
    # The only line on stderr is the refusal: no "serving over", no uvicorn start-up.
    assert "Uvicorn" not in result.stderr


# --- commands that succeed ----------------------------------------------------------


def test_schemas_check_passes_on_the_committed_files(home: Path) -> None:
    result = run_cli(["schemas", "--check"], clean_env(home), cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (REPO / "tool_schemas").is_dir()


def test_schemas_check_fails_on_stale_files(home: Path, tmp_path: Path) -> None:
    stale = tmp_path / "tool_schemas"
    stale.mkdir()
    result = run_cli(["schemas", "--check", "--dir", str(stale)], clean_env(home))
    assert result.returncode == 1, result.stdout + result.stderr
    assert not any(stale.iterdir()), "--check must not write"


def test_demo_saves_a_real_mp4_and_prints_its_path_last(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "videos"
    env = clean_env(home, GRAVITEX_OUTPUT_DIR=str(out), GRAVITEX_SIMULATOR_SECONDS="1")
    result = run_cli(["demo"], env, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.splitlines()[-1]
    path = Path(last)
    assert path.is_absolute(), last
    assert path.suffix == ".mp4", last
    assert path.is_file(), last
    assert path.resolve().parent == out.resolve()
    with path.open("rb") as f:
        head = f.read(12)
    assert head[4:8] == b"ftyp", head
    # It shows what was made: the probe of the file and where its contact sheet is.
    assert "Probe: 4.0 s, 284x160, 8 fps, h264, no audio" in result.stdout
    sheets = [line for line in result.stdout.splitlines() if line.startswith("Contact sheet: ")]
    assert sheets == [f"Contact sheet: {path.with_name(path.stem + '.contact.jpg')}"]
    assert path.with_name(path.stem + ".contact.jpg").read_bytes()[:2] == b"\xff\xd8"
    # The demo's simulated task stays out of the user's own journal.
    assert not list(home.rglob("tasks.sqlite3*"))
