"""Tiny mp4 clips made with PyAV for the joining tests (no numpy needed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest


def make_clip(
    path: Path,
    seconds: float,
    *,
    size: tuple[int, int] = (64, 48),
    fps: int = 10,
    audio: bool = True,
    codec: str = "libx264",
    rate: int = 8000,
    options: dict[str, str] | None = None,
    audio_seconds: float | None = None,
) -> Path:
    """Write a ``seconds``-long clip (a grey level that moves) with an optional tone."""
    av = pytest.importorskip("av", reason="PyAV (av) is a dependency: pip install -e .[dev]")
    from av.audio.frame import AudioFrame
    from av.video.frame import VideoFrame

    width, height = size
    with av.open(str(path), "w", format="mp4") as output:
        video = output.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            video.options = {"preset": "ultrafast", "tune": "zerolatency", **(options or {})}
        sound = output.add_stream("aac", rate=rate) if audio else None
        if sound is not None:
            sound.layout = "mono"
        frames = round(seconds * fps)
        for i in range(frames):
            frame = VideoFrame(width, height, "yuv420p")
            luma = bytes([(i * 7) % 256]) * (frame.planes[0].buffer_size)
            frame.planes[0].update(luma)
            for plane in frame.planes[1:]:
                plane.update(bytes([128]) * plane.buffer_size)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if sound is not None:
            samples = round((seconds if audio_seconds is None else audio_seconds) * rate)
            pts = 0
            while pts < samples:
                n = min(1024, samples - pts)
                chunk = AudioFrame(format="fltp", layout="mono", samples=n)
                chunk.planes[0].update(bytes(chunk.planes[0].buffer_size))
                chunk.sample_rate = rate
                chunk.pts = pts
                chunk.time_base = Fraction(1, rate)
                pts += n
                output.mux(sound.encode(chunk))
            output.mux(sound.encode(None))
    return path
