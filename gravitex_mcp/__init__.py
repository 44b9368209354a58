"""gravitex-mcp: an MCP server that makes videos through the Gravitex video API."""

__version__ = "0.1.0"
