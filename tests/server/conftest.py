"""Fixtures of the server tests.

- ``backend``: each test that takes it runs twice, on ``local`` (SQLite and the output
  folder) and on ``team`` (the real ``postgres_db`` and ``s3_bucket``; ``slow``), as a
  :class:`tests.backends.Backend`.
"""

from __future__ import annotations

import pytest

from tests.backends import Backend


@pytest.fixture(params=["local", pytest.param("team", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "local":
        return Backend()
    database = request.getfixturevalue("postgres_db")
    return Backend.team(database, request.getfixturevalue("s3_bucket"))
