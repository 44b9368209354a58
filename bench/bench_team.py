"""One replica against two on PostgreSQL + S3, and the embedded default, under 1,000 jobs.

Usage (from the repository root)::

    .venv/bin/python bench/bench_team.py [--jobs 1000] [--sessions 50] [--load-nice 10]
        [--runs embedded,pg1,pg2,pg2-shared] [--sim-seconds 3] [--json] [--keep DIR]

Runs (``--runs``, in this order by default), each with everything started afresh:

* ``embedded``: one server with the default SQLite journal and local output folder
  (bench_load's ``simulator`` and ``server``): the plain alternative, and the baseline
  of "upstream queries per task".
* ``pg1``: one replica on PostgreSQL + S3, started by ``scripts/team.py``'s
  :class:`Team` (PostgreSQL 15 and SeaweedFS from ``tests/services.py``, the
  simulator, the replicas; PostgreSQL preloads ``pg_stat_statements``).
* ``pg2``: two replicas on one database and bucket; the jobs' sessions are spread
  over them (round robin per session), so each job is submitted and waited on
  through one replica.
* ``pg2-shared``: as ``pg2``, but each task is waited on by two sessions, one on
  each replica (the e2e suite's "20 waiters" across replicas, at scale): a task is
  polled and saved once only if the replicas share that work.

The load: ``--sessions`` MCP sessions over streamable HTTP (session ``s`` on replica
``s % replicas``) run the ``--jobs`` jobs all at once (job ``j`` is submitted through
session ``j``, waited on through sessions ``j``, ``j + 1``, ...), in a process of
their own at ``--load-nice``, as is the simulator (they stand in for the agents' and
the API's machines): ``generate_video`` (``wait_seconds`` 0), then
``check_video_task`` with ``download: true`` until saved. Meanwhile a probe process
(normal priority) calls ``list_video_tasks`` (limit 5: a store read that never waits
upstream) every 20 ms, on each replica in turn.

Figures per run:

* **saved / looked at**: jobs each of whose waiters got the saved video, whose bytes
  (read from the folder, or through the presigned ``media_url``) have the reported
  size and sha256, and whose contact sheet exists. **videos stored**: mp4 files or
  objects written (one per task is right).
* **p50/p99/max** of the probe's ``list_video_tasks`` while the load runs (a call
  answered with an error is timed too); **failed calls**: the probe's calls answered
  with an error, and the jobs' failed calls (the first few printed).
* **upstream queries per task**: the simulator's ``query`` count over its tasks
  (``GET /_simulator/state``); downloads per task likewise (``download`` + ``file``).
* **database round trips per status change**, from PostgreSQL's own statistics over
  the replicas' whole life (start-up and shutdown add a few dozen), read once they
  have exited (an idle backend may keep its counts to itself): ``pg_stat_statements``
  calls (BEGIN and COMMIT included) and ``pg_stat_database`` transactions, over the
  rows of ``task_events`` (each task's status history). psycopg_pool checks each
  connection it lends with an empty query, a round trip PostgreSQL counts as a
  transaction but not as a statement; so the round trips lie between the statements
  and the statements plus the transactions that were not BEGIN blocks, which is the
  range given. The probe's listings (one statement and one check each) are left out.
* **peak RSS per replica**: each replica's ``VmHWM`` after the load.
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
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))  # tests.services, run as a script
# bench_load beside this file; scripts.team and tests.services from the root
sys.path.insert(0, str(Path(__file__).parent))  # bench_load, beside it
from bench_load import (  # noqa: E402
    MIB,
    PROBE_INTERVAL,
    _load_average,
    _pct,
    _probe_once,
    _status_kib,
    _structured,
    _workdir,
    server,
    simulator,
)

from scripts.team import DATABASE, Team  # noqa: E402
from tests.services import SeaweedS3  # noqa: E402

#: What lets PostgreSQL count statements (only a start can load it).
COUNT_STATEMENTS = {"shared_preload_libraries": "pg_stat_statements"}
#: The probe's listing as pg_stat_statements shows it (store/postgres.py, ``list``).
LISTING = "SELECT * FROM tasks WHERE user_id = $1 ORDER BY created_at DESC"
#: How long the replicas' database sessions get to end once the replicas have stopped.
SESSIONS_END = 10.0


@dataclass(frozen=True)
class RunSpec:
    name: str
    replicas: int
    team: bool  # PostgreSQL + S3; else the embedded default
    waiters: int  # sessions waiting on each task, on successive replicas
    label: str


RUNS = {
    r.name: r
    for r in (
        RunSpec("embedded", 1, False, 1, "embedded (SQLite + folder), 1 process"),
        RunSpec("pg1", 1, True, 1, "PostgreSQL + S3, 1 replica"),
        RunSpec("pg2", 2, True, 1, "PostgreSQL + S3, 2 replicas"),
        RunSpec("pg2-shared", 2, True, 2, "PostgreSQL + S3, 2 replicas, 2 waiters per task"),
    )
}


# --- the load (a process of its own, niced) ----------------------------------------------------


@contextlib.asynccontextmanager
async def _session(url: str, *, keep_alive: bool) -> AsyncIterator[Any]:
    """An MCP session; without ``keep_alive``, a connection per request. A POST sent on
    a kept connection as the server closes it (uvicorn after 5 s idle) fails with a
    ReadError, which the MCP client does not retry and which ends the session with every
    job on it. The niced load, descheduled for seconds at a time, hit that whatever the
    client's own expiry; the probe calls every 20 ms, so its connections never idle."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    limits = httpx2.Limits() if keep_alive else httpx2.Limits(max_keepalive_connections=0)
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(300.0), limits=limits) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


