"""first_failure: the error to report out of (nested) exception groups (errors.py)."""

from __future__ import annotations

import asyncio

from gravitex_mcp.errors import StorageError, first_failure


def test_a_plain_exception_is_itself() -> None:
    error = ValueError("x")
    assert first_failure(error) is error


def test_the_first_leaf_depth_first() -> None:
    inner = KeyError("inner")
    group = BaseExceptionGroup("outer", [BaseExceptionGroup("mid", [inner]), ValueError("later")])
    assert first_failure(group) is inner


def test_skipped_kinds_give_way_to_the_real_failure() -> None:
    real = StorageError("disk full")
    group = BaseExceptionGroup("g", [asyncio.CancelledError(), real])
    assert first_failure(group, skip=(asyncio.CancelledError,)) is real
    assert isinstance(first_failure(group), asyncio.CancelledError)  # nothing skipped


def test_when_every_leaf_is_skipped_the_first_is_given() -> None:
    first = asyncio.CancelledError()
    group = BaseExceptionGroup("g", [first, asyncio.CancelledError()])
    assert first_failure(group, skip=(asyncio.CancelledError,)) is first
