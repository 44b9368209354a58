"""Tests of gravitex_mcp.server: tools, prompts, transports, media links, the player."""
