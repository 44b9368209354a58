"""What the tools do, without MCP: generate, follow, save, see, list, batch, join.

Holds ``videos`` (``VideoService``, the facade the server calls), ``generate``
(validate, journal, submit), ``follow`` (a task's status within a budget, and its
download), ``saves`` (one save per task, checked on disk and looked at),
``delivery`` (where a task's video comes from), ``listing`` (the tasks view),
``looks`` (a saved video's probe, notes, contact sheet and frames, saved beside it),
``joins`` (``join_videos``: clips gathered, joined, published), ``batch``
(``generate_videos``), ``idempotency`` (key claims and repeat notes),
``singleflight`` (one poll loop and one save per task in this process) and ``polling``
(that poll loop shared with other processes through the task store). It wires
``request/``, ``upstream/``, ``store/`` and ``video/`` together and returns result
models, never MCP types.

May import: ``request/``, ``upstream/``, ``store/``, ``video/``, ``catalog/`` and
the shared modules. Not: ``server/``, ``cli/``, ``mcp``, ``httpx2``, ``sqlite3``,
``fcntl``, ``av``; nor the store's machinery (lock files, temp-file names, SQL):
only the store's interfaces.
"""
