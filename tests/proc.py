"""Run ``python -m gravitex_mcp`` as a real subprocess, bounded in time, with a clean env.

Every helper here has a time limit: a test that starts a process also stops it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parent.parent
SERVER_CMD = (sys.executable, "-m", "gravitex_mcp")
#: How long a CLI call that should fail fast may take (Python start-up plus imports).
CLI_TIMEOUT = 60.0
#: How long an HTTP server gets to answer ``/healthz`` after it is started.
STARTUP_TIMEOUT = 20.0
#: How long a server gets to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0

#: Variables of the test runner's own environment that must not reach the program.
_DROPPED = ("XDG_STATE_HOME", "USERPROFILE")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The runner's environment minus every ``GRAVITEX_*`` variable, with ``HOME`` = ``home``.

    No ``GRAVITEX_API_KEY`` can leak in from the machine running the tests, and every
    default folder (output, state) lands under ``home``.
    """
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GRAVITEX_") and k not in _DROPPED
    }
    env["HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(
    args: Sequence[str],
    env: dict[str, str],
    *,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """``python -m gravitex_mcp *args`` to completion (killed after ``timeout``)."""
    return subprocess.run(
        [*SERVER_CMD, *args],
        env=env,
        cwd=cwd or env["HOME"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within :data:`STOP_TIMEOUT`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)


@dataclass(frozen=True)
class HttpServer:
    """A running ``--transport sse|streamable-http`` server on 127.0.0.1."""

    transport: str
    base_url: str
    token: str | None
    output_dir: Path
    log: Path
    pid: int

    @property
    def mcp_url(self) -> str:
        """The MCP endpoint: ``/mcp`` (streamable HTTP) or ``/sse``."""
        return f"{self.base_url}{'/sse' if self.transport == 'sse' else '/mcp'}"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@contextmanager
def http_server(
    root: Path,
    transport: str,
    *,
    token: str | None,
    env: Mapping[str, str] | None = None,
    simulate: bool = True,
) -> Iterator[HttpServer]:
    """Start the server on the simulator over ``transport``; stopped on exit.

    Polls ``/healthz`` until it answers 200 (the only real wait in these tests),
    failing with the server's stderr if it exits or is not up within
    :data:`STARTUP_TIMEOUT`. ``env`` adds variables; ``simulate=False`` leaves the
    upstream to them (GRAVITEX_BASE_URL).
    """
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    extra = {
        "GRAVITEX_OUTPUT_DIR": str(root / "videos"),
        "GRAVITEX_STATE_DIR": str(root / "state"),
        "GRAVITEX_SIMULATOR_SECONDS": "1",
    }
    if token is not None:
        extra["GRAVITEX_HTTP_TOKEN"] = token
    extra.update(env or {})
    environment = clean_env(root, **extra)
    log = root / "server.stderr"
    args = ["--transport", transport, "--host", "127.0.0.1", "--port", str(port)]
    if simulate:
        args.insert(0, "--simulate")
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*SERVER_CMD, *args],
            env=environment,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    server = HttpServer(
        transport=transport,
        base_url=f"http://127.0.0.1:{port}",
        token=token,
        output_dir=root / "videos",
        log=log,
        pid=proc.pid,
    )
    try:
        _wait_healthy(proc, server)
        yield server
    finally:
        stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], server: HttpServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx2.Client(timeout=2.0) as client:
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"the {server.transport} server exited with {proc.returncode} before "
                    f"answering /healthz:\n{server.log.read_text(errors='replace')}"
                )
            try:
                r = client.get(f"{server.base_url}/healthz", headers=server.auth())
            except httpx2.TransportError:
                pass
            else:
                if r.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the {server.transport} server did not answer /healthz within "
                    f"{STARTUP_TIMEOUT:.0f} s:\n{server.log.read_text(errors='replace')}"
                )
            time.sleep(0.1)
