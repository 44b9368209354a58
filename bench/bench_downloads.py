"""Download benchmark: our streaming paths against the plain approaches, side by side.

Usage (from the repository root)::

    .venv/bin/python bench/bench_downloads.py [--sizes 16,64,256] [--repeat 3]

What runs:

* the project's simulator (``gravitex_mcp.simulator``) served by uvicorn on
  ``127.0.0.1`` in its own process (so the client side reads from a real socket);
* for every size (MiB) one Sora task and one Veo task (``[size=NNm]`` prompt marker);
* six variants, each download in a **fresh worker process** (so one run's memory
  never flatters the next), interleaved ``--repeat`` times within their family (the
  Sora variants, then the URL variants):

  - ``sora-ours``: :func:`gravitex_mcp.downloads.download_video` (Sora download endpoint
    streamed through the incremental base64 decoder into a temp file, sha256, fsync,
    no-clobber publish);
  - ``sora-plain``: ``httpx2`` ``get`` + ``json.loads(body)`` + ``base64.b64decode`` +
    one ``write`` (what the vendor's Python example does);
  - ``url-ours``: ``download_video`` for a Veo task (signed URL streamed to a temp file,
    ftyp/box checks, sha256, fsync, no-clobber publish);
  - ``url-plain``: ``async with client.stream(...)``, ``f.write`` every chunk;
  - ``url-ours-nosync`` (diagnostic, not a shipped mode): ``url-ours`` with the temp
    file's fsync made a no-op and no early write-back, so, like the plain loop (whose
    file is deleted before the kernel writes it back), it never waits for the disk;
  - ``url-client-loop`` (diagnostic): the plain loop run through the project's
    ``GravitexClient.stream_url`` / ``read_body`` (the inactivity time-out downloads
    use), to separate the client's streaming cost from storage's (temp file, sha256,
    fsync).

Warm-up: before its measured download every worker (whatever the variant) downloads a
small video of the same kind (:data:`WARMUP_SIZE`) the same way, with a client of its
own, then deletes it. So the code, the shared libraries (OpenSSL's sha256, ...) and the
thread machinery are in use before the baseline, as they are in a server that has
already served a request; the warm-up's own heap is tiny next to the measured video.
Without it, a first download's page faults on code and library pages (about 0.2 MiB)
counted as download cost, for every variant. The measured download still opens its own
connection, as a first download does (with the warm-up's connection kept alive, the
plain loop's CPU per download moved by ~40 % in one test).

Hash helpers: ``ours`` hashes in a helper process (``gravitex_mcp.hashhelper``), started
by the warm-up. Its CPU during the download is added to the client's CPU (and shown
apart), and its peak RSS growth (``VmHWM`` reset like the worker's) to the client's
peak growth, so moving work out of the worker hides none of it.

Memory: each worker measures its resident set (``VmRSS``) right before the download,
resets the kernel's peak counter (``/proc/self/clear_refs`` = 5), and reads ``VmHWM``
afterwards; growth = peak - baseline. Where the reset is not allowed, a sampling thread
(every 5 ms) stands in. tracemalloc is not used: it misses C buffers.

Throughput: video MiB / wall seconds from the request to the file being saved. The
figure reported is the median of the repeats; "vs plain" is the median of per-repeat
ratios (plain seconds / ours seconds: the runs of one repeat are neighbours in time;
each repeat starts with another variant). Each worker also reports its CPU seconds (all
threads, user + system) and its minor page faults for the download. The page faults
show glibc's heap state: when the heap top is trimmed and regrown on every socket read
(which depends on the allocation history, down to the lengths of the URLs), a variant
reads into freshly faulted memory: thousands of faults instead of a few hundred, and
30-50 % more CPU. Which variant landed in that state differed from one invocation to
the next and decided the ratios more than the code did. So every worker, of every
variant, runs with glibc's thresholds pinned (:data:`PINNED_MALLOC`: ``mmap`` from
1 MiB, trim above 8 MiB, the state a long-running process settles in); ``--malloc
dynamic`` runs them with glibc's defaults instead. On a shared machine the driver waits
(at most :data:`IDLE_WAIT_SECONDS`) before each run until the CPUs are idle, so another
job's burst lands less often inside a measurement. Output files go to ``bench/out/`` and
are deleted after each run. Nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import httpx2

from gravitex_mcp.client import GravitexClient
from gravitex_mcp.domain import Family
from gravitex_mcp.downloads import download_video
from gravitex_mcp.storage import OutputDir

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MIB = 1 << 20
API_KEY = "sk-bench-0123456789"
#: Bytes of the warm-up video each worker downloads before its measured one.
WARMUP_SIZE = 64 << 10
#: Longest wait for idle CPUs before a run (seconds).
IDLE_WAIT_SECONDS = 10.0
#: glibc malloc settings every worker runs with (``--malloc pinned``, the default).
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20), "MALLOC_TRIM_THRESHOLD_": str(8 << 20)}
VARIANTS = (
    "sora-ours",
    "sora-plain",
    "url-ours",
    "url-plain",
    "url-ours-nosync",
    "url-client-loop",
)


# --- memory --------------------------------------------------------------------------------


def _status_kib(field: str, pid: str = "self") -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _reset_peak(pid: str = "self") -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


@dataclass
class _Child:
    """A child process of this worker (a hash helper): its CPU ticks and resident set."""

    pid: str
    ticks: int
    rss_kib: int


def _children() -> dict[str, _Child]:
    """This process's children, from ``/proc`` (empty where there is none)."""
    found: dict[str, _Child] = {}
    me = os.getpid()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[1]) != me:
                continue
            found[pid] = _Child(pid, int(fields[11]) + int(fields[12]), _status_kib("VmRSS", pid))
        except (OSError, ValueError, IndexError, RuntimeError):
            continue  # gone, or not readable
    return found


