"""Video files, looked at and made with PyAV: blocking work, run in worker threads.

Holds ``source`` (what it reads: a path, or any open checked file with ``path``
and ``reader()``), ``probe`` (what a file holds), ``frames`` (frames at given
times, PNG), ``preview`` (the contact sheet), ``seeing`` (probe and
asked-versus-found notes, the sheet's and frames' bytes), ``join`` (clips into one
mp4 at a given path: stream copy or re-encode) and ``work`` (the worker threads,
one per core but one, that video work runs on). It returns bytes and writes only where it
is told: the service saves them. PyAV is imported inside the functions, so
starting the server never loads FFmpeg.

May import: ``catalog/`` and the shared modules. The only layer (with the
simulator's clip maker) that imports ``av``. Not: ``store/``, ``upstream/``,
``service/``, ``server/``, ``mcp``.
"""
