"""Tests of gravitex_mcp.catalog."""