def _children_cost(before: dict[str, _Child]) -> tuple[float, int]:
    """CPU seconds the children used since ``before`` and their peak RSS growth (KiB);
    a child started since counts whole."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    cpu, growth = 0.0, 0
    for pid, now in _children().items():
        was = before.get(pid)
        cpu += (now.ticks - (was.ticks if was else 0)) / tick
        try:
            peak = _status_kib("VmHWM", pid)
        except (OSError, RuntimeError):
            peak = now.rss_kib
        growth += max(0, peak - (was.rss_kib if was else 0))
    return cpu, growth


class _Sampler(threading.Thread):
    """Fallback peak tracker: samples VmRSS every 5 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = _status_kib("VmRSS")
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, _status_kib("VmRSS"))


# --- the simulator process ----------------------------------------------------------------


def serve(port: int) -> None:
    """Run the simulator on 127.0.0.1:port until killed (prints READY when listening)."""
    from gravitex_mcp.simulator import Simulator, SimulatorConfig, make_server

    sim = Simulator(SimulatorConfig(queued_seconds=0, processing_seconds=0))
    server = make_server(sim, host="127.0.0.1", port=port, log_level="warning")

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        for _ in range(3000):  # at most 30 s to start listening
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("the simulator did not start listening")
        print("READY", flush=True)
        await task

    asyncio.run(run())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Tasks:
    sora: str
    url: str
    veo: str


def _make_tasks(base: str, size_mib: int) -> Tasks:
    return _make_sized_tasks(base, f"{size_mib}m")


def _make_sized_tasks(base: str, size: str) -> Tasks:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx2.Client(base_url=base, headers=headers, timeout=30) as http:
        sora = http.post(
            "/v1/video/generations",
            json={"model": "sora-2", "prompt": f"bench [size={size}]", "seconds": "4"},
        )
        sora.raise_for_status()
        veo = http.post(
            "/v1/video/generations",
            json={"model": "veo-3.0-fast-generate-001", "prompt": f"bench [size={size}]"},
        )
        veo.raise_for_status()
        veo_id = veo.json()["task_id"]
        for _ in range(100):  # the simulator finishes tasks at once; bounded anyway
            answer = http.get(f"/v1/video/generations/{veo_id}").json()
            if answer.get("status") == "succeeded":
                return Tasks(sora=sora.json()["task_id"], url=answer["url"], veo=veo_id)
            time.sleep(0.05)
    raise RuntimeError("the simulator did not finish the Veo task")


# --- workers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    path: Path
    seconds: float
    cpu_seconds: float
    helper_cpu_seconds: float
    helper_growth_kib: int
    page_faults: int
    baseline_kib: int
    peak_kib: int
    exact: bool


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _noop() -> None:
    return None


