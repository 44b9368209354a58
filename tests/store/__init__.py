"""Tests of gravitex_mcp.store."""