def _kept(result: dict[str, Any]) -> dict[str, Any]:
    """What is checked of a saved result once the load is over."""
    preview = result.get("preview") or {}
    return {
        "uri": result["uri"],
        "path": result["path"],
        "size_bytes": result["size_bytes"],
        "sha256": result["sha256"],
        "media_url": result.get("media_url"),
        "preview": preview.get("path"),
    }


async def _job(clients: list[Any], index: int, waiters: int) -> dict[str, Any]:
    import anyio

    out: dict[str, Any] = {"saved": [None] * waiters, "errors": []}
    try:
        first = _structured(
            await clients[index % len(clients)].call_tool(
                "generate_video",
                {
                    "model": "sora-2",
                    "prompt": f"bench job {index}: a paper boat on a pond",
                    "wait_seconds": 0,
                },
            )
        )
    except Exception as exc:  # noqa: BLE001  (a bench tallies failures, it does not stop)
        out["errors"].append(f"job {index} submit: {exc}")
        return out
    task_id = first["task_id"]

    async def wait(k: int) -> None:
        client = clients[(index + k) % len(clients)]
        arguments = {"task_id": task_id, "download": True, "wait_seconds": 60}
        try:
            for _ in range(20):
                result = _structured(await client.call_tool("check_video_task", arguments))
                if result.get("path") or result.get("status") in ("failed", "cancelled"):
                    break
            else:
                raise RuntimeError("not saved after 20 checks")
            if not result.get("path"):
                raise RuntimeError(f"ended {result.get('status')}")
            out["saved"][k] = _kept(result)
        except Exception as exc:  # noqa: BLE001
            out["errors"].append(f"job {index} waiter {k} ({task_id}): {exc}")

    async with anyio.create_task_group() as group:
        for k in range(waiters):
            group.start_soon(wait, k)
    return out


async def load_main() -> None:
    """``--load``: the spec as JSON on stdin; prints the jobs' outcomes as one JSON line."""
    import anyio

    spec = json.loads(sys.stdin.readline())
    urls = spec["urls"]
    outcomes: list[dict[str, Any]] = [{} for _ in range(spec["jobs"])]
    start = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(_session(urls[s % len(urls)], keep_alive=False))
            for s in range(spec["sessions"])
        ]

        async def one(index: int) -> None:
            outcomes[index] = await _job(clients, index, spec["waiters"])

        async with anyio.create_task_group() as group:
            for index in range(spec["jobs"]):
                group.start_soon(one, index)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "jobs": outcomes}), flush=True)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


# --- the probe (a process of its own, normal priority) -----------------------------------------


