"""Hosting for a team, end to end (issue 17): two replica processes of the real server on
one real PostgreSQL and one real S3 store (SeaweedFS), each with its own empty local
folders, driven by ``mcp.Client`` over streamable HTTP.

The processes are started by ``scripts/team.py`` (:class:`Team`), once for the module.
The simulated API runs in its own process with generations that never end on their
own: a test moves the simulator's clock (its ``/_simulator/advance`` route) when it
wants a task finished, and counts upstream calls through ``/_simulator/state``. Real
waits are bounded and on real processes only (a replica starting, a lease lapsing).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import psycopg
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gravitex_mcp.upstream.waiting import PollSchedule
from scripts.team import BUCKET, PREFIX, Replica, Team
from tests.conftest import service_unavailable
from tests.proc import REPO, clean_env
from tests.server_harness import structured
from tests.services import (
    ServiceUnavailableError,
    dies_with_us,
    postgres_missing,
    weed_missing,
)

pytestmark = pytest.mark.slow  # PostgreSQL, SeaweedFS, a simulator and two servers

#: A simulated generation takes an hour: it ends when a test moves the clock on.
GENERATION = 3600.0
#: What a call over HTTP may take at most here (a wait, a save, a join on 2 busy cores).
CALL_TIMEOUT = 120.0
#: The contract: a replica that dies mid-wait or mid-save is taken over within this.
TAKEOVER_SECONDS = 30.0
VIDEO = {"model": "veo-3.1-fast-generate-preview", "duration": 4, "aspect_ratio": "16:9"}


@pytest.fixture(scope="module")
def started_team() -> Iterator[Team]:
    with contextlib.ExitStack() as stack:
        try:
            started = stack.enter_context(Team(replicas=2, simulator_seconds=GENERATION))
        except ServiceUnavailableError as exc:
            service_unavailable(str(exc))
        yield started


@pytest.fixture
def team(started_team: Team) -> Team:
    """The module's team with both replicas up (a failed test may have left one killed).
    Restarted from the main thread, so the replicas die with the test run."""
    for replica in started_team.replicas:
        if not replica.running:
            started_team.restart(replica.index)
    return started_team


@contextlib.asynccontextmanager
async def session(replica: Replica) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(CALL_TIMEOUT)) as http,
        Client(
            streamable_http_client(replica.mcp_url, http_client=http),
            read_timeout_seconds=CALL_TIMEOUT,
        ) as client,
    ):
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return structured(await client.call_tool(tool, arguments))


async def submitted(client: Client, prompt: str, **extra: Any) -> str:
    """A new task's id (nothing waited for)."""
    made = await call(client, "generate_video", **VIDEO, prompt=prompt, wait_seconds=0, **extra)
    task_id: str = made["task_id"]
    return task_id


async def finish_generations(team: Team) -> None:
    """Every simulated task submitted so far is now finished."""
    await anyio.to_thread.run_sync(team.advance, GENERATION)


async def upstream_calls(team: Team) -> dict[str, int]:
    state = await anyio.to_thread.run_sync(team.simulator_state)
    return dict(state["calls"])


async def objects(team: Team) -> set[str]:
    return set(await anyio.to_thread.run_sync(team.objects))


async def lease_holders(team: Team, task_id: str) -> dict[str, str]:
    """The leases on ``task_id`` now: kind -> holder (``pid N on host``)."""
    async with await psycopg.AsyncConnection.connect(team.database_url) as conn:
        cur = await conn.execute("SELECT kind, holder FROM leases WHERE task_id = %s", (task_id,))
        return {str(kind): str(holder) for kind, holder in await cur.fetchall()}


async def until(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str, every: float = 0.05
) -> None:
    """Until ``condition()`` holds: state in other processes (the database, the simulator)
    that nothing here is told about, so looked at every ``every`` s, at most ``within`` s."""
    with anyio.move_on_after(within):
        while not await condition():  # noqa: ASYNC110 - no event crosses the processes
            await anyio.sleep(every)
        return
    raise AssertionError(f"not within {within:g} s: {what}")


def holds(replica: Replica, holders: dict[str, str]) -> bool:
    return any(h.startswith(f"pid {replica.pid} ") for h in holders.values())


async def leader_of(team: Team, task_id: str, *, within: float = 20.0) -> Replica:
    """The replica holding a lease on ``task_id`` (its poll or its save)."""
    found: list[Replica] = []

    async def held() -> bool:
        holders = await lease_holders(team, task_id)
        found[:] = [r for r in team.replicas if holds(r, holders)]
        return bool(found)

    await until(
        held,
        within=within,
        what=f"a replica holding a lease on task {task_id} once waits on it started (one "
        "replica must poll it for all: the cross-replica poll lease)",
    )
    return found[0]


