"""The MCP surface: everything that speaks the protocol, and the composition root.

Holds ``app`` (``build_server``: the lifespan owning the client, the task store and
the service), ``tools`` (thin wrappers: call the service, render its outcome),
``rendering`` (each outcome once: text, structured, link, sheet), ``tool_index``
(the tools in one line each), ``model_table`` (the catalog and the statuses as
Markdown tables: list_models, the README), ``model_tool`` and ``schema_errors``
(tool input schemas, the one tool wrapper), ``failures`` (every failure told as
what happened and what to do), ``prompts``, ``prompt_args`` and ``storyboard``
(slash commands), ``completions``, ``http_app`` (SSE and streamable HTTP behind
one guard), ``callers`` and ``callers_jwt`` (who is calling over HTTP: the
bearer-token verifiers), ``stdio_guard``, ``media`` (capability links to saved
files and their route) and ``player/`` (the MCP Apps player).

May import: ``service/`` and every layer below it, and the shared modules. The only
layer that imports ``mcp`` (the MCP SDK); with ``simulator/``, the only one that
imports starlette or uvicorn. Not: ``cli/``.
"""
