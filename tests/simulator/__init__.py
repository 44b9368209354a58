"""Tests of gravitex_mcp.simulator."""
