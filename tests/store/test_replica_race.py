"""Two replicas racing on one PostgreSQL database (issue 18): two OS processes, each
with a PostgresTaskStore of its own (tests/replica.py), told at the same moment to
take what only one of them fits: a user's budget, then their submit slots. Exactly one
gets it, every round; the other is refused, saying what is used and left (or when to
retry). The pipes to both are the barrier: each replica waits on its stdin, and the
test writes the same line to both together."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from gravitex_mcp.store.postgres import PostgresTaskStore
from gravitex_mcp.store.records import SUBMIT_WINDOW_SECONDS, Reservation
from tests.conftest import PostgresDatabase
from tests.proc import REPO, STOP_TIMEOUT

pytestmark = pytest.mark.slow  # a real PostgreSQL server, and two processes

#: Rounds of each race: a store that is not atomic loses one of them (see the report).
ROUNDS = 20
#: A replica's start-up (imports, pool, migrations) and each answer, at most.
START_TIMEOUT = 60.0
ANSWER_TIMEOUT = 10.0


@dataclass
class Replica:
    """One replica process and its lines."""

    process: Process
    lines: BufferedByteReceiveStream

    async def line(self) -> str:
        return (await self.lines.receive_until(b"\n", 1 << 16)).decode()

    async def send(self, line: str) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(f"{line}\n".encode())


@asynccontextmanager
async def _replica(dsn: str, user: str) -> AsyncIterator[Replica]:
    process = await anyio.open_process(
        [sys.executable, "-m", "tests.replica", dsn, user], cwd=REPO, stderr=None
    )
    try:
        assert process.stdout is not None
        replica = Replica(process, BufferedByteReceiveStream(process.stdout))
        with anyio.fail_after(START_TIMEOUT):
            assert await replica.line() == "ready"
        yield replica
    finally:
        with anyio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()  # end of input: it exits
            with anyio.move_on_after(STOP_TIMEOUT) as waited:
                await process.wait()
            if waited.cancelled_caught:
                process.kill()
                await process.wait()
            await process.aclose()


async def _race(replicas: list[Replica], line: str) -> list[dict[str, Any]]:
    """``line`` to every replica at once; their answers."""
    for replica in replicas:  # back to back: both are already waiting on their stdin
        await replica.send(line)
    with anyio.fail_after(ANSWER_TIMEOUT):
        return [json.loads(await replica.line()) for replica in replicas]


async def test_two_replicas_cannot_both_pass_a_budget_only_one_fits(
    postgres_db: PostgresDatabase,
) -> None:
    async with PostgresTaskStore.open(postgres_db.dsn) as opened, AsyncExitStack() as stack:
        alice = opened.for_user("alice")
        replicas = [
            await stack.enter_async_context(_replica(postgres_db.dsn, "alice")) for _ in range(2)
        ]
        for round_ in range(ROUNDS):
            cap = 10.0 * (round_ + 1)  # 6 s fit once: 4 are used before each round
            answers = await _race(replicas, f"reserve 6 {cap}")
            passed = [a for a in answers if "reserved" in a]
            refused = [a for a in answers if "used" in a]
            assert (len(passed), len(refused)) == (1, 1), (round_, answers)
            assert refused[0] == {"used": cap - 4.0, "left": 4.0}
            assert isinstance(await alice.reserve_seconds([4.0], budget=None), Reservation)
        assert (await alice.usage()).seconds_today == 10.0 * ROUNDS
        assert (await opened.for_user("bob").usage()).seconds_today == 0.0


async def test_two_replicas_share_one_submit_limit(postgres_db: PostgresDatabase) -> None:
    async with AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(_replica(postgres_db.dsn, "alice")) for _ in range(2)
        ]
        for round_ in range(ROUNDS):
            # round_ slots are taken already (all within the window): one more fits.
            answers = await _race(replicas, f"take 1 {round_ + 1}")
            taken = [a for a in answers if a.get("taken")]
            refused = [a["retry_after"] for a in answers if "retry_after" in a]
            assert (len(taken), len(refused)) == (1, 1), (round_, answers)
            assert 0 < refused[0] <= SUBMIT_WINDOW_SECONDS
