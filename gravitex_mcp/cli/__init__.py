"""The ``gravitex-mcp`` command: the top of the package.

Holds ``main`` (argparse: serve, demo, simulator, schemas; a bad flag is one line
on stderr, exit 2), ``demo`` (drives this server over stdio with the official MCP
client, on the simulator), ``demo_inputs`` (valid demo arguments picked from the
catalog) and ``schemas`` (writes and checks ``tool_schemas/*.json``).

May import: every layer below. ``mcp`` only in ``demo``, which is an MCP client.
Nothing in the package imports ``cli`` except ``__main__``.
"""
