"""Preview benchmark: our probe + contact sheet (PyAV) beside the ``ffmpeg`` command line.

Usage (from the repository root)::

    .venv/bin/python bench/bench_preview.py [--repeat 5] [--seconds 8] [--size 1920x1080]

What runs:

* once, a test clip: FFmpeg's ``testsrc2`` pattern, 1920x1080, 24 fps, 8 s, H.264
  (libx264 ``veryfast``, yuv420p), written with PyAV;
* two variants, each in a **fresh process** (interpreter start included, as the
  ffmpeg command pays its own start too), interleaved ``--repeat`` times:

  - ``ours``: ``python -c`` running :func:`gravitex_mcp.video.probe.probe_video` and
    :func:`gravitex_mcp.video.preview.contact_sheet` (9 tiles, 3x3, <= 1024 px, mjpeg
    within 150 KB) and writing the JPEG;
  - ``ffmpeg``: the ``imageio-ffmpeg`` wheel's ffmpeg binary doing the same job in one
    command: read the streams (its banner is the probe), pick 9 frames spread over
    the clip (``fps=9/8``), ``scale`` each to 341x192 and ``tile=3x3``, JPEG ``-q:v 3``.

* **Time** = wall seconds of the process, median of ``--repeat`` (and the fastest);
  **CPU** = its user + system seconds, median (steadier than wall time on a shared
  machine); **peak memory** =
  the process's ``ru_maxrss`` (from ``os.wait4``). ``ours-import`` is the cost of a
  ``python -c "import av, gravitex_mcp.video.preview"`` process alone, so the difference is
  what the work itself takes; ``floor`` is ``true``, showing the peak RSS every child
  inherits from this driver (Linux keeps it across fork and execve).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

OURS = """
import sys
from pathlib import Path
from gravitex_mcp.video.probe import probe_video
from gravitex_mcp.video.preview import contact_sheet
video, out = Path(sys.argv[1]), Path(sys.argv[2])
probe = probe_video(video)
sheet = contact_sheet(video, probe.duration_seconds)
out.write_bytes(sheet.jpeg)
print(probe.duration_seconds, probe.width, probe.height, sheet.width, sheet.height, len(sheet.jpeg))
"""
IMPORT_ONLY = "import av, gravitex_mcp.video.preview, gravitex_mcp.video.probe"


def make_clip(path: Path, seconds: int, width: int, height: int, fps: int = 24) -> None:
    import av

    graph = av.filter.Graph()
    source = graph.add("testsrc2", f"size={width}x{height}:rate={fps}:duration={seconds}")
    pixels = graph.add("format", "yuv420p")
    sink = graph.add("buffersink")
    source.link_to(pixels)
    pixels.link_to(sink)
    graph.configure()
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        index = 0
        while True:
            try:
                frame = graph.vpull()
            except (av.error.EOFError, av.error.BlockingIOError):
                break
            frame.pts, frame.time_base = index, Fraction(1, fps)
            index += 1
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds (user + system), peak RSS in KiB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {' '.join(cmd)}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def main() -> None:
    if sys.argv[1:2] == ["--make-clip"]:
        target, *shape = sys.argv[2:6]
        make_clip(Path(target), *(int(v) for v in shape))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--size", default="1920x1080")
    args = parser.parse_args()
    frame_w, frame_h = (int(v) for v in args.size.split("x"))

    import imageio_ffmpeg  # type: ignore[import-untyped]

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory(prefix="gravitex-bench-preview-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        # Made in its own process, so that this one stays small (see the floor row).
        maker = [sys.executable, __file__, "--make-clip", str(clip)]
        subprocess.run([*maker, str(args.seconds), str(frame_w), str(frame_h)], check=True)
        tile_w = 1024 // 3 // 2 * 2
        tile_h = round(tile_w * frame_h / frame_w / 2) * 2
        variants = {
            "ours": [sys.executable, "-c", OURS, str(clip), str(Path(tmp) / "ours.jpg")],
            "ffmpeg": [
                ffmpeg,
                "-hide_banner",
                "-y",
                "-i",
                str(clip),
                "-vf",
                f"fps={9}/{args.seconds},scale={tile_w}:{tile_h}:flags=area,tile=3x3",
                "-frames:v",
                "1",
                "-q:v",
                "3",
                str(Path(tmp) / "ffmpeg.jpg"),
            ],
            "ours-import": [sys.executable, "-c", IMPORT_ONLY],
            # Linux carries the parent's peak RSS into a child (it survives fork and
            # execve): this row shows that floor, under which no figure can go.
            "floor": ["true"],
        }
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, cmd in variants.items():
                results[name].append(measure(cmd))
        print(f"clip: {args.size}, {args.seconds} s, 24 fps, h264, {clip.stat().st_size} bytes")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}")  # fmt: skip
        for out in ("ours.jpg", "ffmpeg.jpg"):
            print(f"{out}: {(Path(tmp) / out).stat().st_size} bytes")
        print(f"{'variant':<12} {'median s':>9} {'min s':>7} {'CPU s':>7} {'peak RSS MiB':>13}")
        for name, runs in results.items():
            times = [t for t, _, _ in runs]
            cpu = statistics.median(c for _, c, _ in runs)
            peak = max(m for _, _, m in runs) / 1024
            print(
                f"{name:<12} {statistics.median(times):>9.3f} {min(times):>7.3f} "
                f"{cpu:>7.3f} {peak:>13.1f}"
            )


if __name__ == "__main__":
    main()
