"""The PostgreSQL task store's schema: versioned steps, applied at start-up.

Every replica migrates when it opens the store. The steps run in one transaction
holding ``pg_advisory_xact_lock`` (:data:`MIGRATION_LOCK`), so replicas starting
at once apply each step exactly once: the first takes the lock and migrates, the
others wait for it, then find the version already reached. The applied versions
are rows of ``schema_migrations``.

To change the schema, append a step to :data:`MIGRATIONS`; never edit a released one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg.rows import tuple_row

from ..errors import JournalError

if TYPE_CHECKING:
    from psycopg import AsyncConnection

#: The advisory lock key the migrations hold (any bigint; "gravitex" in ASCII).
MIGRATION_LOCK = 0x6772_6176_6974_6578

#: The channel ``record_status`` notifies (payload: JSON task id, local id, status).
CHANGES_CHANNEL = "gravitex_task_changes"

_V1 = (
    """
    CREATE TABLE tasks (
        seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        local_id       text        NOT NULL UNIQUE,
        task_id        text        UNIQUE,
        model          text        NOT NULL,
        family         text        NOT NULL,
        arguments      text        NOT NULL,
        arguments_hash text,
        status         text        NOT NULL,
        raw_status     text,
        url            text,
        url_expires_at timestamptz,
        error_code     text,
        error_message  text,
        saved_path     text,
        size_bytes     bigint,
        sha256         text,
        saved_identity text,
        created_at     timestamptz NOT NULL,
        updated_at     timestamptz NOT NULL,
        checked_at     timestamptz,
        downloaded_at  timestamptz
    )
    """,
    "CREATE INDEX tasks_by_created ON tasks (created_at, seq)",
    "CREATE INDEX tasks_by_status ON tasks (status, created_at, seq)",
    "CREATE INDEX tasks_by_arguments ON tasks (arguments_hash, created_at)",
    # completion by prefix: LIKE 'prefix%' (escaped) uses it whatever the collation
    "CREATE INDEX tasks_by_task_id_prefix ON tasks (task_id text_pattern_ops)",
    """
    CREATE TABLE task_events (
        id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        local_id text        NOT NULL REFERENCES tasks (local_id) ON DELETE CASCADE,
        status   text        NOT NULL,
        at       timestamptz NOT NULL,
        detail   text
    )
    """,
    "CREATE INDEX task_events_by_task ON task_events (local_id, id)",
    # One submission per key: the claim is INSERT ... ON CONFLICT DO NOTHING RETURNING.
    """
    CREATE TABLE idempotency_keys (
        key            text        PRIMARY KEY,
        arguments_hash text        NOT NULL,
        local_id       text        NOT NULL REFERENCES tasks (local_id) ON DELETE CASCADE,
        created_at     timestamptz NOT NULL
    )
    """,
    # One holder per (task, kind) across replicas, until it releases or stops renewing.
    # kind 'submit' is a claimed key's submit (task_id is then the local id).
    """
    CREATE TABLE leases (
        task_id    text        NOT NULL,
        kind       text        NOT NULL,
        holder_id  text        NOT NULL,
        holder     text        NOT NULL,
        token      bigint      NOT NULL,
        taken_at   timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (task_id, kind)
    )
    """,
    "CREATE INDEX leases_by_holder ON leases (holder_id)",
    # Fencing tokens: each take of a lease gets a larger one.
    "CREATE SEQUENCE lease_tokens AS bigint",
)

# Many users on one server (issue 18): every task is one user's (rows from before are
# the local user's), a key is one user's (the same string from two users is two keys),
# and the seconds each user reserved against their daily budget (one row per job).
_V2 = (
    "ALTER TABLE tasks ADD COLUMN user_id text NOT NULL DEFAULT 'local'",
    "CREATE INDEX tasks_by_user ON tasks (user_id, created_at, seq)",
    "CREATE INDEX tasks_by_user_status ON tasks (user_id, status, created_at, seq)",
    "CREATE INDEX tasks_by_user_arguments ON tasks (user_id, arguments_hash, created_at)",
    "ALTER TABLE idempotency_keys ADD COLUMN user_id text NOT NULL DEFAULT 'local'",
    "ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey",
    "ALTER TABLE idempotency_keys ADD PRIMARY KEY (user_id, key)",
    """
    CREATE TABLE budget_reservations (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id    text             NOT NULL,
        day        date             NOT NULL,
        seconds    double precision NOT NULL,
        created_at timestamptz      NOT NULL
    )
    """,
    "CREATE INDEX budget_by_user_day ON budget_reservations (user_id, day)",
)

# The submit rate limit shared by every replica: one row per submit slot a user took,
# stamped with the database's now(); rows that left the window are deleted as it moves.
_V3 = (
    """
    CREATE TABLE submit_slots (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id text        NOT NULL,
        at      timestamptz NOT NULL
    )
    """,
    "CREATE INDEX submit_slots_by_user ON submit_slots (user_id, at)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
"""``MIGRATIONS[n]`` takes the schema from version n to n + 1."""


def schema_version() -> int:
    """The version this code migrates to."""
    return len(MIGRATIONS)


async def current_version(conn: AsyncConnection[Any]) -> int:
    """The highest applied version (0 for an empty database)."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    exists = await cur.fetchone()
    if exists is None or not exists[0]:
        return 0
    await cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def migrate(conn: AsyncConnection[Any], *, where: str) -> int:
    """Bring the database to :func:`schema_version` (safe from many replicas at once);
    the version it has now. ``where`` names the database in errors (no password)."""
    target = schema_version()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version = await current_version(conn)
        if version > target:
            raise JournalError(
                f"The task database {where} has schema version {version}, newer than this "
                f"gravitex-mcp understands ({target}): upgrade gravitex-mcp on every replica, "
                "or point GRAVITEX_DATABASE_URL at another database."
            )
        for step in range(version, target):
            for statement in MIGRATIONS[step]:
                await conn.execute(statement.encode())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (step + 1,))
    return target
