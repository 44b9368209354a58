"""Tests of gravitex_mcp.video."""
