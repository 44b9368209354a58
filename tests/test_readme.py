"""The README stays true: its tables match the code, its commands run as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from gravitex_mcp.catalog import models as catalog
from gravitex_mcp.domain import JournalStatus
from gravitex_mcp.server.model_table import (
    END,
    START,
    STATUS_END,
    STATUS_START,
    models_table,
    replace_block,
    statuses_table,
)
from gravitex_mcp.simulator import SimulatorConfig
from tests.proc import STARTUP_TIMEOUT, clean_env, free_port, stop

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_model_table_is_in_sync_with_the_catalog() -> None:
    assert replace_block(README, models_table()) == README, (
        "README model table is stale: run .venv/bin/python scripts/sync_readme.py"
    )


def test_status_table_is_in_sync_with_the_journal() -> None:
    synced = replace_block(README, statuses_table(), start=STATUS_START, end=STATUS_END)
    assert synced == README, "README status table is stale: run scripts/sync_readme.py"
    block = README[README.index(STATUS_START) : README.index(STATUS_END)]
    for status in JournalStatus:
        assert f"| `{status.value}` |" in block


def test_the_commands_and_the_simulators_markers_are_documented() -> None:
    config = SimulatorConfig()
    for text in (
        f"`{config.fail_marker}`",
        f"`{config.short_marker}`",
        "gravitex-mcp simulator",
        "gravitex-mcp schemas --check",
        "`wan2-1-14b-*`",
        '"args": ["--simulate"]',
    ):
        assert text in README, text


def test_every_model_has_a_row() -> None:
    block = README[README.index(START) : README.index(END)]
    for model_id in catalog.MODEL_IDS:
        assert f"`{model_id}`" in block


def test_the_two_commands_come_first() -> None:
    demo = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/gravitex-mcp demo"
    tests = "python3 scripts/check.py"
    assert demo in README
    assert tests in README
    assert README.index(demo) < README.index("## Use it from your MCP client")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci


def test_every_environment_variable_is_documented() -> None:
    for name in (
        "GRAVITEX_API_KEY",
        "GRAVITEX_BASE_URL",
        "GRAVITEX_OUTPUT_DIR",
        "GRAVITEX_STATE_DIR",
        "GRAVITEX_INPUT_DIRS",
        "GRAVITEX_HTTP_TOKEN",
        "GRAVITEX_SIMULATE",
        "GRAVITEX_LOG_LEVEL",
        "GRAVITEX_PUBLIC_URL",
        "GRAVITEX_MEDIA",
    ):
        assert f"`{name}`" in README, name


# --- the README's commands, run as written in a fresh clone -----------------------------
#
# Every command the README shows (in an sh block, or inline starting with a program) is
# either run below, as written, from a fresh clone after the README's first command, or
# set aside with the reason it cannot run here. A command added to the README fails
# test_every_readme_command_is_run_or_set_aside until it is one or the other.

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_PROGRAMS = (
    *("python3 ", "python ", ".venv/bin/", "gravitex-mcp ", "pip "),
    *("uvx ", "uv ", "npm ", "npx ", "claude "),
)

#: The README's first command: it makes the clone's .venv (once per test session).
FIRST = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/gravitex-mcp demo"
#: Run as written, in this order (later ones use what earlier ones made).
RUN = (
    "python3 scripts/pack_mcpb.py",
    ".venv/bin/pip wheel --no-deps --wheel-dir dist .",
    ".venv/bin/pip install dist/gravitex_mcp-*.whl",
    ".venv/bin/gravitex-mcp --help",
    ".venv/bin/gravitex-mcp schemas --check",
    ".venv/bin/python -m gravitex_mcp.cli.schemas",
    ".venv/bin/python -m gravitex_mcp.cli.schemas --check",
    ".venv/bin/python scripts/sync_readme.py",
)
#: Servers: started as written but on a free port (another test may hold the README's),
#: and stopped once the URL answers as it should.
SERVE = {
    ".venv/bin/gravitex-mcp --transport streamable-http --port 8000": "/healthz",
    ".venv/bin/gravitex-mcp --transport sse --port 8000": "/healthz",
    ".venv/bin/gravitex-mcp simulator --port 8787": "/_simulator/state",
}
#: Run as written when their program is installed (else skipped, saying so).
NEEDS = {"uvx --from . gravitex-mcp --simulate --help": "uvx"}
#: Not run here, and why.
ASIDE = {
    FIRST: "the clone fixture runs it, once per session",
    "python3 scripts/check.py": "it is this test suite (CI runs it through .ci/run)",
    '.venv/bin/python -m pytest -m "not slow"': "it is the fast part of this test suite",
    "claude mcp add gravitex --env GRAVITEX_API_KEY=sk-your-key -- gravitex-mcp": (
        "it changes the user's Claude Code configuration"
    ),
    "claude mcp add gravitex --env GRAVITEX_API_KEY=sk-your-key -- uvx --from "
    "/path/to/clone gravitex-mcp": "it changes the user's Claude Code configuration",
    "uvx gravitex-mcp": "the package is on PyPI only after the first release",
    "npm ci && npm run build": "it rebuilds the committed player (tests/test_player_* test it)",
    ".venv/bin/python scripts/team.py": (
        "it needs PostgreSQL 15 and SeaweedFS, which the clone's venv lacks; "
        "tests/test_team_e2e.py runs it as written"
    ),
}
#: A command's output must show it did its job, not only exit 0.
SHOWS = {
    FIRST: "Video saved to:",
    ".venv/bin/gravitex-mcp --help": "schemas",
    "uvx --from . gravitex-mcp --simulate --help": "--simulate",
}
#: Bound on one command (an install or a wheel build is the slowest, ~30 s alone).
COMMAND_TIMEOUT = 300.0


def readme_commands(text: str) -> list[str]:
    """The commands in ``text``: each line of its sh blocks (without ``# comments``),
    and each inline code span that starts with a program; in order, once each."""
    found: list[str] = []
    for language, body in _FENCE.findall(text):
        if language in ("sh", "bash", "shell"):
            for line in body.splitlines():
                command = re.sub(r"\s+#.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.append(command)
    for span in re.findall(r"`([^`]+)`", _FENCE.sub("", text)):
        command = " ".join(span.split())
        if command.startswith(_PROGRAMS):
            found.append(command)
    return list(dict.fromkeys(found))


def test_every_readme_command_is_run_or_set_aside() -> None:
    commands = readme_commands(README)
    assert commands[0] == FIRST
    classified = [*RUN, *SERVE, *NEEDS, *ASIDE]
    assert len(classified) == len(set(classified))
    assert sorted(commands) == sorted(classified), (
        "a README command is neither run by tests/test_readme.py nor set aside with a reason"
    )


@dataclass(frozen=True)
class Clone:
    """A fresh clone of this checkout after the README's first command."""

    root: Path
    env: dict[str, str]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", command],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )


def _ok(result: subprocess.CompletedProcess[str], command: str) -> None:
    assert result.returncode == 0, f"{command!r} failed:\n{result.stdout[-2000:]}{result.stderr}"
    if command in SHOWS:
        assert SHOWS[command] in result.stdout, (command, result.stdout[-2000:])


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an unpacked sdist): nothing to clone")
    base = tmp_path_factory.mktemp("readme")
    root = base / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(root)], check=True, timeout=120)
    # The clone holds the commit; the files as they are now (edited, new) are what
    # a commit of this checkout would hold.
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    subprocess.run(["git", "add", "--all"], cwd=root, check=True, timeout=60)
    home = base / "home"
    home.mkdir()
    env = clean_env(home)
    # The clone's own .venv, not the one running these tests.
    env.pop("VIRTUAL_ENV", None)
    made = Clone(root=root, env=env)
    _ok(made.run(FIRST), FIRST)
    return made


