"""Video files, looked at and made with PyAV: blocking work, run in worker threads.

Holds ``probe`` (what a file holds), ``frames`` (frames at given times, PNG),
``preview`` (the contact sheet), ``seeing`` (what the service learns from a saved
video: probe, sheet, asked-versus-found notes; ``extract_frames``), ``join``
(clips into one mp4: stream copy or re-encode) and ``work`` (the worker threads,
one per core, that video work runs on). PyAV is imported inside the functions, so
starting the server never loads FFmpeg.

May import: ``catalog/`` and the shared modules. The only layer (with the
simulator's clip maker) that imports ``av``. Not: ``store/``, ``upstream/``,
``service/``, ``server/``, ``mcp``.
"""
