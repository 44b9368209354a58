"""One replica of a team's server, racing another for a user's budget or submit slots
(tests/store/test_replica_race.py): ``python -m tests.replica DSN USER``.

It opens a :class:`PostgresTaskStore` of its own on DSN (its own pool, as a replica in
another container), warms it up, prints ``ready``, then answers each line read from
stdin at once, with one line of JSON:

* ``reserve SECONDS BUDGET``: ``reserve_seconds([SECONDS], budget=BUDGET)``:
  ``{"reserved": [id]}`` or ``{"used": ..., "left": ...}``;
* ``take COUNT PER_MINUTE``: ``take_submits(COUNT, per_minute=PER_MINUTE)``:
  ``{"taken": true}`` or ``{"retry_after": ...}``.

The test writes the same line to both replicas together: the pipes are the barrier.
End of input ends it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import anyio.to_thread

from gravitex_mcp.store.postgres import PostgresTaskStore
from gravitex_mcp.store.records import OverBudget, RateLimited


async def _answer(store: PostgresTaskStore, line: str) -> dict[str, Any]:
    what, first, second = line.split()
    if what == "reserve":
        got = await store.reserve_seconds([float(first)], budget=float(second))
        if isinstance(got, OverBudget):
            return {"used": got.used, "left": got.left}
        return {"reserved": list(got.ids)}
    refused = await store.take_submits(int(first), per_minute=int(second))
    if isinstance(refused, RateLimited):
        return {"retry_after": refused.retry_after}
    return {"taken": True}


async def main(dsn: str, user: str) -> None:
    async with PostgresTaskStore.open(dsn) as opened:
        store = opened.for_user(user)
        # Warm: a connection in the pool, the queries' code paths run once (another
        # user's rows), so the race starts at the first line, not at start-up.
        warm = opened.for_user(f"{user}-warm-up")
        await warm.reserve_seconds([1.0], budget=None)
        await warm.take_submits(1, per_minute=1)
        print("ready", flush=True)  # noqa: T201
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            print(json.dumps(await _answer(store, line)), flush=True)  # noqa: T201


if __name__ == "__main__":
    dsn, user = sys.argv[1:3]
    anyio.run(main, dsn, user)