async def probe_main(urls: list[str], idle_calls: int) -> None:
    """``--probe``: bench_load's probe over several replicas in turn. Prints
    ``{"idle": [...]}``, probes from the next line on stdin to the one after, prints
    ``{"loaded": [...], "errors": [...]}``; each call is ``[replica, seconds into the
    load, seconds]``, a call answered with an error is timed too and also listed as
    ``[replica, seconds into the load, text]``."""
    import anyio

    errors: list[list[Any]] = []

    async def timed(probe: Any, i: int, at: float) -> float:
        start = time.perf_counter()
        try:
            return await _probe_once(probe)
        except Exception as exc:  # noqa: BLE001  (an error answer is a figure too)
            errors.append([i, at, str(exc)[:200]])
            return time.perf_counter() - start

    idle: list[list[float]] = []
    loaded: list[list[float]] = []
    async with contextlib.AsyncExitStack() as stack:
        probes = [await stack.enter_async_context(_session(u, keep_alive=True)) for u in urls]
        for probe in probes:
            for _ in range(5):  # warm up: first-call imports are not the figure
                await _probe_once(probe)
        for n in range(idle_calls):
            i = n % len(probes)
            idle.append([i, 0.0, await timed(probes[i], i, 0.0)])
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
            n = 0
            while not stop.is_set():
                i = n % len(probes)
                at = time.perf_counter() - began
                loaded.append([i, at, await timed(probes[i], i, at)])
                n += 1
                await anyio.sleep(PROBE_INTERVAL)
    print(json.dumps({"loaded": loaded, "errors": errors}), flush=True)


# --- one run -------------------------------------------------------------------------------------


