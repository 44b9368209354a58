"""Time and peak memory to a saved video: the save pipeline beside a plain httpx2 loop.

Usage (from the repository root)::

    .venv/bin/python bench/bench_downloads.py [--sizes 16,256] [--rates 0,50,10] [--repeat 2]

* A small HTTP/1.1 server (this file, ``--serve``) runs in its own process on
  ``127.0.0.1``. It holds, per size, a valid mp4 (the simulator's ``iter_mp4``) and the
  Sora download endpoint's JSON body for it (``base64`` and ``data_url``, as documented),
  and sends either paced at a rate (MB/s, 10^6 bytes; 0 = unthrottled loopback) given
  in the URL path.
* Each download runs in a **fresh worker process** (``--worker``) and reports the wall
  seconds from the request to the saved file and its peak memory growth (``VmHWM``
  after the download, reset through ``/proc/self/clear_refs`` just before it, minus
  ``VmRSS`` just before it).
* Variants, for each family (``sora``: the download endpoint; ``url``: a signed-URL
  style file) and size and rate, interleaved ``--repeat`` times (each repeat starts with
  the other variant):

  - ``ours``: :func:`gravitex_mcp.upstream.downloads.download_video` (mp4 checks, sha256, temp
    file, fsync, no-clobber publish; Sora decoded from the JSON as it streams);
  - ``plain``: ``httpx2.AsyncClient.stream`` and ``f.write`` of every chunk into a file
    (for Sora: the JSON body as it comes, undecoded, so the same bytes cross the link).

Figures: the median of the repeats; "ours / plain" is the ratio of plain seconds to
ours (higher is better; 1.0 = the same time).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MIB = 1 << 20
TASK = "video_bench"


# --- the pacing server -------------------------------------------------------------------


def _bodies(size_mib: int) -> tuple[bytes, bytes]:
    from gravitex_mcp.simulator import iter_mp4

    video = b"".join(iter_mp4(size_mib * MIB, chunk_size=MIB))
    b64 = base64.b64encode(video).decode()
    head = {"success": True, "generation_id": TASK, "task_id": TASK, "format": "mp4"}
    sora = json.dumps(
        {**head, "size": len(video), "base64": b64, "data_url": "data:video/mp4;base64," + b64}
    ).encode()
    return video, sora


async def _send(writer: asyncio.StreamWriter, body: bytes, rate_mb_s: float) -> None:
    """Send ``body`` at ``rate_mb_s`` (10^6 bytes per second), or as fast as it goes."""
    piece = 64 << 10 if rate_mb_s else MIB
    start = time.perf_counter()
    with memoryview(body) as view:
        for at in range(0, len(view), piece):
            writer.write(view[at : at + piece])
            await writer.drain()
            if rate_mb_s:
                ahead = start + (at + piece) / (rate_mb_s * 1e6) - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)


def serve(port_file: Path, sizes: list[int]) -> None:
    bodies = {size: _bodies(size) for size in sizes}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                # /r/<rate>/s/<size>/file  or  /r/<rate>/s/<size>/v1/video/generations/download
                parts = path.split("/")
                rate, size = float(parts[2]), int(parts[4])
                video, sora = bodies[size]
                endpoint = "download" in path
                body = sora if endpoint else video
                kind = "application/json" if endpoint else "video/mp4"
                writer.write(
                    f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                )
                await _send(writer, body, rate)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port_file.write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
        await server.serve_forever()

    asyncio.run(main())


# --- one measured download (a worker process) --------------------------------------------


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


async def _ours(base: str, family: str, out: Path) -> None:
    from gravitex_mcp.domain import Delivery
    from gravitex_mcp.store.storage import OutputDir
    from gravitex_mcp.upstream.client import GravitexClient
    from gravitex_mcp.upstream.downloads import download_stored

    delivery = Delivery.DOWNLOAD_ENDPOINT if family == "sora" else Delivery.TASK_URL
    async with GravitexClient(api_key="sk-bench", base_url=base) as client:
        await download_stored(
            client,
            task_id=TASK,
            delivery=delivery,
            url=f"{base}/file",
            output=OutputDir(out),
            filename=None,
        )


async def _plain(base: str, family: str, out: Path) -> None:
    import httpx2

    url = f"{base}/v1/video/generations/download?id={TASK}" if family == "sora" else f"{base}/file"
    async with httpx2.AsyncClient(timeout=60) as client, client.stream("GET", url) as response:
        with (out / "plain.mp4").open("wb") as file:
            async for chunk in response.aiter_bytes():
                file.write(chunk)


def worker(variant: str, family: str, base: str) -> None:
    import anyio
    import httpx2  # noqa: F401  (imported before the baseline, as in a running server)

    import gravitex_mcp.upstream.downloads  # noqa: F401

    run = _ours if variant == "ours" else _plain
    with tempfile.TemporaryDirectory() as tmp:
        before = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        start = time.perf_counter()
        anyio.run(run, base, family, Path(tmp))
        seconds = time.perf_counter() - start
        growth = _status("VmHWM") - before
    print(json.dumps({"seconds": seconds, "peak_growth": growth}))


# --- the driver ----------------------------------------------------------------------------


def _measure(variant: str, family: str, base: str) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", variant, family, base]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="16,256", help="video sizes in MiB")
    parser.add_argument("--rates", default="0,50,10", help="link rates in MB/s; 0 = loopback")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.serve:
        serve(args.serve, sizes)
        return
    if args.worker:
        worker(*args.worker)
        return
    rates = [float(r) for r in args.rates.split(",")]
    with bench_server(args.sizes) as port:
        _run_all(port, sizes, rates, args.repeat)


@contextlib.contextmanager
def bench_server(sizes: str) -> Iterator[int]:
    """The pacing server (this file, ``--serve``) in its own process; yields its port."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        cmd = [sys.executable, __file__, "--serve", str(port_file), "--sizes", sizes]
        server = subprocess.Popen(cmd)
        try:
            while not port_file.exists() or not port_file.read_text():
                if server.poll() is not None:
                    raise SystemExit("the bench server did not start")
                time.sleep(0.1)
            yield int(port_file.read_text())
        finally:
            server.terminate()
            server.wait()


def _run_all(port: int, sizes: list[int], rates: list[float], repeat: int) -> None:
    print(
        "| family | video | link | ours s | plain s | ours / plain | ours peak MiB | "
        "plain peak MiB | ours peak / video |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for family in ("sora", "url"):
        for size in sizes:
            for rate in rates:
                base = f"http://127.0.0.1:{port}/r/{rate:g}/s/{size}"
                runs: dict[str, list[dict[str, float]]] = {"ours": [], "plain": []}
                for i in range(repeat):
                    order = ("ours", "plain") if i % 2 == 0 else ("plain", "ours")
                    for variant in order:
                        runs[variant].append(_measure(variant, family, base))
                _row(family, size, rate, runs)


def _row(family: str, size: int, rate: float, runs: dict[str, list[dict[str, float]]]) -> None:
    def median(variant: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[variant])

    ours, plain = median("ours", "seconds"), median("plain", "seconds")
    ratios = [p["seconds"] / o["seconds"] for o, p in zip(runs["ours"], runs["plain"], strict=True)]
    link = "loopback" if rate == 0 else f"{rate:g} MB/s"
    peak = median("ours", "peak_growth")
    print(
        f"| {family} | {size} MiB | {link} | {ours:.2f} | {plain:.2f} | "
        f"{statistics.median(ratios):.2f} | {peak / MIB:.1f} | "
        f"{median('plain', 'peak_growth') / MIB:.1f} | {peak / (size * MIB):.3f} |",
        flush=True,
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
