"""GRAVITEX_DATABASE_URL: the setting, and the composition root keeping the tasks in
PostgreSQL (the tests' real one) instead of the state folder's SQLite journal."""

from __future__ import annotations

from pathlib import Path

import anyio
import psycopg
import pytest

from gravitex_mcp.domain import TaskStatus
from gravitex_mcp.errors import ConfigurationError
from gravitex_mcp.settings import DEFAULT_POOL_MAX, DEFAULT_POOL_MIN, load_settings
from gravitex_mcp.store.sqlite_open import DB_FILENAME
from tests.conftest import PostgresDatabase
from tests.server_harness import connected, make_harness, structured, text_of

pytestmark = pytest.mark.slow  # a real PostgreSQL server, and processes killed


def test_the_database_url_is_read_once_and_checked(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert load_settings(env).database_url is None
    url = "postgresql://gravitex:pw@db.internal:5432/tasks"
    settings = load_settings({**env, "GRAVITEX_DATABASE_URL": url})
    assert settings.database_url == url
    assert settings.database_pool == (DEFAULT_POOL_MIN, DEFAULT_POOL_MAX)
    assert "pw" not in repr(settings)
    with pytest.raises(ConfigurationError, match="PostgreSQL URL") as caught:
        load_settings({**env, "GRAVITEX_DATABASE_URL": "mysql://u:secretpw@h/db"})
    assert "secretpw" not in str(caught.value)
    sized = {"GRAVITEX_DATABASE_POOL_MIN": "2", "GRAVITEX_DATABASE_POOL_MAX": "4"}
    assert load_settings({**env, **sized}).database_pool == (2, 4)
    with pytest.raises(ConfigurationError, match="must not exceed"):
        load_settings({**env, "GRAVITEX_DATABASE_POOL_MIN": "5", "GRAVITEX_DATABASE_POOL_MAX": "4"})
    with pytest.raises(ConfigurationError, match="GRAVITEX_DATABASE_POOL_MAX"):
        load_settings({**env, "GRAVITEX_DATABASE_POOL_MAX": "many"})


async def test_the_server_keeps_its_tasks_in_the_database(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    h = make_harness(tmp_path, database_url=postgres_db.dsn, database_pool=(1, 3))
    async with connected(h) as client:
        made = await client.call_tool(
            "generate_video", {"model": "sora-2", "prompt": "a cat", "wait_seconds": 0}
        )
        assert not made.is_error, made
        task_id = structured(made)["task_id"]
        listed = structured(await client.call_tool("list_video_tasks", {}))
    assert [t["task_id"] for t in listed["tasks"]] == [task_id]
    with psycopg.connect(postgres_db.dsn) as conn:
        rows = conn.execute("SELECT task_id, model FROM tasks").fetchall()
    assert rows == [(task_id, "sora-2")]
    assert not (h.settings.state_dir / DB_FILENAME).exists()


async def test_readiness_and_task_counts_read_the_database(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    from gravitex_mcp.cli.main import _task_store_check
    from gravitex_mcp.store.pg_ready import database_readable, task_counts
    from gravitex_mcp.store.postgres import PostgresTaskStore

    database_readable(postgres_db.dsn)  # before any replica migrated it
    async with PostgresTaskStore.open(postgres_db.dsn) as store:
        local_id = await store.begin_submission(model="m", family="veo", arguments={})
        await store.complete_submission(local_id, task_id="t-1", status=TaskStatus.QUEUED)
        await store.begin_submission(model="m", family="veo", arguments={})
    database_readable(postgres_db.dsn)
    assert task_counts(postgres_db.dsn) == {"queued": 1, "submitting": 1}
    settings = load_settings({"HOME": str(tmp_path), "GRAVITEX_DATABASE_URL": postgres_db.dsn})
    _task_store_check(settings)()
    postgres_db.server.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            _task_store_check(settings)()
    finally:
        postgres_db.server.start()


async def test_replicas_share_keys_and_saves_through_the_database(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """Two servers on one database (each its own state folder): a key used on one is
    replayed on the other, and the other saves the video once it is done."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = make_harness(tmp_path / "a", database_url=postgres_db.dsn)
    second = make_harness(
        tmp_path / "b", sim=first.sim, clock=first.clock, database_url=postgres_db.dsn
    )
    call = {"model": "sora-2", "prompt": "a cat on a piano", "wait_seconds": 0}
    call["idempotency_key"] = "team-1"
    async with connected(first) as one, connected(second) as other:
        made = structured(await one.call_tool("generate_video", call))
        again = structured(await other.call_tool("generate_video", call))
        assert again["task_id"] == made["task_id"]
        assert again["replayed"] is True
        first.clock.now += 60  # the task finishes meanwhile
        saved = structured(await other.call_tool("generate_video", {**call, "download": True}))
    assert first.sim.calls["submit"] == 1
    assert saved["status"] == "succeeded"
    assert Path(saved["path"]).is_file()


async def test_a_tool_call_while_the_database_is_down_says_call_again(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    h = make_harness(tmp_path, database_url=postgres_db.dsn)
    async with connected(h) as client:
        made = structured(
            await client.call_tool(
                "generate_video", {"model": "sora-2", "prompt": "a dog", "wait_seconds": 0}
            )
        )
        postgres_db.server.stop()
        try:
            down = await client.call_tool("list_video_tasks", {})
        finally:
            postgres_db.server.start()
        assert down.is_error
        assert "nothing was lost; call again in a few seconds" in text_of(down)
        for _ in range(150):  # back within 30 s
            back = await client.call_tool("list_video_tasks", {})
            if not back.is_error:
                break
            await anyio.sleep(0.2)
    assert [t["task_id"] for t in structured(back)["tasks"]] == [made["task_id"]]


async def test_streamable_http_counts_the_databases_tasks(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """The HTTP server (stateless, as replicas behind a balancer run) on the database:
    the tasks gauge is every replica's, read from it."""
    from gravitex_mcp.metrics import Metrics
    from tests.server.test_team_ops import TOKEN, call_tool, http_app, running, sample, settings_in

    settings = settings_in(tmp_path, database_url=postgres_db.dsn)
    app = http_app(settings, token=TOKEN, metrics=Metrics(), stateless=True)
    async with running(app) as client:
        made = await call_tool(
            client, "generate_video", {"model": "sora-2", "prompt": "a cat", "wait_seconds": 0}
        )
        assert made["result"].get("isError") is not True, made
        scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert sample(scraped.text, "gravitex_tasks", status="submitted") == 1
    assert not (settings.state_dir / DB_FILENAME).exists()