def _helper(cmd: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


@contextlib.contextmanager
def _ended(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The helper process, waited for at the end (it has been told to stop) or killed."""
    try:
        yield proc
    finally:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(
    urls: list[str], pids: list[int], spec: RunSpec, args: Any, log: Path
) -> dict[str, Any]:
    """The probe's calls before and during the load, the load's outcome (its stderr in
    ``log``), the replicas' RSS."""
    with _ended(_helper(["--probe", ",".join(urls), "--idle-calls", str(args.idle_calls)])) as p:
        assert p.stdin is not None
        assert p.stdout is not None
        idle = json.loads(p.stdout.readline())["idle"]
        idle_rss = [_status_kib(pid, "VmRSS") * 1024 / MIB for pid in pids]
        p.stdin.write("go\n")
        p.stdin.flush()
        before = _load_average()
        job = {"urls": urls, "jobs": args.jobs, "sessions": args.sessions, "waiters": spec.waiters}
        with log.open("w") as err:
            load = subprocess.run(
                ["nice", "-n", str(args.load_nice), sys.executable, __file__, "--load"],
                input=json.dumps(job),
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                check=False,
            )
        p.stdin.write("stop\n")
        p.stdin.flush()
        answer = p.stdout.readline()
    if not answer:
        raise SystemExit("the probe ended without its figures (its traceback is above)")
    probed = json.loads(answer)
    if load.returncode != 0:
        raise SystemExit(f"the load failed (its log: {log}):\n{log.read_text()[-3000:]}")
    outcome = json.loads(load.stdout.splitlines()[-1])
    return {
        "idle": idle,
        "loaded": probed["loaded"],
        "probe_errors": len(probed["errors"]),
        "probe_error_samples": probed["errors"][:3],
        "jobs": outcome["jobs"],
        "load_seconds": outcome["seconds"],
        "idle_rss_mib": idle_rss,
        "peak_rss_mib": [_status_kib(pid, "VmHWM") * 1024 / MIB for pid in pids],
        "load_average": f"{before}-{_load_average()}",
    }


def embedded_run(spec: RunSpec, root: Path, args: Any) -> dict[str, Any]:
    import httpx2

    root.mkdir(parents=True)
    with (
        simulator(root, args.sim_seconds, args.load_nice) as upstream,
        server(root, HERE, upstream) as (url, pid),
    ):
        measured = measure([url], [pid], spec, args, root / "load.log")
        state = httpx2.get(f"{upstream}/_simulator/state", timeout=30).raise_for_status().json()
    checked = _check_jobs(measured["jobs"], None)
    checked["videos_stored"] = len(list((root / "videos").rglob("*.mp4")))
    return {**_figures(measured, state), **checked}


def team_run(spec: RunSpec, root: Path, args: Any) -> dict[str, Any]:
    env = {} if args.pool_max is None else {"GRAVITEX_DATABASE_POOL_MAX": str(args.pool_max)}
    with Team(
        spec.replicas,
        simulator_seconds=args.sim_seconds,
        env=env,
        root=root,
        postgres_settings=COUNT_STATEMENTS,
    ) as team:
        assert team.postgres is not None
        assert team.s3 is not None
        assert team.simulator_pid is not None
        os.setpriority(os.PRIO_PROCESS, team.simulator_pid, args.load_nice)
        pids = [r.pid for r in team.replicas if r.pid is not None]
        urls = [r.mcp_url for r in team.replicas]
        measured = measure(urls, pids, spec, args, root / "load.log")
        state = team.simulator_state()
        for index in range(spec.replicas):
            team.stop(index)
        database = _database_figures(team.postgres.dsn, team.database_url)
        checked = _check_jobs(measured["jobs"], team.s3)
        checked["videos_stored"] = sum(1 for key in team.objects() if key.endswith(".mp4"))
    return {**_figures(measured, state), **checked, **database}


# --- figures -------------------------------------------------------------------------------------


def _database_figures(admin_dsn: str, dsn: str) -> dict[str, Any]:
    """Statements, transactions and status changes of the database at ``dsn``, read once
    the replicas' sessions have ended (an idle session may keep its counts to itself)."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        deadline = time.monotonic() + SESSIONS_END
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the replicas' sessions on {DATABASE} did not end")
            time.sleep(0.1)
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (DATABASE,),
        ).fetchone()
        xacts = int(row[0]) if row is not None else 0
        calls = {
            str(query): int(n)
            for query, n in conn.execute(
                "SELECT s.query, s.calls FROM pg_stat_statements s"
                " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
                (DATABASE,),
            ).fetchall()
        }
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM task_events").fetchone()
        changes = max(int(row[0]) if row is not None else 0, 1)
    listings = sum(n for q, n in calls.items() if q.startswith(LISTING))
    begins = sum(n for q, n in calls.items() if q.upper().startswith("BEGIN"))
    statements = sum(calls.values()) - listings
    transactions = xacts - 2 * listings  # each listing: the pool's check, the read
    return {
        "status_changes": changes,
        "db_statements": statements,
        "db_transactions": transactions,
        "db_begins": begins,
        "probe_listings": listings,
        "round_trips_per_change": [
            statements / changes,
            (statements + transactions - begins) / changes,
        ],
        "top_statements": sorted(calls.items(), key=lambda p: -p[1])[:12],
    }


def _read_saved(saved: dict[str, Any], s3: SeaweedS3 | None) -> tuple[bool, bool]:
    """Whether the saved video has the reported bytes, and whether its contact sheet exists."""
    import httpx2

    if s3 is None:
        data = Path(saved["path"]).read_bytes()
        sheet = saved["preview"] is not None and Path(saved["preview"]).is_file()
    else:
        data = httpx2.get(saved["media_url"], timeout=60).raise_for_status().content
        sheet = (
            saved["preview"] is not None
            and (
                s3.credentials.signed_request("HEAD", "/" + saved["preview"].removeprefix("s3://"))
            ).status_code
            == 200
        )
    good = len(data) == saved["size_bytes"] and hashlib.sha256(data).hexdigest() == saved["sha256"]
    return good, sheet


def _check_jobs(jobs: list[dict[str, Any]], s3: SeaweedS3 | None) -> dict[str, Any]:
    failures = [e for job in jobs for e in job.get("errors", [])]
    wanted = [(i, s) for i, job in enumerate(jobs) for s in job.get("saved", []) if s is not None]
    with ThreadPoolExecutor(8) as pool:
        checked = list(pool.map(lambda pair: _read_saved(pair[1], s3), wanted))
    bad: set[int] = set()
    unseen: set[int] = set()
    for (i, saved), (good, sheet) in zip(wanted, checked, strict=True):
        if not good:
            bad.add(i)
            failures.append(f"job {i}: {saved['uri']} is not what was reported")
        if not sheet:
            unseen.add(i)
    whole = {i for i, job in enumerate(jobs) if job.get("saved") and None not in job["saved"]}
    return {
        "saved": len(whole - bad),
        "looked": len(whole - bad - unseen),
        "failed_calls": len(failures),
        "failures": failures[:10],
    }


def _figures(measured: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    calls = state["calls"]
    tasks = max(len(state["tasks"]), 1)
    loaded = measured["loaded"]
    took = [s for _, _, s in loaded]
    replicas = sorted({int(i) for i, _, _ in loaded})
    return {
        **{k: v for k, v in measured.items() if k not in ("idle", "loaded", "jobs")},
        "jobs": len(measured["jobs"]),
        "idle_p50_ms": statistics.median(s for _, _, s in measured["idle"]) * 1000,
        "load_p50_ms": statistics.median(took) * 1000,
        "load_p99_ms": _pct(took, 0.99) * 1000,
        "load_max_ms": max(took) * 1000,
        "load_p99_ms_by_replica": [
            _pct([s for i, _, s in loaded if i == r], 0.99) * 1000 for r in replicas
        ],
        "probe_calls": len(took),
        # the slowest calls under load, as (seconds into the load, milliseconds)
        "slowest": sorted(
            ((round(a, 2), round(s * 1000)) for _, a, s in loaded), key=lambda p: -p[1]
        )[:6],
        "upstream_tasks": len(state["tasks"]),
        "upstream_calls": calls,
        "queries_per_task": calls.get("query", 0) / tasks,
        "downloads_per_task": (calls.get("download", 0) + calls.get("file", 0)) / tasks,
    }


# --- the driver --------------------------------------------------------------------------------


def _table(rows: list[tuple[RunSpec, dict[str, Any]]]) -> None:
    print(
        "| run | saved | looked at | videos stored | load p50 ms | load p99 ms | load max ms | "
        "calls | failed calls | upstream queries/task | downloads/task | "
        "DB round trips/status change | "
        "peak RSS MiB per replica | load s | load avg |"
    )
    print("| --- |" + " ---: |" * 13 + " --- |")
    for spec, f in rows:
        trips = f.get("round_trips_per_change")
        db = f"{trips[0]:.1f}-{trips[1]:.1f}" if trips else "n/a"
        print(
            f"| {spec.label} | {f['saved']}/{f['jobs']} | {f['looked']}/{f['jobs']} | "
            f"{f['videos_stored']} | {f['load_p50_ms']:.1f} | {f['load_p99_ms']:.1f} | "
            f"{f['load_max_ms']:.0f} | {f['probe_calls']} | "
            f"{f['probe_errors']} probe, {f['failed_calls']} jobs' | {f['queries_per_task']:.2f} | "
            f"{f['downloads_per_task']:.2f} | {db} | "
            f"{' / '.join(f'{m:.0f}' for m in f['peak_rss_mib'])} | "
            f"{f['load_seconds']:.1f} | {f['load_average']} |"
        )
        for failure in f["failures"][:5]:
            print(f"  {spec.name}: {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=50, help="an even number")
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"comma-separated: {', '.join(RUNS)}"
    )
    parser.add_argument("--idle-calls", type=int, default=50)
    parser.add_argument("--sim-seconds", type=float, default=3.0)
    parser.add_argument(
        "--load-nice",
        type=int,
        default=10,
        help="niceness of the load's client and the simulator (they stand in for other "
        "machines; the replicas, the probe, PostgreSQL and SeaweedFS keep the normal one)",
    )
    parser.add_argument("--pool-max", type=int, help="GRAVITEX_DATABASE_POOL_MAX per replica")
    parser.add_argument("--json", action="store_true", help="print each run's figures as JSON")
    parser.add_argument("--keep", type=Path, help="keep the folders and logs here (empty dir)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import anyio

    if args.probe:
        anyio.run(probe_main, args.probe.split(","), args.idle_calls)
        return
    if args.load:
        try:
            anyio.run(load_main)
        except BaseExceptionGroup as group:  # 50 sessions nest the cause out of sight
            for leaf in _leaves(group)[:3]:
                traceback.print_exception(leaf)
            raise
        return
    if args.sessions % 2:
        parser.error("--sessions must be even: the sessions are spread over two replicas")
    specs = [RUNS[name] for name in args.runs.split(",")]
    rows = []
    with _workdir(args.keep) as tmp:
        for spec in specs:
            run = embedded_run if not spec.team else team_run
            figures = run(spec, Path(tmp) / spec.name, args)
            if args.json:
                print(json.dumps({"run": spec.name, **figures}), flush=True)
            rows.append((spec, figures))
    _table(rows)


if __name__ == "__main__":
    main()