@pytest.mark.readme
@pytest.mark.slow
def test_the_readme_commands_run_as_written_in_a_fresh_clone(clone: Clone) -> None:
    for command in RUN:
        _ok(clone.run(command), command)
    assert list((clone.root / "dist").glob("gravitex-mcp-*.mcpb"))
    # The generators found nothing stale: the clone is as it was checked out.
    changed = subprocess.run(
        ["git", "diff", "--name-only"],  # the files against what the fixture staged
        cwd=clone.root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert changed == "", f"a README command changed committed files:\n{changed}"


@pytest.mark.readme
@pytest.mark.slow
@pytest.mark.parametrize("command", list(SERVE))
def test_the_readme_servers_start_as_written(clone: Clone, command: str) -> None:
    port = free_port()
    started = re.sub(r"--port \d+", f"--port {port}", command)
    log = clone.root.parent / "server.stderr"
    with log.open("wb") as err:
        # exec: the server is the shell's process, so stopping it stops the server.
        proc = subprocess.Popen(
            ["sh", "-c", f"exec {started}"],
            cwd=clone.root,
            env=clone.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        url = f"http://127.0.0.1:{port}{SERVE[command]}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx2.Client(timeout=2.0) as client:
            while True:
                assert proc.poll() is None, f"{command!r} exited:\n{log.read_text()}"
                try:
                    if client.get(url).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{url} did not answer:\n{log.read_text()}"
                time.sleep(0.1)  # a process starting up: the only real wait (as in proc.py)
    finally:
        stop(proc)


@pytest.mark.readme
@pytest.mark.slow
@pytest.mark.parametrize("command", list(NEEDS))
def test_the_readme_commands_needing_a_tool_run_as_written(clone: Clone, command: str) -> None:
    if shutil.which(NEEDS[command], path=clone.env.get("PATH")) is None:
        pytest.skip(f"{NEEDS[command]} is not installed: cannot run {command!r}")
    _ok(clone.run(command), command)
