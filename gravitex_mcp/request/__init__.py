"""One generation request: from the agent's arguments to the exact upstream body.

Holds ``arguments`` (the unified argument models of ``generate_video``),
``validation`` (every problem of a call against the catalog, in one error),
``translate`` (unified arguments -> the family's JSON body), ``prepare`` (the one
entry: validate, resolve media, translate), ``problems`` (the pydantic-error text
every tool's refusals use) and ``inputs/`` (caller media).

May import: ``catalog/`` and the shared modules. Pure apart from reading the
caller's allowed local files. Not: ``upstream/``, ``store/``, ``video/``,
``service/``, ``server/``, ``httpx2``, ``mcp``.
"""