_C = TypeVar("_C")
Download = Callable[[_C, str, str, Path], Awaitable[Path]]


async def _timed(
    make_client: Callable[[], AbstractAsyncContextManager[_C]], download: Download[_C], job: Job
) -> Measurement:
    """Warm up with the small video, then measure the real one (see the module docstring).

    The warm-up has a client of its own, so the measured download opens its connection
    as a first download does (a kept-alive connection changes how the socket is read).
    """
    await anyio.to_thread.run_sync(_noop)  # a long-running server has its worker threads
    warm = job.out / "warm-up"
    warm.mkdir()
    async with make_client() as client:
        (await download(client, job.warm_task, job.warm_url, warm)).unlink()
    async with make_client() as client:  # built before the baseline: not download cost
        gc.collect()
        baseline = _status_kib("VmRSS")
        exact = _reset_peak()
        sampler = None if exact else _Sampler()
        if sampler is not None:
            sampler.start()
        children = _children()  # hash helpers started by the warm-up
        for pid in children:
            _reset_peak(pid)
        cpu = _cpu_seconds()
        faults = _page_faults()
        started = time.perf_counter()
        path = await download(client, job.task, job.url, job.out)
        seconds = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu
        faults = _page_faults() - faults
        helper_cpu, helper_growth = _children_cost(children)
        if sampler is not None:
            sampler.stop.set()
            sampler.join()
            peak = sampler.peak
        else:
            peak = _status_kib("VmHWM")
    return Measurement(path, seconds, cpu, helper_cpu, helper_growth, faults, baseline, peak, exact)


def _no_fsync(fd: int) -> None:
    return None


@dataclass(frozen=True)
class Job:
    """What one worker downloads: the measured task and the warm-up task, and where to."""

    base: str
    task: str
    url: str
    warm_task: str
    warm_url: str
    out: Path


async def _ours(job: Job, family: Family, *, fsync: bool = True) -> Measurement:
    async def download(client: GravitexClient, task: str, url: str, out: Path) -> Path:
        target = OutputDir(out) if fsync else OutputDir(out, fsync=_no_fsync, early_writeback=False)
        saved = await download_video(
            client,
            task_id=task,
            family=family,
            url=None if family is Family.SORA else url,
            output_dir=target,
            filename=None,
        )
        return saved.path

    return await _timed(lambda: GravitexClient(api_key=API_KEY, base_url=job.base), download, job)


async def _sora_ours(job: Job) -> Measurement:
    return await _ours(job, Family.SORA)


async def _url_ours(job: Job) -> Measurement:
    return await _ours(job, Family.VEO)


async def _url_ours_nosync(job: Job) -> Measurement:
    """Diagnostic only: ``url-ours`` that never makes the data reach the disk."""
    return await _ours(job, Family.VEO, fsync=False)


async def _url_client_loop(job: Job) -> Measurement:
    """Diagnostic only: the plain loop, but through GravitexClient.stream_url/read_body."""

    async def download(client: GravitexClient, task: str, url: str, out: Path) -> Path:
        path = out / "plain.mp4"
        async with client.stream_url(url) as response, client.read_body(response) as body:
            with open(path, "wb") as file:  # noqa: ASYNC230  (the plain loop, on purpose)
                async for chunk in body:
                    file.write(chunk)
        return path

    return await _timed(lambda: GravitexClient(api_key=API_KEY, base_url=job.base), download, job)


async def _sora_plain(job: Job) -> Measurement:
    headers = {"Authorization": f"Bearer {API_KEY}"}

    async def download(http: httpx2.AsyncClient, task: str, url: str, out: Path) -> Path:
        response = await http.get("/v1/video/generations/download", params={"id": task})
        response.raise_for_status()
        data = json.loads(response.content)
        video = base64.b64decode(data["base64"])
        path = out / "plain.mp4"
        with open(path, "wb") as file:  # noqa: ASYNC230  (the plain approach, on purpose)
            file.write(video)
        return path

    return await _timed(
        lambda: httpx2.AsyncClient(base_url=job.base, headers=headers, timeout=120), download, job
    )


