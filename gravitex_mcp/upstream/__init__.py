"""The Gravitex video API, seen from this server.

Holds ``client`` (submit, query and streamed downloads on one ``httpx2`` client),
``answers`` (task snapshots and the API's words read from its answers),
``failures`` (every failure mapped onto ``errors``), ``retry`` (backoff, Retry-After),
``waiting`` (polling a task to its end within a budget), ``downloads`` (a finished
task's video streamed from the right source, checked, retried), ``sora_body``
and ``mp4`` (the body's decoding and checks), ``choose`` (the real API or the
built-in simulator) and ``http`` (JSON from other remotes: an OAuth issuer's keys).

May import: ``simulator/`` (``choose`` only) and the shared modules. With
``simulator/``, the only layer that imports ``httpx2``. Not: ``request/``,
``store/``, ``video/``, ``service/``, ``server/``.
"""
