"""What a new user reads: --help names the variables and folders; a typo names the flag."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gravitex_mcp import settings
from gravitex_mcp.cli import main as cli
from gravitex_mcp.settings import ENVIRONMENT_VARIABLES, load_settings
from tests.proc import REPO, clean_env, run_cli


def test_every_variable_the_settings_read_is_listed() -> None:
    source = (REPO / "gravitex_mcp" / "settings.py").read_text()
    read = set(re.findall(r'env\.get\("(GRAVITEX_[A-Z_]+)"\)', source))
    assert read, "the settings read GRAVITEX_* variables"
    assert read == {name for name, _ in ENVIRONMENT_VARIABLES}


def test_help_names_the_environment_variables_and_where_files_go(tmp_path: Path) -> None:
    result = run_cli(["--help"], clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    for name, _ in ENVIRONMENT_VARIABLES:
        assert name in result.stdout, name
    assert f"~/{settings.DEFAULT_OUTPUT_SUBDIR}" in result.stdout
    assert "~/.local/state/gravitex-mcp" in result.stdout
    assert "stderr" in result.stdout


@pytest.mark.parametrize(
    ("args", "flag", "suggestion"),
    [
        (["--ouput-dir", "x"], "--ouput-dir", "--output-dir"),
        (["--simulte"], "--simulte", "--simulate"),
        (["demo", "--modle", "sora-2"], "--modle", "--model"),
        (["serve", "--prot", "9000"], "--prot", "--port"),
        (["--state-dri=/tmp/x", "demo"], "--state-dri", "--state-dir"),
    ],
)
def test_a_mistyped_flag_is_named_with_the_nearest_real_one(
    tmp_path: Path, args: list[str], flag: str, suggestion: str
) -> None:
    result = run_cli(args, clean_env(tmp_path))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert f"unrecognized option {flag}" in line
    assert f"did you mean {suggestion}?" in line
    assert "invalid choice" not in line, "the value after the typo is not taken for a command"


def test_abbreviated_flags_still_work() -> None:
    args = cli.build_parser().parse_args(["--out", "/tmp/v", "demo"])
    assert args.output_dir == "/tmp/v"


def test_input_dirs_come_from_the_flag_before_the_environment(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    args = cli.build_parser().parse_args(["--simulate", "--input-dir", str(a), str(b)])
    env = {"HOME": str(tmp_path), "GRAVITEX_INPUT_DIRS": str(tmp_path / "env")}
    built = load_settings(env, input_dirs=args.input_dir)
    assert built.input_dirs == (a.resolve(), b.resolve())
    empty = cli.build_parser().parse_args(["--simulate", "--input-dir"])
    assert load_settings(env, input_dirs=empty.input_dir).input_dirs == (
        (tmp_path / "env").resolve(),
    )


def test_input_dir_does_not_swallow_a_command(tmp_path: Path) -> None:
    result = run_cli(["--input-dir", str(tmp_path), "demo"], clean_env(tmp_path))
    assert result.returncode == 2
    assert "--input-dir took the command 'demo'" in result.stderr