async def _url_plain(job: Job) -> Measurement:
    async def download(http: httpx2.AsyncClient, task: str, url: str, out: Path) -> Path:
        path = out / "plain.mp4"
        async with http.stream("GET", url) as response:
            response.raise_for_status()
            with open(path, "wb") as file:  # noqa: ASYNC230  (the plain loop, on purpose)
                async for chunk in response.aiter_bytes():
                    file.write(chunk)
        return path

    return await _timed(lambda: httpx2.AsyncClient(timeout=120), download, job)


WORKERS: dict[str, Callable[[Job], Coroutine[Any, Any, Measurement]]] = {
    "sora-ours": _sora_ours,
    "sora-plain": _sora_plain,
    "url-ours": _url_ours,
    "url-plain": _url_plain,
    "url-ours-nosync": _url_ours_nosync,
    "url-client-loop": _url_client_loop,
}


def worker(variant: str, job: Job, size: int) -> None:
    """One download in this (fresh) process; prints one JSON line with the figures."""
    job.out.mkdir(parents=True, exist_ok=True)
    try:
        m = asyncio.run(WORKERS[variant](job))
        got = m.path.stat().st_size
        with open(m.path, "rb") as file:
            head = file.read(8)
        if got != size or head[4:8] != b"ftyp":
            raise RuntimeError(f"{variant}: wrong file ({got} bytes, head {head!r})")
    finally:
        shutil.rmtree(job.out, ignore_errors=True)
    print(
        json.dumps(
            {
                "variant": variant,
                "seconds": m.seconds,
                "cpu_seconds": m.cpu_seconds,
                "helper_cpu_seconds": m.helper_cpu_seconds,
                "helper_growth_bytes": m.helper_growth_kib * 1024,
                "page_faults": m.page_faults,
                "baseline_kib": m.baseline_kib,
                "peak_kib": m.peak_kib,
                "growth_bytes": max(0, m.peak_kib - m.baseline_kib) * 1024,
                "peak_method": "VmHWM" if m.exact else "sampled VmRSS",
            }
        ),
        flush=True,
    )


# --- the driver ------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "unknown"
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            kib = int(info.readline().split()[1])
            ram = f"{kib / MIB:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_ticks() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs, from ``/proc/stat`` (None where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return fields[3] + fields[4], sum(fields)