def polls_within(seconds: float) -> int:
    """How many queries one process's poll loop makes in ``seconds`` (the first at once,
    then one after each of the schedule's intervals): what one process waiting on one
    task costs the upstream, however many waiters it has."""
    schedule, count, at = PollSchedule(), 0, 0.0
    while at <= seconds:
        at += schedule.interval(count)
        count += 1
    return count


def new_videos(before: set[str], after: set[str]) -> set[str]:
    return {k for k in after - before if k.endswith(".mp4") and "/_uploads/" not in k}


def no_local_videos(team: Team) -> None:
    """Every replica's own folders stayed free of videos and frames: all are objects."""
    for replica in team.replicas:
        local = [p for p in replica.root.rglob("*") if p.suffix in (".mp4", ".png", ".jpg")]
        assert local == [], local


# --- one replica makes, the other checks, downloads, extracts, joins and lists ----------


async def test_a_task_made_on_one_replica_is_used_through_the_other(team: Team) -> None:
    a, b = team.replicas
    base = f"s3://{BUCKET}/{PREFIX}"
    async with session(a) as on_a:
        first = await submitted(on_a, "a lighthouse at dusk, waves below")
        second = await submitted(on_a, "the same lighthouse at night, its beam turning")
    await finish_generations(team)
    async with session(b) as on_b:
        checked = await call(
            on_b, "check_video_task", task_id=first, download=True, wait_seconds=60
        )
        assert checked["status"] == "succeeded"
        assert checked["uri"].startswith(base)
        media_url = checked["media_url"]
        assert team.s3 is not None
        assert media_url.startswith(team.s3.endpoint)  # served by the storage, presigned
        assert "X-Amz-Signature=" in media_url
        async with httpx2.AsyncClient(timeout=CALL_TIMEOUT) as http:
            whole = await http.get(media_url)
            ranged = await http.get(media_url, headers={"Range": "bytes=4-11"})
        assert whole.status_code == 200
        assert len(whole.content) == checked["size_bytes"]
        assert hashlib.sha256(whole.content).hexdigest() == checked["sha256"]
        assert ranged.status_code == 206
        assert ranged.content == whole.content[4:12]

        again = await call(on_b, "download_video", task_id=first)
        assert again["reused"] is True
        assert again["uri"] == checked["uri"]

        frames = await call(on_b, "extract_frames", task_id=first, at=["first", "last"])
        assert [f["uri"][: len(base)] for f in frames["frames"]] == [base, base]

        joined = await call(on_b, "join_videos", task_ids=[first, second])
        assert joined["uri"].startswith(base)
        assert joined["probe"]["duration_seconds"] == pytest.approx(8.0, abs=0.2)

        listed = await call(on_b, "list_video_tasks", limit=50)
    by_id = {t["task_id"]: t for t in listed["tasks"]}
    assert by_id[first]["status"] == "succeeded"
    assert by_id[first]["path"] is None  # an object: its uri names it
    assert by_id[first]["uri"] == checked["uri"]
    assert by_id[second]["uri"] is not None  # the join saved it first
    keys = await objects(team)
    for uri in (checked["uri"], joined["uri"], *(f["uri"] for f in frames["frames"])):
        assert uri.removeprefix(f"s3://{BUCKET}/") in keys
    no_local_videos(team)


# --- one idempotency key sent to both at once -------------------------------------------


