"""Tests of the shared modules (errors, images, logs, redact, settings)."""
