"""One replica against two on PostgreSQL + S3, and the embedded default, under 1,000 jobs.

Usage (from the repository root)::

    .venv/bin/python bench/bench_team.py [--jobs 1000] [--sessions 50] [--load-nice 10]
        [--runs embedded,pg1,pg2,pg2-shared] [--sim-seconds 3] [--json] [--keep DIR]

One simulator (``gravitex_mcp simulator``, its own process on loopback, generations of
``--sim-seconds``) serves every run; its counters are reset before each. PostgreSQL 15
and SeaweedFS are started by ``tests/services.py`` (pg_stat_statements preloaded);
each team run gets a fresh database and a fresh bucket, each replica fresh folders.

Runs (``--runs``, in order):

* ``embedded``: one server, the default SQLite journal and local output folder: the
  plain alternative, and the baseline of "upstream queries per task".
* ``pg1``: one replica on PostgreSQL + S3 (``GRAVITEX_DATABASE_URL``,
  ``GRAVITEX_STORAGE_URL``).
* ``pg2``: two replicas on the same database and bucket; the jobs' sessions are spread
  over them (round robin per session): each job is submitted and waited on through
  one replica.
* ``pg2-shared``: as ``pg2``, but each task is waited on by two sessions, one on each
  replica (the e2e suite's "20 waiters" across replicas, at scale): a task's polls and
  save are shared across replicas only if the replicas coordinate them.

The load: ``--sessions`` MCP sessions over streamable HTTP (session ``s`` on replica
``s % replicas``) run the ``--jobs`` jobs all at once, in a process of their own at
``--load-nice`` (it stands in for the agents' machines): ``generate_video``
(``wait_seconds`` 0), then ``check_video_task`` with ``download: true`` until saved.
Meanwhile a probe process (normal priority) calls ``list_video_tasks`` (limit 5, a
store read that never waits upstream) every 20 ms, on each replica in turn.

Figures per run:

* **saved / looked at**: every waiter got the saved video, whose bytes (read back from
  the folder, or through the presigned ``media_url``) have the reported size and
  sha256; its contact sheet exists. ``objects``: distinct saved URIs per task (1).
* **p50/p99/max** of the probe's ``list_video_tasks`` under load.
* **upstream queries per task**: the simulator's ``query`` count over its tasks
  (``/_simulator/state``); downloads per task likewise (``download`` + ``file``).
* **database statements and transactions per status change**: ``pg_stat_statements``
  calls (BEGIN/COMMIT included: each a round trip) and ``pg_stat_database``
  ``xact_commit + xact_rollback`` over the load, divided by the rows the load added to
  ``task_events`` (the tasks' status history). The probe's own listings are taken
  out (one statement, and two transactions: psycopg_pool's check of the connection,
  an empty query that PostgreSQL counts as a transaction but not as a statement, and
  the read). So a round trip is a statement or a pool check: between the statements
  and the statements plus the transactions that were not BEGIN ... COMMIT blocks.
* **peak RSS per replica**: each replica's ``VmHWM`` after the load.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))  # tests.services, when run as a script
sys.path.insert(0, str(Path(__file__).parent))  # beside bench_load
from bench_load import (  # noqa: E402
    MIB,
    PROBE_INTERVAL,
    _env,
    _free_port,
    _load_average,
    _pct,
    _probe_once,
    _process,
    _session,
    _status_kib,
    _structured,
    _workdir,
    simulator,
)

from tests.services import (  # noqa: E402
    PostgresServer,
    SeaweedS3,
    start_postgres,
    start_seaweed,
)

#: How SeaweedFS makes a copy create-only (see tests/store/test_video_store_contract.py).
SEAWEED_COPY = "header:If-None-Match:*"
#: How long the replicas' backends get to end once the replicas have stopped.
STATS_SETTLE = 10.0
#: The probe's listing, as pg_stat_statements normalises it (store/postgres.py ``list``).
LISTING = "SELECT * FROM tasks WHERE user_id = $1 ORDER BY created_at DESC"


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


# --- services and replicas -------------------------------------------------------------------


@dataclass
class Services:
    pg: PostgresServer
    s3: SeaweedS3
    secret: str


@contextlib.contextmanager
def services() -> Iterator[Services]:
    import psycopg

    pg = start_postgres()
    try:
        # No change to tests/services.py: the setting goes to postgresql.auto.conf.
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        pg.restart()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        s3 = start_seaweed()
        try:
            yield Services(pg, s3, secrets.token_urlsafe(36))
        finally:
            s3.close()
    finally:
        pg.close()


def team_env(svc: Services, dsn: str, bucket: str, pool_max: int | None) -> dict[str, str]:
    env = {
        "GRAVITEX_DATABASE_URL": dsn,
        "GRAVITEX_SERVER_SECRET": svc.secret,
        "GRAVITEX_STORAGE_URL": f"s3://{bucket}/team",
        "AWS_ENDPOINT_URL": svc.s3.endpoint,
        "AWS_ACCESS_KEY_ID": svc.s3.access_key_id,
        "AWS_SECRET_ACCESS_KEY": svc.s3.secret_access_key,
        "AWS_REGION": svc.s3.region,
        "AWS_ALLOW_HTTP": "true",
        "AWS_COPY_IF_NOT_EXISTS": SEAWEED_COPY,
    }
    if pool_max is not None:
        env["GRAVITEX_DATABASE_POOL_MAX"] = str(pool_max)
    return env


@contextlib.contextmanager
def replica(root: Path, upstream: str, extra: dict[str, str]) -> Iterator[tuple[str, int]]:
    """One ``gravitex_mcp --transport streamable-http`` of this checkout, folders of its own."""
    port = _free_port()
    home = root / "home"
    home.mkdir(parents=True)
    env = _env(
        home,
        HERE,
        GRAVITEX_BASE_URL=upstream,
        GRAVITEX_API_KEY="sk-bench",
        GRAVITEX_OUTPUT_DIR=str(root / "videos"),
        GRAVITEX_STATE_DIR=str(root / "state"),
        **extra,
    )
    cmd = [sys.executable, "-m", "gravitex_mcp", "--transport", "streamable-http"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with _process(cmd, env, root / "server.log", f"{base}/readyz") as pid:
        yield f"{base}/mcp", pid


# --- the load (a process of its own, niced) ----------------------------------------------------


def _kept(result: dict[str, Any]) -> dict[str, Any]:
    preview = result.get("preview") or {}
    return {
        "uri": result["uri"],
        "path": result.get("path"),
        "size_bytes": result["size_bytes"],
        "sha256": result["sha256"],
        "media_url": result.get("media_url"),
        "preview": preview.get("path"),
    }


async def _job(clients: list[Any], index: int, waiters: int) -> dict[str, Any]:
    import anyio

    prompt = f"bench job {index}: a paper boat on a pond"
    out: dict[str, Any] = {"saved": [None] * waiters, "errors": []}
    try:
        first = _structured(
            await clients[index % len(clients)].call_tool(
                "generate_video", {"model": "sora-2", "prompt": prompt, "wait_seconds": 0}
            )
        )
    except Exception as exc:  # noqa: BLE001  (a bench tallies failures, it does not stop)
        out["errors"].append(f"job {index} submit: {exc}")
        return out
    task_id = out["task_id"] = first["task_id"]

    async def wait(k: int) -> None:
        client = clients[(index + k) % len(clients)]
        try:
            for _ in range(20):
                result = _structured(
                    await client.call_tool(
                        "check_video_task",
                        {"task_id": task_id, "download": True, "wait_seconds": 60},
                    )
                )
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
    urls, sessions = spec["urls"], spec["sessions"]
    outcomes: list[dict[str, Any]] = [{} for _ in range(spec["jobs"])]
    start = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(_session(urls[s % len(urls)])) for s in range(sessions)
        ]

        async def one(index: int) -> None:
            outcomes[index] = await _job(clients, index, spec["waiters"])

        async with anyio.create_task_group() as group:
            for index in range(spec["jobs"]):
                group.start_soon(one, index)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "jobs": outcomes}), flush=True)


# --- the probe (a process of its own, normal priority) -----------------------------------------


async def probe_main(urls: list[str], idle_calls: int) -> None:
    """``--probe``: as bench_load's, over several replicas in turn. Prints ``{"idle": [...]}``,
    probes from the first line on stdin to the next, prints ``{"loaded": [...]}``; each
    call is ``[replica, seconds into the load, seconds]``."""
    import anyio

    idle: list[list[float]] = []
    loaded: list[list[float]] = []
    async with contextlib.AsyncExitStack() as stack:
        probes = [await stack.enter_async_context(_session(u)) for u in urls]
        for probe in probes:
            for _ in range(5):  # warm up: first-call imports are not the figure
                await _probe_once(probe)
        for n in range(idle_calls):
            i = n % len(probes)
            idle.append([i, 0.0, await _probe_once(probes[i])])
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
                loaded.append([i, at, await _probe_once(probes[i])])
                n += 1
                await anyio.sleep(PROBE_INTERVAL)
    print(json.dumps({"loaded": loaded}), flush=True)


def _end(proc: subprocess.Popen[str]) -> None:
    """Let a helper process finish (it has been told to), or end it when the run broke."""
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- measuring ---------------------------------------------------------------------------------


def _sim(upstream: str, route: str, method: str = "GET") -> dict[str, Any]:
    import httpx2

    answer = httpx2.request(method, f"{upstream}/_simulator/{route}", timeout=30)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


def _db_counts(svc: Services, dbname: str, *, reset: bool = False) -> dict[str, Any]:
    """Transactions of ``dbname`` so far, and its statements since the last reset. Read
    with no replica connected: a backend's counts reach pg_stat_database for sure only
    when it exits (an idle one may hold them indefinitely)."""
    import psycopg

    with psycopg.connect(svc.pg.dsn, autocommit=True) as conn:
        deadline = time.monotonic() + STATS_SETTLE
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (dbname,)
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the replicas' connections to {dbname} did not close")
            time.sleep(0.1)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (dbname,),
        ).fetchone()
        statements = conn.execute(
            "SELECT s.query, s.calls FROM pg_stat_statements s"
            " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s ORDER BY s.calls DESC",
            (dbname,),
        ).fetchall()
        if reset:
            conn.execute("SELECT pg_stat_statements_reset()")
    return {"xacts": int(row[0]) if row else 0, "statements": [list(s) for s in statements]}


def _status_changes(svc: Services, dbname: str) -> int:
    import psycopg

    with psycopg.connect(svc.pg.dsn_for(dbname), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM task_events").fetchone()
    return int(row[0]) if row else 0


def _database_figures(
    before: dict[str, Any], after: dict[str, Any], changes: int
) -> dict[str, Any]:
    calls = {q: int(n) for q, n in after["statements"]}
    listings = sum(n for q, n in calls.items() if q.startswith(LISTING))
    begins = sum(n for q, n in calls.items() if q.strip().upper().startswith("BEGIN"))
    statements = sum(calls.values()) - listings
    xacts = after["xacts"] - before["xacts"] - 2 * listings
    per = max(changes, 1)
    return {
        "status_changes": changes,
        "db_statements": statements,
        "db_transactions": xacts,
        "db_begins": begins,
        "probe_listings": listings,
        "statements_per_change": statements / per,
        "transactions_per_change": xacts / per,
        # a round trip is a statement or a pool check (a transaction outside BEGIN blocks)
        "round_trips_per_change": [statements / per, (statements + xacts - begins) / per],
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
        sheet = False
        if saved["preview"]:
            bucket_key = saved["preview"].removeprefix("s3://")
            answer = s3.credentials.signed_request("HEAD", f"/{bucket_key}")
            sheet = answer.status_code == 200
    good = len(data) == saved["size_bytes"] and hashlib.sha256(data).hexdigest() == saved["sha256"]
    return good, sheet


def _check_jobs(jobs: list[dict[str, Any]], s3: SeaweedS3 | None) -> dict[str, Any]:
    failures = [e for job in jobs for e in job.get("errors", [])]
    wanted = [(i, s) for i, job in enumerate(jobs) for s in job.get("saved", []) if s is not None]
    with ThreadPoolExecutor(8) as pool:
        checked = list(pool.map(lambda p: _read_saved(p[1], s3), wanted))
    bad: set[int] = set()
    unseen: set[int] = set()
    for (i, saved), (good, sheet) in zip(wanted, checked, strict=True):
        if not good:
            bad.add(i)
            failures.append(f"job {i}: {saved['uri']} is not what was reported")
        if not sheet:
            unseen.add(i)
    complete = {i for i, job in enumerate(jobs) if job.get("saved") and None not in job["saved"]}
    objects = [len({s["uri"] for s in job["saved"]}) for job in jobs if job.get("saved")]
    return {
        "saved": len(complete - bad),
        "looked": len(complete - bad - unseen),
        "objects_per_task": max(objects, default=0),
        "failures": failures,
    }


def one_run(
    spec: RunSpec, root: Path, upstream: str, svc: Services | None, args: argparse.Namespace
) -> dict[str, Any]:
    _sim(upstream, "reset", "POST")
    team = svc if spec.team else None
    extra: dict[str, str] = {}
    dbname = f"bench_{spec.name.replace('-', '_')}"
    db_before = None
    if team is not None:
        dsn = team.pg.create_database(dbname)
        bucket = team.s3.create_bucket(f"bench-{spec.name}")
        extra = team_env(team, dsn, bucket, args.pool_max)
        # Counted over the replicas' whole life (start-up and shutdown are a few dozen).
        db_before = _db_counts(team, dbname, reset=True)
    before_avg = _load_average()
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(replica(root / spec.name / f"r{i}", upstream, extra))
            for i in range(spec.replicas)
        ]
        urls, pids = [u for u, _ in started], [p for _, p in started]
        probe = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--probe",
                ",".join(urls),
                "--idle-calls",
                str(args.idle_calls),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(_end, probe)
        assert probe.stdin is not None
        assert probe.stdout is not None
        idle = json.loads(probe.stdout.readline())["idle"]
        idle_rss = [_status_kib(pid, "VmRSS") * 1024 / MIB for pid in pids]
        probe.stdin.write("go\n")
        probe.stdin.flush()
        load = subprocess.run(
            ["nice", "-n", str(args.load_nice), sys.executable, __file__, "--load"],
            input=json.dumps(
                {
                    "urls": urls,
                    "jobs": args.jobs,
                    "sessions": args.sessions,
                    "waiters": spec.waiters,
                }
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        probe.stdin.write("stop\n")
        probe.stdin.flush()
        loaded = json.loads(probe.stdout.readline())["loaded"]
        if load.returncode != 0:
            raise SystemExit(f"the load failed:\n{load.stderr[-3000:]}")
        outcome = json.loads(load.stdout.splitlines()[-1])
        peak = [_status_kib(pid, "VmHWM") * 1024 / MIB for pid in pids]
        state = _sim(upstream, "state")
    figures = _figures(loaded, idle, state)
    figures.update(
        label=spec.label,
        jobs=args.jobs,
        load_seconds=outcome["seconds"],
        idle_rss_mib=idle_rss,
        peak_rss_mib=peak,
        load_average=f"{before_avg}-{_load_average()}",
        **_check_jobs(outcome["jobs"], team.s3 if team is not None else None),
    )
    if team is not None and db_before is not None:
        db_after = _db_counts(team, dbname)  # the replicas have stopped
        figures.update(_database_figures(db_before, db_after, _status_changes(team, dbname)))
    return figures


def _figures(
    loaded: list[list[float]], idle: list[list[float]], state: dict[str, Any]
) -> dict[str, Any]:
    import statistics

    calls = state["calls"]
    tasks = max(len(state["tasks"]), 1)
    took = [s for _, _, s in loaded]
    by_replica = {
        int(r): _pct([s for i, _, s in loaded if i == r], 0.99) * 1000
        for r in {i for i, _, _ in loaded}
    }
    return {
        "idle_p50_ms": statistics.median(s for _, _, s in idle) * 1000,
        "load_p50_ms": statistics.median(took) * 1000,
        "load_p99_ms": _pct(took, 0.99) * 1000,
        "load_max_ms": max(took) * 1000,
        "load_p99_ms_by_replica": by_replica,
        "probe_calls": len(took),
        "slowest": sorted(
            ((round(a, 2), round(s * 1000)) for _, a, s in loaded), key=lambda p: -p[1]
        )[:6],
        "upstream_tasks": len(state["tasks"]),
        "upstream_calls": calls,
        "queries_per_task": calls.get("query", 0) / tasks,
        "downloads_per_task": (calls.get("download", 0) + calls.get("file", 0)) / tasks,
    }


# --- the driver --------------------------------------------------------------------------------


def _table(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(
        "| run | saved | looked at | objects/task | load p50 ms | load p99 ms | load max ms | "
        "calls | upstream queries/task | downloads/task | DB statements/change | "
        "DB transactions/change | peak RSS MiB per replica | load s | load avg |"
    )
    print("| --- |" + " ---: |" * 13 + " --- |")
    for name, f in rows:
        rss = " / ".join(f"{m:.0f}" for m in f["peak_rss_mib"])
        db = (
            (f"{f['statements_per_change']:.1f}", f"{f['transactions_per_change']:.1f}")
            if "status_changes" in f
            else ("n/a", "n/a")
        )
        print(
            f"| {name} | {f['saved']}/{f['jobs']} | {f['looked']}/{f['jobs']} | "
            f"{f['objects_per_task']} | {f['load_p50_ms']:.1f} | {f['load_p99_ms']:.1f} | "
            f"{f['load_max_ms']:.0f} | {f['probe_calls']} | {f['queries_per_task']:.2f} | "
            f"{f['downloads_per_task']:.2f} | {db[0]} | {db[1]} | {rss} | "
            f"{f['load_seconds']:.1f} | {f['load_average']} |"
        )
        for failure in f["failures"][:5]:
            print(f"  {name}: {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=50)
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
        "machines; the replicas and the probe keep the normal priority)",
    )
    parser.add_argument("--pool-max", type=int, help="GRAVITEX_DATABASE_POOL_MAX of each replica")
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
        anyio.run(load_main)
        return
    specs = [RUNS[name] for name in args.runs.split(",")]
    if args.sessions % 2:
        parser.error("--sessions must be even (sessions are spread over two replicas)")
    rows = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(_workdir(args.keep)))
        upstream = stack.enter_context(simulator(tmp, args.sim_seconds, args.load_nice))
        svc = stack.enter_context(services()) if any(s.team for s in specs) else None
        for spec in specs:
            figures = one_run(spec, tmp, upstream, svc, args)
            if args.json:
                print(json.dumps({"run": spec.name, **figures}), flush=True)
            rows.append((spec.name, figures))
    _table(rows)


if __name__ == "__main__":
    main()
