"""Tests of gravitex_mcp.cli."""
