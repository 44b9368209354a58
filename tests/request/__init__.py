"""Tests of gravitex_mcp.request."""
