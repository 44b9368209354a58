"""A process that holds something in a task store until it is killed (the contract tests'
"a holder whose process died"): ``python -m tests.task_store_holder BACKEND WHERE WHAT ARG``.

BACKEND is ``sqlite`` (WHERE: the state folder) or ``postgres`` (WHERE: the DSN; the
lease time is ``GRAVITEX_TEST_LEASE_SECONDS``). WHAT is ``claim`` (ARG: an idempotency
key, claimed with arguments hash ``h1``) or ``lease`` (ARG: a task id, its SAVE lease).
It prints one line (``claimed <local id>``, ``held``, or ``busy``) and then waits forever:
the test kills it with SIGKILL, as a crash would.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from gravitex_mcp.store.seam import LeaseBusy, LeaseKind, TaskStore


@asynccontextmanager
async def _open(backend: str, where: str) -> AsyncIterator[TaskStore]:
    if backend == "sqlite":
        from gravitex_mcp.store.journal import Journal

        journal = Journal.open(Path(where))
        try:
            yield journal
        finally:
            journal.close()
    else:
        from gravitex_mcp.store.postgres import PostgresTaskStore

        seconds = float(os.environ.get("GRAVITEX_TEST_LEASE_SECONDS", "1"))
        async with PostgresTaskStore.open(where, lease_seconds=seconds) as store:
            yield store


async def main(backend: str, where: str, what: str, arg: str) -> None:
    async with _open(backend, where) as store:
        if what == "claim":
            claim = await store.claim_key(
                arg, arguments_hash="h1", model="m", family="veo", arguments={"prompt": arg}
            )
            print(f"claimed {claim.local_id}", flush=True)  # noqa: T201
        else:
            got = await store.try_lease(arg, LeaseKind.SAVE)
            print("busy" if isinstance(got, LeaseBusy) else "held", flush=True)  # noqa: T201
        await anyio.sleep_forever()


if __name__ == "__main__":
    backend, where, what, arg = sys.argv[1:5]
    anyio.run(main, backend, where, what, arg)