def _wait_idle(limit: float = IDLE_WAIT_SECONDS, window: float = 0.2) -> None:
    """Wait (at most ``limit`` s) until the CPUs were >= 90 % idle for ``window`` s."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        before = _cpu_ticks()
        time.sleep(window)
        after = _cpu_ticks()
        if before is None or after is None:
            return
        idle, total = after[0] - before[0], after[1] - before[1]
        if total <= 0 or idle / total >= 0.9:
            return


def _run_worker(
    variant: str, base: str, tasks: Tasks, warm: Tasks, size: int, *, malloc: str
) -> dict[str, Any]:
    sora = variant.startswith("sora")
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        variant,
        "--base",
        base,
        "--task",
        tasks.sora if sora else tasks.veo,
        "--url",
        tasks.url,
        "--warm-task",
        warm.sora if sora else warm.veo,
        "--warm-url",
        warm.url,
        "--size-bytes",
        str(size),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    if malloc == "pinned":
        env.update(PINNED_MALLOC)
    _wait_idle()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"worker {variant} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def drive(sizes: list[int], repeat: int, variants: list[str], *, malloc: str) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "READY":
            raise RuntimeError("the simulator did not start")
        base = f"http://127.0.0.1:{port}"
        machine = _machine()
        machine["malloc"] = (
            "pinned: " + " ".join(f"{k}={v}" for k, v in PINNED_MALLOC.items())
            if malloc == "pinned"
            else "glibc defaults (dynamic thresholds)"
        )
        print(json.dumps({"machine": machine}), flush=True)
        rows: list[dict[str, Any]] = []
        warm = _make_sized_tasks(base, f"{WARMUP_SIZE >> 10}k")
        for size_mib in sizes:
            tasks = _make_tasks(base, size_mib)
            size = size_mib * MIB
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
            # Sora's and the URL's variants are interleaved among themselves, one family
            # after the other: a 2 GiB sora-plain run leaves the page cache and free
            # memory in a state that otherwise fell on whichever URL run came next.
            for family in ("sora", "url"):
                group = [v for v in variants if v.startswith(family)]
                for number in range(repeat):
                    shift = number % max(1, len(group))  # each variant goes first in turn
                    for variant in group[shift:] + group[:shift]:
                        runs[variant].append(
                            _run_worker(variant, base, tasks, warm, size, malloc=malloc)
                        )
            for variant in variants:
                seconds = statistics.median(r["seconds"] for r in runs[variant])
                # CPU and memory of the whole client: the worker and its hash helper
                cpu = statistics.median(
                    r["cpu_seconds"] + r["helper_cpu_seconds"] for r in runs[variant]
                )
                helper_cpu = statistics.median(r["helper_cpu_seconds"] for r in runs[variant])
                faults = statistics.median(r["page_faults"] for r in runs[variant])
                peer = variant.split("-")[0] + "-plain"
                pair_ratio = None
                if "-ours" in variant and peer in runs:
                    # per repeat: plain seconds / ours seconds (= ours' throughput / plain's),
                    # runs of one repeat being neighbours in time
                    pair_ratio = round(
                        statistics.median(
                            p["seconds"] / o["seconds"]
                            for o, p in zip(runs[variant], runs[peer], strict=True)
                        ),
                        2,
                    )
                growth = statistics.median(
                    r["growth_bytes"] + r["helper_growth_bytes"] for r in runs[variant]
                )
                helper_growth = statistics.median(r["helper_growth_bytes"] for r in runs[variant])
                row = {
                    "size_mib": size_mib,
                    "variant": variant,
                    "median_seconds": round(seconds, 3),
                    "mib_per_s": round(size_mib / seconds, 1),
                    "median_cpu_seconds": round(cpu, 3),
                    "median_helper_cpu_seconds": round(helper_cpu, 3),
                    "helper_growth_mib": round(helper_growth / MIB, 1),
                    "median_page_faults": round(faults),
                    "peak_growth_mib": round(growth / MIB, 1),
                    "growth_x_video": round(growth / size, 3),
                    "all_seconds": [round(r["seconds"], 3) for r in runs[variant]],
                    "median_pair_ratio_vs_plain": pair_ratio,
                    "peak_method": runs[variant][0]["peak_method"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        _print_table(rows, variants)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _print_table(rows: list[dict[str, Any]], variants: list[str]) -> None:
    print()
    print(
        "| video | variant | MiB/s (median) | client CPU ms (helper) | page faults | "
        "peak RSS growth (helper) | growth / video | vs plain |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        ratio = row["median_pair_ratio_vs_plain"]
        print(
            f"| {row['size_mib']} MiB | {row['variant']} | {row['mib_per_s']} | "
            f"{row['median_cpu_seconds'] * 1000:.0f} "
            f"({row['median_helper_cpu_seconds'] * 1000:.0f}) | {row['median_page_faults']} | "
            f"{row['peak_growth_mib']} MiB ({row['helper_growth_mib']}) | "
            f"{row['growth_x_video']}x | "
            f"{'' if ratio is None else f'{ratio:.2f}'} |"
        )
    print()
    print("Raw seconds:")
    for row in rows:
        print(f"{row['size_mib']:>4} {row['variant']:<16} {' '.join(map(str, row['all_seconds']))}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="16,64,256", help="video sizes in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (1..10)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--malloc",
        choices=("pinned", "dynamic"),
        default="pinned",
        help="glibc malloc thresholds of the workers (see the module docstring)",
    )
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--task", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--warm-task", help=argparse.SUPPRESS)
    parser.add_argument("--warm-url", help=argparse.SUPPRESS)
    parser.add_argument("--size-bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return
    if args.worker is not None:
        job = Job(
            base=args.base,
            task=args.task,
            url=args.url,
            warm_task=args.warm_task,
            warm_url=args.warm_url,
            out=OUT / f"{args.worker}-{os.getpid()}",
        )
        worker(args.worker, job, args.size_bytes)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not sizes or not 1 <= args.repeat <= 10 or any(s < 1 for s in sizes):
        parser.error(f"bad --sizes/--repeat/--variants (variants: {', '.join(VARIANTS)})")
    drive(sizes, args.repeat, variants, malloc=args.malloc)


if __name__ == "__main__":
    main()
