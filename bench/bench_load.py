"""A quick call's latency and the server's peak memory while 200 videos are saved and looked at.

Usage (from the repository root)::

    .venv/bin/python bench/bench_load.py [--repo LABEL=DIR ...] [--jobs 200] [--sessions 20]

* The simulated Gravitex API (``gravitex_mcp simulator``, from this checkout) runs in its
  own process on ``127.0.0.1``; generations take ``--sim-seconds`` (default 3).
* For each ``--repo LABEL=DIR`` (default: this checkout, labelled ``this``), the server
  of ``DIR`` (``PYTHONPATH=DIR python -m gravitex_mcp --transport streamable-http``; its
  own ``gravitex_mcp`` is the one imported, checked at start) runs in a fresh process
  with fresh output and state folders, pointed at that simulator. So the checkout to
  measure is any tree of the package: ``git worktree add /tmp/main main`` or a
  ``git archive`` of it.
* **Idle**: a probe session, in a process of its own (``--probe``: the load's client
  work must not be in its figures), calls ``list_video_tasks`` (``limit`` 5, a journal
  read that never waits upstream) ``--idle-calls`` times, one every 20 ms; p50/p99 of
  its round trip, and the server's RSS after it.
* **Load**: ``--sessions`` MCP sessions over streamable HTTP (this process) each run
  their share of ``--jobs`` jobs at once: ``generate_video`` (``wait_seconds`` 0, a
  distinct prompt), then ``check_video_task`` with ``download: true`` until the video
  is saved (every saved video passes the server's probe and contact sheet). Meanwhile
  the probe keeps calling ``list_video_tasks`` every 20 ms, each followed by a call
  the event loop answers alone (no thread, no journal: ``--loop-call``, default
  ``prompts/list``); the ``list_video_tasks`` p50/p99/max is the figure, the loop call
  tells the event loop's share of it. (``tools/list``, the loop call before, answers
  57 KB: its serialising took ~30% of the loaded server's event loop, and its
  allocations ran the garbage collector often enough to hide uncollected memory.)
* Checked per job: the result names a saved file that exists with the reported size and
  sha256, and a contact sheet (``preview``) that exists; "saved" and "looked at" count them.
* Peak RSS: the server's ``VmHWM`` (``/proc/<pid>/status``) at the end of the run.
* ``--probe-elsewhere`` (a control): the probe calls a second server of the same
  checkout, started alongside and given no jobs, while the load goes to the first. Its
  figures are then what the machine alone (the load's server, driver and simulator
  sharing the cores) does to a quick call that no load touches inside its server.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
PROBE_INTERVAL = 0.02
MIB = 1 << 20


# --- processes -----------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx2

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited at start:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(url, timeout=2).status_code < 500:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within 60 s:\n{log.read_text()[-3000:]}")


def _env(home: Path, repo: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVITEX_")}
    env.pop("PYTHONPATH", None)
    env.update(HOME=str(home), PYTHONPATH=str(repo), **extra)
    return env


@contextlib.contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path, url: str) -> Iterator[int]:
    with log.open("wb") as err:
        out = subprocess.DEVNULL
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=env["HOME"])
    try:
        _wait_http(url, proc, log)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def simulator(root: Path, seconds: float, nice: int = 0) -> Iterator[str]:
    port = _free_port()
    home = root / "sim"
    home.mkdir()
    env = _env(home, HERE, GRAVITEX_SIMULATOR_SECONDS=f"{seconds:g}")
    cmd = ["nice", "-n", str(nice), sys.executable, "-m", "gravitex_mcp", "simulator"]
    cmd += ["--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with _process(cmd, env, root / "sim.log", f"{base}/v1/models"):
        yield base


@contextlib.contextmanager
def server(root: Path, repo: Path, upstream: str) -> Iterator[tuple[str, int]]:
    port = _free_port()
    home = root / "home"
    home.mkdir()
    env = _env(
        home,
        repo,
        GRAVITEX_BASE_URL=upstream,
        GRAVITEX_API_KEY="sk-bench",
        GRAVITEX_OUTPUT_DIR=str(root / "videos"),
        GRAVITEX_STATE_DIR=str(root / "state"),
    )
    where = subprocess.run(
        [sys.executable, "-c", "import gravitex_mcp; print(gravitex_mcp.__file__)"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"PYTHONPATH={repo} imports gravitex_mcp from {where}, not from {repo}")
    cmd = [sys.executable, "-m", "gravitex_mcp", "--transport", "streamable-http"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with _process(cmd, env, root / "server.log", f"{base}/healthz") as pid:
        yield f"{base}/mcp", pid


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(field_name)


# --- the MCP side --------------------------------------------------------------------------


@dataclass
class Run:
    idle: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    pings: list[float] = field(default_factory=list)
    saved: int = 0
    looked: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


@contextlib.asynccontextmanager
async def _session(url: str):  # type: ignore[no-untyped-def]
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(300.0)) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _structured(result: Any) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        text = " ".join(getattr(b, "text", "") for b in result.content)
        raise RuntimeError(text[:300])
    return dict(result.structured_content)


async def _probe_once(client: Any) -> float:
    start = time.perf_counter()
    _structured(await client.call_tool("list_video_tasks", {"limit": 5}))
    return time.perf_counter() - start


async def _job(client: Any, index: int, run: Run) -> None:
    prompt = f"bench job {index}: a paper boat on a pond"
    try:
        first = _structured(
            await client.call_tool(
                "generate_video", {"model": "sora-2", "prompt": prompt, "wait_seconds": 0}
            )
        )
        task_id = first["task_id"]
        for _ in range(20):
            result = _structured(
                await client.call_tool(
                    "check_video_task",
                    {"task_id": task_id, "download": True, "wait_seconds": 60, "preview": False},
                )
            )
            if result.get("path") or result.get("status") in ("failed", "cancelled"):
                break
        else:
            raise RuntimeError(f"task {task_id} not saved after 20 checks")
        _check_saved(result, run)
    except Exception as exc:  # noqa: BLE001  (a bench tallies failures, it does not stop)
        run.failures.append(f"job {index}: {exc}")


def _check_saved(result: dict[str, Any], run: Run) -> None:
    path = Path(result["path"])
    data = path.read_bytes()
    if len(data) != result["size_bytes"] or hashlib.sha256(data).hexdigest() != result["sha256"]:
        raise RuntimeError(f"{path.name} is not what was reported")
    run.saved += 1
    preview = result.get("preview")
    if preview and Path(preview["path"]).is_file():
        run.looked += 1
    else:
        raise RuntimeError(f"{path.name} has no contact sheet: {result.get('notes')}")


#: The probe's second call, answered by the event loop alone (no thread, no journal).
LOOP_CALLS = {
    "prompts/list": lambda client: client.list_prompts(),  # ~1.5 KB answer
    "tools/list": lambda client: client.list_tools(),  # ~57 KB answer
}


async def probe_main(url: str, idle_calls: int, loop_call: str) -> None:
    """The probe (``--probe``, its own process, so the load's client work on the
    driver's event loop is not in its figures): idle calls, then calls until stopped.

    Protocol on stdin/stdout: prints ``{"idle": [...]}``, waits for a line (the load
    has started), probes until the next line, prints ``{"loaded": [...]}``.
    """
    import anyio

    idle: list[float] = []
    loaded: list[float] = []
    when: list[float] = []  # when each loaded call began, from the start of the load
    pings: list[float] = []  # the loop call between them: the event loop alone, no journal
    async with _session(url) as probe:
        for _ in range(5):  # warm up: first-call imports are not the figure
            await _probe_once(probe)
        for _ in range(idle_calls):
            idle.append(await _probe_once(probe))
            await anyio.sleep(PROBE_INTERVAL)
        print(json.dumps({"idle": idle}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        stop = anyio.Event()

        async def watch() -> None:
            await anyio.to_thread.run_sync(sys.stdin.readline)
            stop.set()

        began = time.perf_counter()
        async with anyio.create_task_group() as group:
            group.start_soon(watch)
            while not stop.is_set():
                at = time.perf_counter() - began
                loaded.append(await _probe_once(probe))
                when.append(at)
                start = time.perf_counter()
                await LOOP_CALLS[loop_call](probe)
                pings.append(time.perf_counter() - start)
                await anyio.sleep(PROBE_INTERVAL)
    print(json.dumps({"loaded": loaded, "at": when, "pings": pings}), flush=True)


async def drive(
    url: str,
    pid: int,
    jobs: int,
    sessions: int,
    idle_calls: int,
    probe_url: str | None = None,
    nice: int = 0,
    loop_call: str = "prompts/list",
) -> dict[str, Any]:
    import anyio

    run = Run()
    cmd = [sys.executable, __file__, "--probe", probe_url or url, "--idle-calls", str(idle_calls)]
    cmd += ["--loop-call", loop_call]
    pipe = subprocess.PIPE
    probe = subprocess.Popen(cmd, stdin=pipe, stdout=pipe, text=True)  # noqa: ASYNC220 - before the load
    assert probe.stdin is not None
    assert probe.stdout is not None
    # The load's client runs below the server and the probe (spawned above at the
    # normal priority): it stands in for the agents' own machines.
    os.nice(nice)
    try:
        run.idle = json.loads(await anyio.to_thread.run_sync(probe.stdout.readline))["idle"]
        idle_rss = _status_kib(pid, "VmRSS") * 1024
        probe.stdin.write("go\n")
        probe.stdin.flush()

        async def one_session(first: int, count: int) -> None:
            async with _session(url) as client, anyio.create_task_group() as group:
                for index in range(first, first + count):
                    group.start_soon(_job, client, index, run)

        start = time.perf_counter()
        async with anyio.create_task_group() as load:
            share, extra = divmod(jobs, sessions)
            first = 0
            for s in range(sessions):
                count = share + (1 if s < extra else 0)
                load.start_soon(one_session, first, count)
                first += count
        run.seconds = time.perf_counter() - start
        probe.stdin.write("stop\n")
        probe.stdin.flush()
        line = await anyio.to_thread.run_sync(probe.stdout.readline)
        answer = json.loads(line)
        run.loaded, run.at, run.pings = answer["loaded"], answer["at"], answer["pings"]
    finally:
        probe.wait(timeout=60)
    peak = _status_kib(pid, "VmHWM") * 1024
    return _summary(run, jobs, idle_rss, peak)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(run: Run, jobs: int, idle_rss: int, peak: int) -> dict[str, Any]:
    return {
        "idle_p50_ms": statistics.median(run.idle) * 1000,
        "idle_p99_ms": _pct(run.idle, 0.99) * 1000,
        "idle_rss_mib": idle_rss / MIB,
        "load_p50_ms": statistics.median(run.loaded) * 1000,
        "load_p99_ms": _pct(run.loaded, 0.99) * 1000,
        "load_max_ms": max(run.loaded) * 1000,
        "ping_p50_ms": statistics.median(run.pings) * 1000,
        "ping_p99_ms": _pct(run.pings, 0.99) * 1000,
        "probe_calls": len(run.loaded),
        "peak_rss_mib": peak / MIB,
        "jobs": jobs,
        "saved": run.saved,
        "looked": run.looked,
        "load_seconds": run.seconds,
        "failures": run.failures[:5],
        # the slowest calls under load, as (seconds into the load, milliseconds)
        "slowest": sorted(
            ((round(a, 2), round(s * 1000)) for a, s in zip(run.at, run.loaded, strict=True)),
            key=lambda p: -p[1],
        )[:8],
    }


# --- the driver ------------------------------------------------------------------------------


def _load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--repo",
        action="append",
        metavar="LABEL=DIR",
        help="a checkout to measure (repeatable); default: this=<this checkout>",
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--idle-calls", type=int, default=200)
    parser.add_argument("--sim-seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="print each run's figures as JSON")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help="keep the folders and logs here (empty dir)")
    parser.add_argument(
        "--probe-elsewhere",
        action="store_true",
        help="probe a second, idle server of the same checkout while the load runs",
    )
    parser.add_argument(
        "--load-nice",
        type=int,
        default=0,
        help="run the load's client and the simulator at this niceness (they stand in "
        "for other machines; the server and the probe keep the normal priority)",
    )
    parser.add_argument(
        "--loop-call",
        choices=sorted(LOOP_CALLS),
        default="prompts/list",
        help="the probe's call that the event loop alone answers, after each timed one",
    )
    args = parser.parse_args()
    import anyio

    if args.probe:
        anyio.run(probe_main, args.probe, args.idle_calls, args.loop_call)
        return
    repos = [r.split("=", 1) for r in (args.repo or [f"this={HERE}"])]

    rows = []
    with (
        _workdir(args.keep) as tmp,
        simulator(Path(tmp), args.sim_seconds, args.load_nice) as upstream,
    ):
        for label, repo in repos:
            root = Path(tmp) / label
            root.mkdir()
            before = _load_average()
            with contextlib.ExitStack() as servers:
                url, pid = servers.enter_context(server(root, Path(repo), upstream))
                probe_url = None
                if args.probe_elsewhere:
                    (root / "idle").mkdir()
                    probe_url, _ = servers.enter_context(
                        server(root / "idle", Path(repo), upstream)
                    )
                figures = anyio.run(
                    drive,
                    url,
                    pid,
                    args.jobs,
                    args.sessions,
                    args.idle_calls,
                    probe_url,
                    args.load_nice,
                    args.loop_call,
                )
            figures["load_average"] = f"{before}-{_load_average()}"
            if args.json:
                print(json.dumps({"label": label, **figures}), flush=True)
            rows.append((label, figures))
    _table(rows, args.loop_call)


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[str]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield str(keep)
        return
    with tempfile.TemporaryDirectory(prefix="bench_load.") as tmp:
        yield tmp


def _table(rows: list[tuple[str, dict[str, Any]]], loop_call: str) -> None:
    print(
        "| server | idle p50 ms | idle p99 ms | idle RSS MiB | load p50 ms | load p99 ms | "
        f"load max ms | calls | {loop_call} p99 ms | peak RSS MiB | saved | looked at | load s | "
        "load avg |"
    )
    print(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | --- |"
    )
    for label, f in rows:
        print(
            f"| {label} | {f['idle_p50_ms']:.1f} | {f['idle_p99_ms']:.1f} | "
            f"{f['idle_rss_mib']:.0f} | {f['load_p50_ms']:.1f} | {f['load_p99_ms']:.1f} | "
            f"{f['load_max_ms']:.0f} | {f['probe_calls']} | {f['ping_p99_ms']:.0f} | "
            f"{f['peak_rss_mib']:.0f} | {f['saved']}/{f['jobs']} | "
            f"{f['looked']}/{f['jobs']} | {f['load_seconds']:.1f} | {f['load_average']} |"
        )
        for failure in f["failures"]:
            print(f"  {label}: {failure}")


if __name__ == "__main__":
    main()
