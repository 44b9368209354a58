"""The simulator served over real HTTP on 127.0.0.1 (never beyond loopback)."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
import uvicorn

from gravitex_mcp.simulator import Simulator, make_server, media
from tests.simulator.test_simulator import AUTH, finish, frozen_sim

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_up(base: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Bounded poll for a server that is starting (the only real waiting the tests do)."""
    deadline = time.monotonic() + START_TIMEOUT
    with httpx2.Client(base_url=base, trust_env=False, timeout=2.0) as c:
        while True:
            if proc is not None and proc.poll() is not None:
                errors = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise AssertionError(f"simulator exited early ({proc.returncode}): {errors}")
            try:
                if c.get("/_simulator/state").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("simulator did not start in time")
            time.sleep(0.05)


@pytest.mark.slow
def test_serve_answers_on_loopback_in_a_subprocess() -> None:
    port = free_port()
    code = f"from gravitex_mcp.simulator import serve\nserve(port={port}, log_level='warning')\n"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, proc)
        with httpx2.Client(base_url=base, trust_env=False, timeout=10.0) as c:
            response = c.post(
                "/v1/video/generations", json={"model": "sora-2", "prompt": "x"}, headers=AUTH
            )
            assert response.status_code == 200
            assert re.fullmatch(r"video_[0-9a-f]{32}", response.json()["task_id"])
            unauthorised = c.get(f"/v1/video/generations/{response.json()['task_id']}")
            assert unauthorised.status_code == 401
            state = c.get("/_simulator/state").json()
            assert state["calls"] == {"submit": 1, "query": 1}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - only if terminate is ignored
            proc.kill()
            proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


class Running:
    def __init__(self, sim: Simulator, server: uvicorn.Server, base: str) -> None:
        self.sim = sim
        self.server = server
        self.base = base


@pytest.fixture
def running() -> Iterator[Running]:
    sim = frozen_sim(video_size_bytes=4 * 1024 * 1024)
    server = make_server(sim, port=0, log_level="critical", configure_logging=False)
    thread = threading.Thread(target=server.run, name="simulator", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "simulator thread died"
            assert time.monotonic() < deadline, "simulator did not start in time"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Running(sim, server, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_network_faults_are_real_connection_problems(running: Running) -> None:
    sim = running.sim
    with httpx2.Client(base_url=running.base, trust_env=False, timeout=10.0) as c:
        submitted = c.post(
            "/v1/video/generations", json={"model": "sora-2", "prompt": "x"}, headers=AUTH
        )
        sora = submitted.json()["task_id"]
        wan = c.post(
            "/v1/video/generations",
            json={"model": "wan2.5-t2v-preview", "prompt": "x"},
            headers=AUTH,
        ).json()["task_id"]
        finish(sim)

        # the whole 4 MB video, as base64 in JSON, over the wire
        payload = c.get(f"/v1/video/generations/download?id={sora}", headers=AUTH).json()
        assert base64.b64decode(payload["base64"], validate=True) == media.build_mp4(
            4 * 1024 * 1024
        )

        # a cut body: the server really closes the connection mid-body
        sim.faults.add("download", "truncated")
        with pytest.raises(httpx2.RemoteProtocolError):
            c.get(f"/v1/video/generations/download?id={sora}", headers=AUTH)

        # the submit whose answer is lost: a transport error, yet the task exists
        sim.faults.add("submit", "accepted_but_lost", mode="drop")
        with pytest.raises(httpx2.RemoteProtocolError):
            c.post("/v1/video/generations", json={"model": "sora-2", "prompt": "y"}, headers=AUTH)
        assert len(sim.tasks) == 3
        assert sim.calls["submit"] == 3

        # the signed URL points at the loopback server itself
        url = c.get(f"/v1/video/generations/{wan}", headers=AUTH).json()["url"]
        assert url.startswith(f"{running.base}/files/{wan}.mp4?Expires=")
        with httpx2.Client(trust_env=False, timeout=10.0) as files:
            size = 0
            with files.stream("GET", url) as response:
                assert response.headers["content-type"] == "video/mp4"
                for chunk in response.iter_bytes():
                    size += len(chunk)
            assert size == 4 * 1024 * 1024
            sim.faults.add("file", "truncated", at=1000)
            with pytest.raises(httpx2.RemoteProtocolError):
                files.get(url)
            assert files.get(url).status_code == 200  # the next connection is fine
