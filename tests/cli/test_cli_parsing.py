"""Argument parsing without subprocesses: options around subcommands, ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from gravitex_mcp.cli.main import build_parser
from gravitex_mcp.errors import ConfigurationError
from gravitex_mcp.server.http_app import _host_patterns
from gravitex_mcp.settings import load_settings


def test_options_before_a_subcommand_are_kept() -> None:
    args = build_parser().parse_args(["--output-dir", "/x", "--log-level", "DEBUG", "demo"])
    assert args.command == "demo"
    assert args.output_dir == "/x"
    assert args.log_level == "DEBUG"


def test_options_after_a_subcommand_win() -> None:
    args = build_parser().parse_args(["--output-dir", "/x", "demo", "--output-dir", "/y"])
    assert args.output_dir == "/y"


def test_serve_subcommand_takes_the_serve_options() -> None:
    args = build_parser().parse_args(["serve", "--transport", "sse", "--port", "9001"])
    assert (args.command, args.transport, args.port) == ("serve", "sse", 9001)
    bare = build_parser().parse_args(["--transport", "sse", "serve"])
    assert bare.transport == "sse"
    assert bare.host == "127.0.0.1"


def test_simulator_port_is_its_own() -> None:
    args = build_parser().parse_args(["--port", "9000", "simulator"])
    assert args.sim_port == 8787
    assert args.port == 9000


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "eighty"])
def test_bad_port_is_one_line(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--port", port])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "1 to 65535" in err[0]


def test_ipv6_loopback_host_header_with_port_is_allowed() -> None:
    patterns = _host_patterns("::1", 18934, ())
    assert "[::1]:18934" in patterns
    assert "127.0.0.1:18934" in patterns


def test_plain_http_base_url_needs_a_loopback_host(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "GRAVITEX_BASE_URL": "http://api.gravitex.ai"}
    with pytest.raises(ConfigurationError, match="unencrypted"):
        load_settings(env)
    local = load_settings({**env, "GRAVITEX_BASE_URL": "http://127.0.0.1:8787"})
    assert local.base_url == "http://127.0.0.1:8787"
