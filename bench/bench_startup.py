"""Start-up benchmark: spawn to the ``tools/list`` answer, ours against a bare MCPServer.

Usage (from the repository root)::

    .venv/bin/python bench/bench_startup.py [--repeat 15]

What runs, each time in a fresh subprocess over stdio (newline-delimited JSON-RPC on
its pipes, as an MCP client starts a server):

* ``bare``: ``bench/bare_server.py``, an ``mcp.server.MCPServer`` with one trivial
  tool, the floor any server on this SDK pays (Python, the SDK's imports);
* ``ours``: ``python -m gravitex_mcp --simulate`` with its defaults: journal, the
  player resource (a ~400 KB HTML file read at start) and the loopback media server's
  port bound (the simulator is made at the first request, uvicorn started at the
  first link);
* ``ours-media-off``: the same with ``GRAVITEX_MEDIA=off`` (no key file, no loopback
  server), to show what the media server itself costs;
* ``ours-real``: ``python -m gravitex_mcp`` with ``GRAVITEX_API_KEY=sk-bench`` and no
  ``--simulate``: what a user of the real API starts. Start-up sends nothing
  upstream (the HTTP client is made at the first request), so the fake key and the
  default base URL are never used;
* ``before`` and ``before-real`` (with ``--before DIR``): the package in ``DIR``, e.g.
  an older commit unpacked with ``git archive``, as ``ours`` and ``ours-real``.

Python bytecode of the packages run is compiled first (``compileall``), as ``pip
install`` does for a user: with an editable install and ``PYTHONDONTWRITEBYTECODE``
set, every start would otherwise recompile the package's sources (~0.1 s) and this
would measure the compiler.

Measured: wall time from ``Popen`` to the ``tools/list`` response (after
``initialize`` and ``notifications/initialized``), and the CPU time (user + system)
the process used over its life, which other loads on a shared machine disturb less.
The variants are interleaved, each repeat in a rotated order; the figures are
medians (wall time also with min and max). Every server
gets a fresh output and state folder per run (a first start creates the key file).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from mcp_types.version import LATEST_HANDSHAKE_VERSION

HERE = Path(__file__).resolve().parent
VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "bare": ([sys.executable, str(HERE / "bare_server.py")], {}),
    "ours": ([sys.executable, "-m", "gravitex_mcp", "--simulate"], {}),
    "ours-media-off": (
        [sys.executable, "-m", "gravitex_mcp", "--simulate"],
        {"GRAVITEX_MEDIA": "off"},
    ),
    "ours-real": ([sys.executable, "-m", "gravitex_mcp"], {"GRAVITEX_API_KEY": "sk-bench"}),
}


def _send(stdin: IO[bytes], message: dict[str, Any]) -> None:
    stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
    stdin.flush()


def _answer(stdout: IO[bytes], id_: int) -> dict[str, Any]:
    while True:
        line = stdout.readline()
        if not line:
            raise RuntimeError("the server closed stdout before answering")
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == id_ and "method" not in message:
            return message


def one_run(name: str) -> tuple[float, float]:
    """(wall seconds to the tools/list answer, CPU seconds of the whole process)."""
    cmd, extra = VARIANTS[name]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRAVITEX_")}
        env.update(
            HOME=tmp,
            GRAVITEX_OUTPUT_DIR=str(Path(tmp) / "videos"),
            GRAVITEX_STATE_DIR=str(Path(tmp) / "state"),
            GRAVITEX_LOG_LEVEL="WARNING",
            **extra,
        )
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            _send(
                proc.stdin,
                {
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": LATEST_HANDSHAKE_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "0"},
                    },
                },
            )
            _answer(proc.stdout, 1)
            _send(proc.stdin, {"method": "notifications/initialized"})
            _send(proc.stdin, {"id": 2, "method": "tools/list", "params": {}})
            listed = _answer(proc.stdout, 2)
            elapsed = time.perf_counter() - start
            assert listed["result"]["tools"], listed
        finally:
            proc.stdin.close()
        # The client hangs up; the server exits. wait4 gives its CPU use over its life
        # (start-up, the two answers, shutdown): less sensitive than wall time to
        # other loads on a shared machine.
        _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--before",
        metavar="DIR",
        help="also run the gravitex_mcp package found in DIR (e.g. a `git archive` of an "
        "older commit), as the variant 'before'",
    )
    args = parser.parse_args()
    if args.before:
        older = {"PYTHONPATH": str(Path(args.before).resolve())}
        VARIANTS["before"] = ([sys.executable, "-m", "gravitex_mcp", "--simulate"], older)
        VARIANTS["before-real"] = (
            [sys.executable, "-m", "gravitex_mcp"],
            {**older, "GRAVITEX_API_KEY": "sk-bench"},
        )
    import gravitex_mcp

    packages = [Path(gravitex_mcp.__file__).parent]
    if args.before:
        packages.append(Path(args.before).resolve() / "gravitex_mcp")
    for package in packages:
        compileall.compile_dir(package, quiet=1)
    names = list(VARIANTS)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # one unmeasured start each: the page cache holds the code after
        one_run(name)
    for i in range(args.repeat):
        order = names[i % len(names) :] + names[: i % len(names)]
        for name in order:
            wall, used = one_run(name)
            times[name].append(wall)
            cpu[name].append(used)
    bare = statistics.median(times["bare"])
    bare_cpu = statistics.median(cpu["bare"])
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{args.repeat} runs each, interleaved; spawn -> tools/list answer, seconds")
    print("| variant | wall median | min | max | vs bare | CPU median | vs bare |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        runs = times[name]
        median = statistics.median(runs)
        used = statistics.median(cpu[name])
        print(
            f"| {name} | {median:.3f} | {min(runs):.3f} | {max(runs):.3f} | "
            f"{median / bare:.2f}x | {used:.3f} | {used / bare_cpu:.2f}x |"
        )


if __name__ == "__main__":
    main()
