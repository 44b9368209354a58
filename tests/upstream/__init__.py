"""Tests of gravitex_mcp.upstream."""
