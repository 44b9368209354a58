"""Tests of gravitex_mcp.service."""
