"""Where to hash: inline per chunk (what storage.VideoFile.put does) or a worker thread per batch.

Usage (from the repository root)::

    .venv/bin/python bench/bench_hashing.py [--sizes 16,256] [--repeat 7]

Both variants stream a video file from the bench server of ``bench_downloads.py``
(unthrottled loopback) into :class:`gravitex_mcp.store.storage.VideoFile` and commit it
(write + sha256 + fsync + publish): ``inline`` calls ``put`` on every chunk in the event
loop; ``thread`` gathers 1 MiB batches and runs ``put`` on each in a worker thread
(``anyio.to_thread.run_sync``). Figure: median wall seconds of ``--repeat`` runs each,
interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.to_thread
import httpx2

from gravitex_mcp.store.storage import OutputDir

sys.path.insert(0, str(Path(__file__).parent))  # run as a script beside bench_downloads
from bench_downloads import bench_server

BATCH = 1 << 20


async def _save(url: str, mode: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = OutputDir(Path(tmp))
        start = time.perf_counter()
        async with (
            httpx2.AsyncClient() as client,
            client.stream("GET", url) as response,
            out.reserve("v", default_stem="v") as file,
        ):
            batch: list[bytes] = []
            held = 0
            async for chunk in response.aiter_bytes():
                if mode == "inline":
                    file.put(chunk)
                    continue
                batch.append(chunk)
                held += len(chunk)
                if held >= BATCH:
                    await anyio.to_thread.run_sync(file.put, b"".join(batch))
                    batch, held = [], 0
            if batch:
                await anyio.to_thread.run_sync(file.put, b"".join(batch))
            await file.commit()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="16,256")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with bench_server(args.sizes) as port:
        print("| video | inline s | thread per 1 MiB batch s |")
        print("| --- | --- | --- |")
        for size in args.sizes.split(","):
            url = f"http://127.0.0.1:{port}/r/0/s/{size}/file"
            runs: dict[str, list[float]] = {"inline": [], "thread": []}
            for i in range(args.repeat):
                for mode in ("inline", "thread") if i % 2 == 0 else ("thread", "inline"):
                    runs[mode].append(anyio.run(_save, url, mode))
            inline, thread = (statistics.median(runs[m]) for m in ("inline", "thread"))
            print(f"| {size} MiB | {inline:.3f} | {thread:.3f} |", flush=True)


if __name__ == "__main__":
    main()
