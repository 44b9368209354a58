"""Build the MCP server: tools, resources, and a lifespan owning the client and journal."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.server.request_state import RequestStateSecurity

from .. import __version__
from ..catalog import models as catalog
from ..catalog.describe import describe
from ..errors import FIND_TASKS
from ..metrics import Metrics
from ..service.videos import VideoService
from ..settings import Settings, derive_key
from ..store.journal import Journal
from ..store.media_links import MediaLinks, link_key
from ..store.ready import task_counts
from ..store.seam import TaskStore, VideoStore
from ..store.storage import OutputDir
from ..upstream.choose import Transport, Upstream, open_upstream
from ..upstream.client import GravitexClient
from ..upstream.waiting import Clock
from .callers import CallerVerifier, current_caller
from .completions import register_completions
from .media import MEDIA_PORT_FILE, origin_of, serve_loopback
from .observe import ToolCalls
from .player import Player
from .prompts import register_prompts
from .tool_index import instructions
from .tools import build_tools
from .users import Spending, caller_of

#: Far longer than any submit can take (its time-outs are about a minute).
STALE_SUBMISSION = timedelta(minutes=10)
#: Threads of anyio's default pool, which runs the short blocking calls (a stat, a
#: flock attempt, a small file read or write, hashing an inline body). anyio allows 40:
#: a burst of 200 submits started 40 threads that each took the GIL from the event
#: loop in turn, and a quick call's p99 under that load doubled (bench/RESULTS.md).
#: The task store's reads and writes and the video work have limiters of their own.
DEFAULT_THREADS = 6


@dataclass(frozen=True, slots=True)
class AppState:
    """What the lifespan owns, reachable from every request."""

    settings: Settings
    service: VideoService
    journal: TaskStore
    client: GravitexClient
    #: capability links to saved files (None with GRAVITEX_MEDIA=off)
    media: MediaLinks | None = None
    #: the checks before a submission: confirmation and the rate limit (users.py)
    spending: Spending = field(default_factory=Spending)
    #: who calls, on HTTP with authentication (None: the local user)
    verifier: CallerVerifier | None = None


def service_for(ctx: Context) -> VideoService:
    """The service working for the caller of ``ctx``, paid with their key, holding their
    task and video stores and their budget: what every tool reaches the service through."""
    state = _state(ctx)
    caller, key = caller_of(ctx, state.verifier, state.settings)
    return state.service.acting_for(
        caller.user_id,
        key,
        storage_name=caller.storage_name,
        budget=caller.budget_seconds_per_day,
    )


def links_for(ctx: Context) -> MediaLinks | None:
    """The media links of the caller of ``ctx``: only their own files get one."""
    state = _state(ctx)
    if state.media is None:
        return None
    return state.media.for_user(current_caller(state.verifier).storage_name)


def tasks_for(state: AppState) -> TaskStore:
    """The task store of the caller of the request being handled."""
    return state.journal.for_user(current_caller(state.verifier).user_id)


def _task_database(
    settings: Settings, metrics: Metrics | None
) -> AbstractAsyncContextManager[TaskStore]:
    """The PostgreSQL task store of ``GRAVITEX_DATABASE_URL`` (imported only then: psycopg
    comes with the ``team`` extra)."""
    from ..store.postgres import PostgresTaskStore

    assert settings.database_url is not None
    low, high = settings.database_pool
    return PostgresTaskStore.open(
        settings.database_url, min_size=low, max_size=high, metrics=metrics
    )


def _state(ctx: Context) -> AppState:
    state: object = ctx.request_context.lifespan_context
    if not isinstance(state, AppState):  # pragma: no cover - a wiring bug, not user input
        raise TypeError("the server was started without its lifespan state")
    return state


def build_server(
    settings: Settings,
    *,
    transport: Transport | None = None,
    clock: Clock | None = None,
    upstream: Upstream | None = None,
    media_loopback: bool = True,
    media_origins: Sequence[str] = (),
    output: VideoStore | None = None,
    metrics: Metrics | None = None,
    verifier: CallerVerifier | None = None,
    auth: AuthSettings | None = None,
) -> MCPServer[AppState]:
    """The MCP server for ``settings``.

    ``transport`` (tests) replaces the network under the upstream client;
    ``upstream`` replaces the whole choice of upstream (real API or simulator).
    ``media_loopback`` runs the loopback media server for the media links (stdio);
    the HTTP transports pass False, serve ``/media/`` on their own port and name
    its possible origins in ``media_origins`` (the player's CSP). ``output`` (tests)
    replaces the output folder's writer. ``metrics`` (HTTP) records tool calls,
    upstream requests, saves, lease takeovers, store errors and the tasks by status.
    ``verifier`` and ``auth`` (HTTP) say who calls (callers.py).
    """
    spending = Spending.from_settings(settings)
    player = Player(media_origins=media_origins if settings.media else ())

    # The states of the open lifespans: completion handlers get no request context.
    open_states: list[AppState] = []

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        # Bounded before anything runs in a thread (see DEFAULT_THREADS).
        anyio.to_thread.current_default_thread_limiter().total_tokens = DEFAULT_THREADS
        videos = output or _video_store(settings)
        # Held from start-up (a folder swapped for a symlink later is refused), and rid
        # of what writers of a server killed mid-download left (else kept forever).
        await anyio.to_thread.run_sync(videos.recover)
        exits = AsyncExitStack()
        journal: TaskStore
        if settings.database_url:
            # The team's shared database: pool, migrations, lease heartbeat, listener.
            journal = await exits.enter_async_context(_task_database(settings, metrics))
            if metrics is not None:
                from ..store.pg_ready import task_counts as database_task_counts

                url = settings.database_url
                metrics.task_counts = functools.partial(database_task_counts, url)
        else:
            # Off the event loop: opening may wait (up to its lock time-out) for another
            # process.
            opening = functools.partial(Journal.open, settings.state_dir, clock=clock)
            local = await anyio.to_thread.run_sync(opening)
            exits.callback(local.close)
            journal = local
            if metrics is not None:
                metrics.task_counts = functools.partial(task_counts, settings.state_dir)
        try:
            media = await exits.enter_async_context(_media_links(settings, player, media_loopback))
            # A process that died mid-submit left 'submitting' rows: say a task may exist.
            await journal.expire_stale_submissions(older_than=STALE_SUBMISSION)
            retry_sleep = clock.sleep if clock is not None else anyio.sleep
            async with open_upstream(
                settings, transport=transport, upstream=upstream, sleep=retry_sleep, metrics=metrics
            ) as client:
                service = VideoService(
                    settings=settings,
                    client=client,
                    journal=journal,
                    output=videos,
                    clock=clock,
                    metrics=metrics,
                )
                # Saves run in the background of the server, past the call that began them.
                async with service.running():
                    state = AppState(
                        settings=settings,
                        service=service,
                        journal=journal,
                        client=client,
                        media=media,
                        spending=spending,
                        verifier=verifier,
                    )
                    open_states.append(state)
                    try:
                        yield state
                    finally:
                        open_states.remove(state)
        finally:
            try:
                await exits.aclose()
            finally:
                if output is None:  # ours: its connections end here, not at exit
                    _close_video_store(videos)

    tools = build_tools(service_for, links_for)
    Player.bind(tools)
    server: MCPServer[AppState] = MCPServer(
        "gravitex-mcp",
        title="Gravitex video generation",
        # Generated from the tools: every tool is named, none can be left out.
        instructions=instructions(tools),
        version=__version__,
        tools=tools,
        extensions=[player.apps],
        token_verifier=verifier if auth is not None else None,
        auth=auth,
        lifespan=lifespan,
        middleware=[ToolCalls(metrics, (t.name for t in tools))],
        log_level=settings.log_level,  # type: ignore[arg-type]
        # Without a server secret the SDK keys request state per process (one replica).
        request_state_security=RequestStateSecurity(
            keys=[derive_key(settings.server_secret, "request-state/v1")]
        )
        if settings.server_secret
        else None,
    )

    @server.resource(
        "gravitex://models",
        name="models",
        title="Video model catalog",
        description="Every model with its family, modes and the valid values of its arguments.",
        mime_type="application/json",
    )
    def models_resource() -> str:
        return json.dumps([describe(s) for s in catalog.models()], indent=2)

    @server.resource(
        "gravitex://tasks/{task_id}",
        name="task",
        title="One video task",
        description="A task from the local journal: arguments, status history, saved file.",
        mime_type="application/json",
    )
    async def task_resource(task_id: str, ctx: Context) -> str:
        # The caller's own tasks only: another user's id reads as one never recorded.
        record = await tasks_for(_state(ctx)).get(task_id)
        if record is None:
            raise ResourceNotFoundError(f"No task {task_id!r} in the journal; {FIND_TASKS}.")
        payload: dict[str, Any] = record.public_dict()
        return json.dumps(payload, indent=2)

    register_prompts(server)
    # The caller's own task ids only (the request's token is known here too).
    register_completions(server, lambda: tasks_for(open_states[-1]) if open_states else None)
    return server


def _video_store(settings: Settings) -> VideoStore:
    """The output folder, or the object storage GRAVITEX_STORAGE_URL names."""
    if settings.storage is None:
        return OutputDir(settings.output_dir)
    # The team extra (obstore): loaded only when configured.
    from ..store.objects import ObjectVideoStore

    return ObjectVideoStore(settings.storage)


def _close_video_store(videos: VideoStore) -> None:
    """Drop an object store's client at shutdown: obstore's runtime threads must not be
    busy when the interpreter exits."""
    close = getattr(videos, "close", None)
    if callable(close):
        close()


@asynccontextmanager
async def _media_links(
    settings: Settings, player: Player, loopback: bool
) -> AsyncIterator[MediaLinks | None]:
    """The media links of this server: None when off; over stdio, with the loopback
    media server running (and its origin admitted by the player) until exit."""
    if not settings.media:
        yield None
        return
    key = await anyio.to_thread.run_sync(link_key, settings.state_dir, settings.server_secret)
    if not loopback:
        yield MediaLinks(key=key, output_dir=settings.output_dir, public_url=settings.public_url)
        return
    links = MediaLinks(key=key, output_dir=settings.output_dir)
    async with serve_loopback(links, settings.state_dir / MEDIA_PORT_FILE) as base:
        links.base_url = base
        player.admit_media_origins([origin_of(base)])
        yield links