async def test_one_key_sent_to_both_replicas_at_once_submits_once(team: Team) -> None:
    key = f"team-e2e-{uuid.uuid4()}"
    answers: dict[int, dict[str, Any]] = {}
    before = await upstream_calls(team)
    async with session(team.replicas[0]) as on_a, session(team.replicas[1]) as on_b:

        async def send(index: int, client: Client) -> None:
            answers[index] = await call(
                client,
                "generate_video",
                **VIDEO,
                prompt="a red kite over the dunes",
                wait_seconds=0,
                idempotency_key=key,
            )

        async with anyio.create_task_group() as group:
            group.start_soon(send, 0, on_a)
            group.start_soon(send, 1, on_b)
    after = await upstream_calls(team)
    assert after.get("submit", 0) - before.get("submit", 0) == 1
    assert answers[0]["task_id"] == answers[1]["task_id"]
    async with await psycopg.AsyncConnection.connect(team.database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s", (key,))
        assert await cur.fetchone() == (1,)


# --- 20 waiters on two replicas poll as one and save one object --------------------------


@pytest.mark.parametrize(
    "replicas",
    [
        # The yardstick checked: one process with 20 waiters polls as one loop.
        pytest.param(1, id="all-on-one"),
        pytest.param(2, id="split-10-10"),
    ],
)
async def test_twenty_waiters_across_replicas_poll_as_one_and_save_once(
    team: Team, replicas: int
) -> None:
    async with session(team.replicas[0]) as on_a:
        task_id = await submitted(on_a, f"twenty people watching one kettle, {replicas}")
    keys_before = await objects(team)
    queries_before = (await upstream_calls(team)).get("query", 0)
    results: list[dict[str, Any]] = []

    async def wait_on(replica: Replica) -> None:
        async with session(replica) as client:
            results.append(
                await call(
                    client, "check_video_task", task_id=task_id, download=True, wait_seconds=90
                )
            )

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for i in range(20):
            group.start_soon(wait_on, team.replicas[i % replicas])

        # Let the task run through a few polls (one process's first three take 5 s),
        # then finish it: counted, not slept for.
        async def polled_thrice() -> bool:
            return (await upstream_calls(team)).get("query", 0) - queries_before >= 3

        await until(polled_thrice, within=30, every=0.1, what="three queries of the task")
        await finish_generations(team)
    elapsed = time.monotonic() - started
    queries = (await upstream_calls(team)).get("query", 0) - queries_before
    assert len(results) == 20
    assert {r["status"] for r in results} == {"succeeded"}
    assert len({r["uri"] for r in results}) == 1, {r["uri"] for r in results}
    # One process with 20 waiters polls once per interval; two must not poll twice as often.
    assert queries <= polls_within(elapsed), (queries, elapsed)
    saved = new_videos(keys_before, await objects(team))
    assert saved == {results[0]["uri"].removeprefix(f"s3://{BUCKET}/")}


# --- kill -9 the replica leading a wait --------------------------------------------------


@dataclass
class Waits:
    """Waiters that save (check_video_task with download: true), by replica: what each
    got. A killed replica's caller gets no answer but whatever error its connection
    gives; the test checks whose errors these are."""

    task_id: str
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: dict[int, BaseException] = field(default_factory=dict)

    async def on(self, replica: Replica) -> None:
        try:
            async with session(replica) as client:
                self.answers[replica.index] = await call(
                    client, "check_video_task", task_id=self.task_id, download=True, wait_seconds=90
                )
        except Exception as exc:
            self.errors[replica.index] = exc


async def taken_over(team: Team, waits: Waits, survivor: Replica, killed_at: float) -> float:
    """Seconds from the kill until ``survivor`` holds the task's lease or has answered."""

    async def took() -> bool:
        if survivor.index in waits.answers:
            return True
        return holds(survivor, await lease_holders(team, waits.task_id))

    await until(took, within=TAKEOVER_SECONDS + 15, what=f"{survivor.mcp_url} taking the work over")
    return time.monotonic() - killed_at


async def test_killing_the_replica_that_polls_a_task_hands_the_wait_to_the_other(
    team: Team,
) -> None:
    async with session(team.replicas[0]) as on_a:
        waits = Waits(await submitted(on_a, "a relay race, the baton passed"))
    keys_before = await objects(team)
    async with anyio.create_task_group() as group:
        for replica in team.replicas:
            group.start_soon(waits.on, replica)
        leader = await leader_of(team, waits.task_id)
        survivor = team.replicas[1 - leader.index]
        await anyio.to_thread.run_sync(team.kill, leader.index)
        killed_at = time.monotonic()
        # The task ends now: only the survivor is left to see it and save it.
        await finish_generations(team)
        took = await taken_over(team, waits, survivor, killed_at)

        async def answered() -> bool:
            return survivor.index in waits.answers or survivor.index in waits.errors

        await until(answered, within=60, what=f"{survivor.mcp_url} answering")
        group.cancel_scope.cancel()  # the killed replica's caller waits for nothing
    assert set(waits.errors) <= {leader.index}, waits.errors
    answer = waits.answers[survivor.index]
    assert answer["status"] == "succeeded"
    assert answer["uri"].startswith(f"s3://{BUCKET}/{PREFIX}")
    assert took <= TAKEOVER_SECONDS, f"{survivor.mcp_url} took the wait over after {took:.1f} s"
    saved = new_videos(keys_before, await objects(team))
    assert saved == {answer["uri"].removeprefix(f"s3://{BUCKET}/")}


async def test_killing_the_replica_that_saves_a_video_hands_the_save_to_the_other(
    team: Team,
) -> None:
    # A large video keeps its save (download, upload, hash) going long enough to be seen.
    size = 96 << 20
    async with session(team.replicas[0]) as on_a:
        waits = Waits(await submitted(on_a, "a long pan over a city [size=96m]"))
    await finish_generations(team)
    keys_before = await objects(team)
    async with anyio.create_task_group() as group:
        group.start_soon(waits.on, team.replicas[0])

        async def saving() -> bool:
            return "save" in await lease_holders(team, waits.task_id)

        await until(saving, within=60, every=0.02, what=f"a save lease on task {waits.task_id}")
        saver = await leader_of(team, waits.task_id)
        await anyio.to_thread.run_sync(team.kill, saver.index)
        killed_at = time.monotonic()
        group.cancel_scope.cancel()
    assert waits.answers == {}, "the save ended before the replica was killed: make it larger"
    survivor = team.replicas[1 - saver.index]
    async with anyio.create_task_group() as group:
        group.start_soon(waits.on, survivor)
        took = await taken_over(team, waits, survivor, killed_at)
    assert set(waits.errors) <= {saver.index}, waits.errors
    answer = waits.answers[survivor.index]
    assert answer["size_bytes"] == size
    assert answer["uri"].startswith(f"s3://{BUCKET}/{PREFIX}")
    assert took <= TAKEOVER_SECONDS, f"{survivor.mcp_url} took the save over after {took:.1f} s"
    saved = new_videos(keys_before, await objects(team))
    assert saved == {answer["uri"].removeprefix(f"s3://{BUCKET}/")}


# --- both restart: everything is still there ---------------------------------------------


async def test_after_both_replicas_restart_every_task_key_and_video_is_still_there(
    team: Team,
) -> None:
    key = f"team-e2e-{uuid.uuid4()}"
    async with session(team.replicas[0]) as on_a:
        keyed = await submitted(on_a, "a clock tower at noon", idempotency_key=key)
        plain = await submitted(on_a, "pigeons leaving the tower")
    await finish_generations(team)
    async with session(team.replicas[1]) as on_b:
        saved = await call(on_b, "check_video_task", task_id=keyed, download=True, wait_seconds=60)
    for replica in team.replicas:  # on the main thread: they die with the test run
        team.restart(replica.index)
    before = await upstream_calls(team)
    keys_before = await objects(team)
    for replica in team.replicas:
        async with session(replica) as client:
            listed = {t["task_id"]: t for t in (await call(client, "list_video_tasks"))["tasks"]}
            assert listed[keyed]["status"] == "succeeded"
            assert listed[keyed]["path"] is None  # an object: its uri names it
            assert listed[keyed]["uri"] == saved["uri"]
            assert plain in listed
            again = await call(
                client,
                "generate_video",
                **VIDEO,
                prompt="a clock tower at noon",
                wait_seconds=0,
                idempotency_key=key,
            )
            assert again["task_id"] == keyed
            checked = await call(client, "check_video_task", task_id=plain, wait_seconds=0)
            assert checked["status"] == "succeeded"
            reused = await call(client, "download_video", task_id=keyed)
            assert reused["reused"] is True
            assert reused["uri"] == saved["uri"]
            assert reused["sha256"] == saved["sha256"]
    after = await upstream_calls(team)
    assert after.get("submit", 0) == before.get("submit", 0)  # the key held: nothing resent
    assert new_videos(keys_before, await objects(team)) == set()
    no_local_videos(team)


# --- the one command, as the README shows it ---------------------------------------------


def test_the_team_command_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    """``.venv/bin/python scripts/team.py`` (the README's command): replicas that are
    ready, a client configuration, and nothing left once interrupted."""
    missing = postgres_missing() or weed_missing()
    if missing:
        service_unavailable(missing)
    out = tmp_path / "team.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*dies_with_us(), sys.executable, "scripts/team.py"],
            cwd=REPO,
            env=clean_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180  # two services and two replicas on busy cores
        while "Ctrl-C stops everything." not in out.read_text():
            assert proc.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)  # a real process starting: the only real wait
        printed = out.read_text()
        urls = re.findall(r"http://127\.0\.0\.1:\d+/mcp", printed)
        assert len(set(urls)) == 2, printed
        assert '"gravitex-team"' in printed
        for url in set(urls):
            assert httpx2.get(url.replace("/mcp", "/readyz"), timeout=10).status_code == 200
        [root] = set(re.findall(r"(/\S+/gravitex-team-[^/\s]+)/", printed))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert out.read_text().rstrip().endswith("stopped")
    assert not Path(root).exists()
    for url in set(urls):
        with pytest.raises(httpx2.TransportError):
            httpx2.get(url.replace("/mcp", "/healthz"), timeout=2)
