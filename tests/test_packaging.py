"""What a user installs from: the extension bundle, the registry entry, the metadata.

``manifest.json`` is checked by the official ``mcpb`` CLI (needs Node; skipped loudly
without it), ``server.json`` against the MCP registry's schema (vendored in
tests/data/), and both against the code: version, tools, environment variables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from gravitex_mcp import __version__
from gravitex_mcp.cli.main import build_parser
from gravitex_mcp.errors import MISSING_API_KEY_MESSAGE
from gravitex_mcp.server.app import build_server
from gravitex_mcp.server.tool_index import summary
from gravitex_mcp.settings import ENVIRONMENT_VARIABLES, load_settings
from tests.conftest import simulator_settings
from tests.proc import REPO

#: The mcpb CLI the manifest is validated with (pinned: a new major may change the rules).
MCPB = "@anthropic-ai/mcpb@2.1.2"
#: Installing the CLI from npm on a cold cache takes a while; validating takes seconds.
NPX_TIMEOUT = 300


def _json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPO / name).read_text(encoding="utf-8"))
    return data


async def _tool_names(tmp_path: Path) -> set[str]:
    settings = simulator_settings(tmp_path)
    return {tool.name for tool in await build_server(settings).list_tools()}


# --- pyproject metadata ---------------------------------------------------------------


def test_metadata_names_the_license_urls_and_pythons() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert "MIT License" in (REPO / "LICENSE").read_text()
    assert "gravitex-mcp developers" in (REPO / "LICENSE").read_text()
    urls = project["urls"]
    assert urls["Repository"] == "https://github.com/gravitex/gravitex-mcp"
    for minor in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {minor}" in project["classifiers"]


# --- manifest.json (Claude Desktop extension) -----------------------------------------


def test_manifest_matches_the_package() -> None:
    manifest = _json("manifest.json")
    assert manifest["manifest_version"] == "0.4"
    assert manifest["version"] == __version__
    assert manifest["server"]["type"] == "uv"
    config = manifest["user_config"]
    assert config["api_key"]["sensitive"] is True
    assert config["output_dir"]["type"] == "directory"
    assert config["input_dirs"]["type"] == "directory"
    assert config["input_dirs"]["multiple"] is True
    env = manifest["server"]["mcp_config"]["env"]
    assert env["GRAVITEX_API_KEY"] == "${user_config.api_key}"
    assert env["GRAVITEX_OUTPUT_DIR"] == "${user_config.output_dir}"
    known = {name for name, _ in ENVIRONMENT_VARIABLES}
    assert set(env) <= known
    # A multiple-directory value expands to several arguments: it must stand alone, last.
    args = manifest["server"]["mcp_config"]["args"]
    assert args[-2:] == ["--input-dir", "${user_config.input_dirs}"]
    assert (REPO / manifest["server"]["entry_point"]).is_file()


def test_manifest_command_line_parses(tmp_path: Path) -> None:
    manifest = _json("manifest.json")
    args = manifest["server"]["mcp_config"]["args"]
    program = args.index("gravitex-mcp")
    # As Claude Desktop would run it with two folders chosen.
    chosen = [str(tmp_path / "a"), str(tmp_path / "b")]
    argv = [*args[program + 1 : -1], *chosen]
    parsed = build_parser().parse_args(argv)
    assert parsed.input_dir == chosen
    assert parsed.command is None  # serve over stdio


async def test_manifest_lists_every_tool_of_the_server(tmp_path: Path) -> None:
    settings = simulator_settings(tmp_path)
    tools = await build_server(settings).list_tools()
    manifest = _json("manifest.json")["tools"]
    assert [t["name"] for t in manifest] == [t.name for t in tools], (
        "manifest.json's tools are stale: run .venv/bin/python scripts/sync_readme.py"
    )
    for entry, tool in zip(manifest, tools, strict=True):
        assert entry["description"] == summary(tool.description), entry["name"]


async def test_the_instructions_name_every_tool(tmp_path: Path) -> None:
    settings = simulator_settings(tmp_path)
    server = build_server(settings)
    text = server.instructions or ""
    for name in await _tool_names(tmp_path):
        assert f"- {name}: " in text, name


@pytest.mark.slow
def test_mcpb_cli_validates_the_manifest(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not installed: cannot run 'mcpb validate' on manifest.json")
    result = subprocess.run(
        [npx, "--yes", MCPB, "validate", str(REPO / "manifest.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=NPX_TIMEOUT,
        check=False,
        env={
            **os.environ,
            "npm_config_update_notifier": "false",
            "npm_config_fund": "false",
        },
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and ("ENOTFOUND" in output or "EAI_AGAIN" in output):
        pytest.skip(f"npm registry unreachable, cannot fetch {MCPB}: {output[-300:]}")
    assert result.returncode == 0, output
    assert "validation passes" in output, output


def test_the_bundle_packs_the_manifest_and_the_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "pack_mcpb.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    bundle = Path(result.stdout.strip().splitlines()[-1])
    assert bundle.name == f"gravitex-mcp-{__version__}.mcpb"
    with zipfile.ZipFile(bundle) as archive:
        names = set(archive.namelist())
        packed_manifest = json.loads(archive.read("manifest.json"))
    assert packed_manifest == _json("manifest.json")
    for needed in ("pyproject.toml", "README.md", "LICENSE", "gravitex_mcp/__main__.py"):
        assert needed in names, needed
    assert "gravitex_mcp/simulator/assets/sample.mp4" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    assert not list(tmp_path.glob("*.partial"))


# --- server.json (MCP registry) --------------------------------------------------------


def test_server_json_validates_against_the_registry_schema() -> None:
    schema = json.loads((REPO / "tests" / "data" / "server.schema.json").read_text())
    document = _json("server.json")
    assert document["$schema"] == schema["$id"]
    jsonschema.validate(document, schema, format_checker=jsonschema.FormatChecker())


def test_the_schema_check_would_catch_a_broken_server_json() -> None:
    schema = json.loads((REPO / "tests" / "data" / "server.schema.json").read_text())
    broken = _json("server.json")
    broken["packages"][0]["version"] = "latest"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_server_json_describes_the_pypi_package_and_its_environment() -> None:
    document = _json("server.json")
    assert document["version"] == __version__
    (package,) = document["packages"]
    assert package["registryType"] == "pypi"
    assert package["identifier"] == "gravitex-mcp"
    assert package["version"] == __version__
    assert package["transport"] == {"type": "stdio"}
    variables = {v["name"]: v for v in package["environmentVariables"]}
    assert set(variables) == {name for name, _ in ENVIRONMENT_VARIABLES}
    assert all(v["description"] for v in variables.values())
    assert variables["GRAVITEX_API_KEY"]["isSecret"] is True
    # The registry proves PyPI ownership by this line in the package's README.
    assert f"mcp-name: {document['name']}" in (REPO / "README.md").read_text()


# --- claude_desktop_config.example.json -------------------------------------------------


def test_the_example_client_config_has_a_real_and_a_simulated_server(tmp_path: Path) -> None:
    servers = _json("claude_desktop_config.example.json")["mcpServers"]
    simulated: dict[str, bool] = {}
    for name, entry in servers.items():
        assert entry["command"] == "gravitex-mcp", name
        args = build_parser().parse_args(entry["args"])
        env = {**entry["env"], "HOME": str(tmp_path)}
        assert set(entry["env"]) <= {n for n, _ in ENVIRONMENT_VARIABLES}, name
        settings = load_settings(env, simulate=args.simulate)
        simulated[name] = settings.simulate
        # A real server has its key; the simulated one needs none.
        assert settings.simulate or settings.api_key, name
    assert sorted(simulated.values()) == [False, True]


def test_the_missing_key_message_names_the_bundles_own_setting() -> None:
    manifest = _json("manifest.json")
    assert manifest["display_name"] in MISSING_API_KEY_MESSAGE
    assert manifest["user_config"]["api_key"]["title"] in MISSING_API_KEY_MESSAGE
    assert manifest["server"]["mcp_config"]["env"]["GRAVITEX_API_KEY"] == ("${user_config.api_key}")
