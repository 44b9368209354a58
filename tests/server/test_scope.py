"""Issue 18, the store part: many users on one server, each seeing only their own.

Two callers drive one server through the in-memory client: the caller is injected as
the HTTP transports inject it (the SDK's auth context variable, read by
``current_caller``), so every route below runs as it does behind a tokens file.

The routes run on both backends (the ``backend`` fixture, tests/backends.py): ``local``
(the SQLite journal and the output folder) and ``team`` (PostgreSQL and S3, the tests'
real ones).
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, PromptReference, ResourceTemplateReference
from pydantic import SecretStr

from gravitex_mcp.server.app import build_server
from gravitex_mcp.server.callers import Caller
from gravitex_mcp.simulator import Simulator, SimulatorConfig, simulator_transport
from gravitex_mcp.store.journal import Journal
from gravitex_mcp.store.media_links import MediaLinks, link_key
from gravitex_mcp.store.objects import ObjectVideoStore
from gravitex_mcp.store.records import OverBudget, Reservation
from tests.backends import Backend
from tests.server.test_users import PUBLIC, Recording
from tests.server_harness import API_KEY, FakeClock, make_settings, text_of

PROMPT = "a secret lighthouse of alice at dawn"
GENERATE = {
    "model": "veo-3.1-fast-generate-preview",
    "prompt": PROMPT,
    "duration": 8,
    "wait_seconds": 30,
    "download": True,
    "preview": False,
}
#: One job of generate_videos (the arguments of one video).
JOB = {k: GENERATE[k] for k in ("model", "prompt", "duration")}


class Users:
    """A verifier stand-in: the AccessToken's subject is the user id."""

    def __init__(self, callers: dict[str, Caller]) -> None:
        self.callers = callers

    async def verify_token(self, token: str) -> AccessToken | None:  # pragma: no cover
        return None

    def caller_for(self, access: AccessToken) -> Caller | None:
        return self.callers.get(access.subject or "")


def _server(
    tmp_path: Path,
    backend: Backend,
    *,
    callers: dict[str, Caller] | None = None,
    **settings: Any,
) -> Any:
    clock = FakeClock()
    sim = Simulator(
        SimulatorConfig(api_keys=frozenset({API_KEY}), queued_seconds=0, processing_seconds=0),
        clock=clock.monotonic,
    )
    recording = Recording(simulator_transport(sim))
    users = Users(callers or {"alice": Caller("alice"), "bob": Caller("bob")})
    config = make_settings(tmp_path, **{"media": False, **backend.settings, **settings})
    # Links (GRAVITEX_MEDIA on) on the public URL, as the HTTP transports mint them.
    server = build_server(
        config, transport=recording, clock=clock, verifier=users, media_loopback=False
    )
    return server, recording


class AsUser:
    """A client whose every request is ``user``'s, as the bearer middleware marks an
    HTTP request: the SDK's auth context variable, set around each call (the in-memory
    server handles a request in the caller's context)."""

    def __init__(self, client: Client, user: str) -> None:
        self._client = client
        self._user = AuthenticatedUser(
            AccessToken(token="sha256:test", client_id=user, subject=user, scopes=[])
        )

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            reset = auth_context_var.set(self._user)
            try:
                return await method(*args, **kwargs)
            finally:
                auth_context_var.reset(reset)

        return call


@asynccontextmanager
async def as_user(server: Any, user: str) -> AsyncIterator[Any]:
    """A connected client of ``server`` calling as ``user``."""
    async with Client(server, raise_exceptions=False) as client:
        yield AsUser(client, user)


def _sent(recording: Recording) -> int:
    return len(recording.seen)


def _shape(result: CallToolResult, task_id: str) -> tuple[str, bool, list[str] | None]:
    text = text_of(result).replace(task_id, "<ID>")
    keys = sorted(result.structured_content) if result.structured_content else None
    return text, bool(result.is_error), keys


def _missing_like(task_id: str) -> str:
    """An id of the same shape as ``task_id`` that never existed."""
    return re.sub(r"[0-9a-f]", "0", task_id[:-4]) + "beef"


async def _alice_makes_a_video(alice: Any) -> dict[str, Any]:
    made = await alice.call_tool("generate_video", {**GENERATE, "idempotency_key": "take-1"})
    assert not made.is_error, text_of(made)
    assert made.structured_content is not None
    return dict(made.structured_content)


# --- 1. foreign ids read as missing ones ----------------------------------------------


async def test_another_users_task_id_is_answered_as_one_that_never_existed(
    tmp_path: Path, backend: Backend
) -> None:
    server, recording = _server(tmp_path, backend)
    async with as_user(server, "alice") as alice, as_user(server, "bob") as bob:
        made = await _alice_makes_a_video(alice)
        alice_id = made["task_id"]
        missing = _missing_like(alice_id)
        assert len(missing) == len(alice_id)
        assert missing != alice_id
        calls: list[tuple[str, dict[str, Any]]] = [
            ("check_video_task", {"wait_seconds": 0}),
            ("check_video_task", {"wait_seconds": 30, "download": True}),
            ("download_video", {}),
            ("download_video", {"filename": "mine"}),
            ("extract_frames", {"at": ["last"]}),
        ]
        for name, extra in calls:
            before = _sent(recording)
            foreign = await bob.call_tool(name, {"task_id": alice_id, **extra})
            never = await bob.call_tool(name, {"task_id": missing, **extra})
            assert _sent(recording) == before, f"{name} asked upstream about an id not bob's"
            assert foreign.is_error, (name, text_of(foreign))
            assert _shape(foreign, alice_id) == _shape(never, missing), name
            assert PROMPT not in text_of(foreign)
        before = _sent(recording)
        foreign = await bob.call_tool("join_videos", {"task_ids": [alice_id, alice_id]})
        never = await bob.call_tool("join_videos", {"task_ids": [missing, missing]})
        assert _sent(recording) == before
        assert foreign.is_error
        assert _shape(foreign, alice_id) == _shape(never, missing)
        # Alice still has hers, untouched by bob's attempts.
        mine = await alice.call_tool("check_video_task", {"task_id": alice_id, "wait_seconds": 0})
        assert not mine.is_error, text_of(mine)


# --- 2./4. the cross-user sweep ----------------------------------------------------


async def test_bob_finds_nothing_of_alices_anywhere(tmp_path: Path, backend: Backend) -> None:
    server, recording = _server(tmp_path, backend, media=True, public_url=PUBLIC)
    async with as_user(server, "alice") as alice, as_user(server, "bob") as bob:
        made = await _alice_makes_a_video(alice)
        alice_id = made["task_id"]
        saved = made["path"] or made["uri"]  # an object has no path (contract)
        frames = await alice.call_tool("extract_frames", {"task_id": alice_id, "at": ["last"]})
        assert not frames.is_error, text_of(frames)
        frame_path = frames.structured_content["frames"][0]["path"]

        # Files: alice's under her own folder; the local user's layout is unchanged.
        folder = backend.folder_of(tmp_path, "alice")
        assert saved.startswith(folder), saved
        assert frame_path.startswith(folder), frame_path

        # Media links: alice's video has one, which no other user's view mints.
        link = made["media_url"]
        assert link, made
        await _only_alices_link(backend, tmp_path, saved, link)

        # Listing, usage.
        listed = await bob.call_tool("list_video_tasks", {})
        assert listed.structured_content == {"tasks": []}, text_of(listed)
        theirs = await alice.call_tool("list_video_tasks", {})
        assert [t["task_id"] for t in theirs.structured_content["tasks"]] == [alice_id]
        # The listing names her video as the result did (an object: no path, its uri).
        mine = theirs.structured_content["tasks"][0]
        assert (mine["path"], mine["uri"]) == (made["path"], made["uri"])
        usage = await bob.call_tool("get_usage", {})
        assert usage.structured_content == {
            "user": "bob",
            "seconds_today": 0.0,
            "budget_seconds_per_day": None,
            "tasks_today": 0,
        }

        # Resource: alice's id reads as a missing one.
        missing = _missing_like(alice_id)
        with pytest.raises(MCPError) as foreign:
            await bob.read_resource(f"gravitex://tasks/{alice_id}")
        with pytest.raises(MCPError) as never:
            await bob.read_resource(f"gravitex://tasks/{missing}")
        assert (foreign.value.error.code, str(foreign.value).replace(alice_id, "<ID>")) == (
            never.value.error.code,
            str(never.value).replace(missing, "<ID>"),
        )
        assert PROMPT not in str(foreign.value)
        assert PROMPT in str(await alice.read_resource(f"gravitex://tasks/{alice_id}"))

        # Completion: bob is offered none of alice's ids; alice is offered hers.
        ref = ResourceTemplateReference(type="ref/resource", uri="gravitex://tasks/{task_id}")
        offered = await bob.complete(ref, {"name": "task_id", "value": alice_id[:3]})
        assert offered.completion.values == []
        assert offered.completion.total == 0
        hers = await alice.complete(ref, {"name": "task_id", "value": alice_id[:3]})
        assert hers.completion.values == [alice_id]
        prompt_ref = PromptReference(type="ref/prompt", name="continue_video")
        offered = await bob.complete(prompt_ref, {"name": "task_id", "value": alice_id[:3]})
        assert (offered.completion.values, offered.completion.total) == ([], 0)
        hers = await alice.complete(prompt_ref, {"name": "task_id", "value": alice_id[:3]})
        assert hers.completion.values == [alice_id]

        # Prompts: rendering one with alice's id shows nothing of hers.
        prompt = await bob.get_prompt("continue_video", {"task_id": alice_id})
        assert PROMPT not in str(prompt)

        # Idempotency: the same key string from bob is bob's own key: a new task.
        posts = recording.submits
        again = await bob.call_tool("generate_video", {**GENERATE, "idempotency_key": "take-1"})
        assert not again.is_error, text_of(again)
        assert again.structured_content["task_id"] != alice_id
        assert not again.structured_content.get("replayed")
        assert recording.submits == posts + 1
        # ... and alice's key still finds hers, with no new submit.
        replay = await alice.call_tool("generate_video", {**GENERATE, "idempotency_key": "take-1"})
        assert replay.structured_content["task_id"] == alice_id
        assert recording.submits == posts + 1

        # Repeat notes: bob's submission of alice's arguments says nothing of hers.
        bobs_repeat = await bob.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        assert not bobs_repeat.is_error, text_of(bobs_repeat)
        assert alice_id not in text_of(bobs_repeat)
        alices_repeat = await alice.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        assert alice_id in text_of(alices_repeat)  # her own repeat is noted

        # Inputs: alice's saved frame is not a file bob may send, refused as one that
        # was never saved.
        dry = {**GENERATE, "dry_run": True, "image": frame_path}
        refused = await bob.call_tool("generate_video", dry)
        assert refused.is_error
        # (A name as long: a long path is clipped in the message at the same place.)
        never_saved = folder + "x" * (len(frame_path) - len(folder) - 4) + ".png"
        unsaved = await bob.call_tool("generate_video", {**dry, "image": never_saved})
        assert _shape(refused, frame_path) == _shape(unsaved, never_saved)
        allowed = await alice.call_tool("generate_video", dry)
        assert not allowed.is_error, text_of(allowed)

    # The local user (stdio) does not read other users' folders either.
    (tmp_path / "local-run").mkdir()
    local_server, local_recording = _server(
        tmp_path / "local-run",
        backend,
        output_dir=tmp_path / "videos",
        state_dir=tmp_path / "state",
    )
    async with Client(local_server, raise_exceptions=False) as local:
        # Alice's id is not the local user's either: refused without asking upstream.
        foreign_to_local = await local.call_tool(
            "check_video_task", {"task_id": alice_id, "wait_seconds": 0}
        )
        assert foreign_to_local.is_error
        assert _sent(local_recording) == 0
        refused = await local.call_tool("generate_video", dry)
        assert refused.is_error
        unsaved = await local.call_tool("generate_video", {**dry, "image": never_saved})
        assert _shape(refused, frame_path) == _shape(unsaved, never_saved)
        listed = await local.call_tool("list_video_tasks", {})
        assert listed.structured_content == {"tasks": []}


async def _only_alices_link(backend: Backend, root: Path, saved: str, link: str) -> None:
    """``link`` (alice's) serves her saved video; bob's and the local user's views of
    the links mint none for it."""
    if backend.bucket is None:
        links = MediaLinks(key=link_key(root / "state", None), output_dir=root / "videos")
        token, name = link.removeprefix(f"{PUBLIC}/media/").split("/", 1)
        assert links.resolve(token, name) == Path(saved).resolve()
        for other in ("bob", "local"):
            assert links.for_user(other).path_for(Path(saved)) is None
        return
    storage = backend.settings["storage"]
    store = ObjectVideoStore(storage)
    try:
        for other in ("bob", "local"):
            assert store.for_user(other).media_url(saved) is None
        assert store.for_user("alice").media_url(saved) is not None
    finally:
        store.close()
    async with httpx2.AsyncClient() as http:  # a presigned GET of the bucket on loopback
        got = await http.get(link, headers={"Range": "bytes=0-7"})
    assert got.status_code == 206
    assert got.content[4:8] == b"ftyp"


def test_media_links_are_per_user(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    (root / "users" / "alice").mkdir(parents=True)
    (root / "users" / "bob").mkdir(parents=True)
    alice_file = root / "users" / "alice" / "clip.mp4"
    bob_file = root / "users" / "bob" / "clip.mp4"
    local_file = root / "clip.mp4"
    for path in (alice_file, bob_file, local_file):
        path.write_bytes(b"same bytes")
    links = MediaLinks(key=b"k" * 32, output_dir=root)
    alice, bob, local = links.for_user("alice"), links.for_user("bob"), links.for_user("local")
    minted = alice.path_for(alice_file)
    assert minted is not None
    token = minted.split("/")[2]
    assert links.resolve(token, "users/alice/clip.mp4") == alice_file.resolve()
    # The same token never serves bob's file (same name, same bytes).
    assert links.resolve(token, "users/bob/clip.mp4") is None
    # No view mints a link to a file that is not its user's.
    assert bob.path_for(alice_file) is None
    assert local.path_for(alice_file) is None
    assert alice.path_for(local_file) is None
    assert local.path_for(local_file) is not None


# --- 3. budgets -----------------------------------------------------------------------


async def test_a_budget_refuses_before_sending_and_names_used_and_left(
    tmp_path: Path, backend: Backend
) -> None:
    server, recording = _server(tmp_path, backend, budget_seconds_per_day=20)
    async with as_user(server, "alice") as alice, as_user(server, "bob") as bob:
        keyed = {**GENERATE, "wait_seconds": 0, "idempotency_key": "first"}
        first = await alice.call_tool("generate_video", keyed)
        assert not first.is_error, text_of(first)
        posts = recording.submits
        over = await alice.call_tool(
            "generate_videos",
            {"jobs": [JOB] * 2},
        )
        assert over.is_error
        assert text_of(over) == (
            "Over your daily budget: this asks for 2 videos, 16 seconds of video, and you "
            "have used 8 of your 20 seconds today (UTC), so 12 are left. Nothing was sent. "
            "Ask for 12 seconds or fewer, or wait for 00:00 UTC (get_usage shows what is used)."
        )
        assert recording.submits == posts
        # A job without a duration counts the model's default (as confirmation does).
        fits = await alice.call_tool(
            "generate_video", {"model": GENERATE["model"], "prompt": "x", "wait_seconds": 0}
        )
        assert not fits.is_error, text_of(fits)
        usage = (await alice.call_tool("get_usage", {})).structured_content
        assert usage == {
            "user": "alice",
            "seconds_today": 12.0,
            "budget_seconds_per_day": 20.0,
            "tasks_today": 2,
        }
        # Spent to the last second: a new submission is refused, nothing sent ...
        rest = await alice.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        assert not rest.is_error, text_of(rest)
        posts = recording.submits
        refused = await alice.call_tool(
            "generate_video", {**GENERATE, "wait_seconds": 0, "idempotency_key": "new"}
        )
        assert refused.is_error
        assert "used 20 of your 20 seconds today (UTC), so 0 are left" in text_of(refused)
        # ... but a key that finds its task sends nothing, so it costs nothing.
        replay = await alice.call_tool("generate_video", keyed)
        assert not replay.is_error, text_of(replay)
        assert replay.structured_content is not None
        assert replay.structured_content["replayed"] is True
        assert recording.submits == posts
        usage = (await alice.call_tool("get_usage", {})).structured_content
        assert usage is not None
        assert (usage["seconds_today"], usage["tasks_today"]) == (20.0, 3)
        # Bob's budget is his own.
        assert not (await bob.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})).is_error


async def test_a_users_own_budget_and_a_refused_submit_gives_its_seconds_back(
    tmp_path: Path, backend: Backend
) -> None:
    callers = {
        "carol": Caller(
            "carol", upstream_key=SecretStr("sk-not-accepted"), budget_seconds_per_day=8
        )
    }
    server, recording = _server(tmp_path, backend, callers=callers, budget_seconds_per_day=1000)
    async with as_user(server, "carol") as carol:
        for _ in range(3):  # each refused upstream (401): its 8 s come back every time
            refused = await carol.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
            assert refused.is_error
            assert "budget" not in text_of(refused), text_of(refused)
        usage = (await carol.call_tool("get_usage", {})).structured_content
    assert usage == {
        "user": "carol",
        "seconds_today": 0.0,
        "budget_seconds_per_day": 8.0,
        "tasks_today": 0,
    }
    assert recording.submits == 3


async def test_two_journals_racing_cannot_both_pass_a_budget_only_one_fits(
    tmp_path: Path,
) -> None:
    first = Journal.open(tmp_path).for_user("alice")
    second = Journal.open(tmp_path).for_user("alice")
    try:
        for round_ in range(10):
            got: list[Reservation | OverBudget] = []

            async def reserve(
                journal: Journal, got: list[Reservation | OverBudget], cap: float
            ) -> None:
                got.append(await journal.reserve_seconds([6.0], budget=cap))

            async with anyio.create_task_group() as group:
                group.start_soon(reserve, first, got, 10.0 * (round_ + 1))
                group.start_soon(reserve, second, got, 10.0 * (round_ + 1))
            assert sorted(type(g).__name__ for g in got) == ["OverBudget", "Reservation"], got
            # top up to this round's cap so the next round races for 6 of 10 again
            filler = await first.reserve_seconds([4.0], budget=None)
            assert isinstance(filler, Reservation)
        assert (await second.usage()).seconds_today == 100.0
        assert (await second.for_user("bob").usage()).seconds_today == 0.0
    finally:
        first.close()
        second.close()


# --- 5. the submit rate limit -------------------------------------------------------


async def test_replicas_share_one_submit_limit(
    tmp_path: Path, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Two servers on one store (a state folder, or a database): a user's submits per
    minute are counted across both; another user's are their own. A refusal is logged
    as one, not as an unexpected error."""
    shared: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "output_dir": tmp_path / "videos",
        "submits_per_minute": 2,
    }
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(_server(tmp_path / name, backend, **shared))
    (first, first_sent), (second, second_sent) = servers
    job = {**GENERATE, "wait_seconds": 0, "download": False}
    async with (
        as_user(first, "alice") as one,
        as_user(second, "alice") as other,
        as_user(second, "bob") as bob,
    ):
        for replica in (one, other):
            made = await replica.call_tool("generate_video", job)
            assert not made.is_error, text_of(made)
        for replica, call, arguments in [
            (one, "generate_video", job),
            (other, "generate_videos", {"jobs": [JOB], "wait_seconds": 0}),
        ]:
            refused = await replica.call_tool(call, arguments)
            assert refused.is_error
            said = re.fullmatch(
                r"Too many submissions: this server allows 2 per minute per user\. "
                r"Nothing was sent\. Retry in (\d+) s\.",
                text_of(refused),
            )
            assert said is not None, text_of(refused)
            assert 50 <= int(said.group(1)) <= 60  # the first slot frees a minute on
        assert first_sent.submits + second_sent.submits == 2
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        theirs = await bob.call_tool("generate_video", job)
        assert not theirs.is_error, text_of(theirs)


# --- the migration ------------------------------------------------------------------


async def test_rows_from_before_users_belong_to_the_local_user(tmp_path: Path) -> None:
    from gravitex_mcp.store import sqlite_schema

    old = sqlite3.connect(tmp_path / "tasks.sqlite3")
    for step in sqlite_schema._MIGRATIONS[:3]:
        step(old)
    old.execute("PRAGMA user_version = 3")
    at = "2026-01-01T00:00:00.000000+00:00"
    old.execute(
        "INSERT INTO tasks (local_id, task_id, model, family, arguments, status, created_at, "
        "updated_at, arguments_hash) VALUES ('l1', 'video_old', 'sora-2', 'sora', '{}', "
        "'succeeded', ?, ?, 'h1')",
        (at, at),
    )
    old.execute(
        "INSERT INTO idempotency_keys (key, arguments_hash, local_id, created_at) "
        "VALUES ('old-key', 'h1', 'l1', ?)",
        (at,),
    )
    old.commit()
    old.close()
    journal = Journal.open(tmp_path)
    try:
        assert (await journal.get("video_old")) is not None
        assert journal.user_id == "local"
        bob = journal.for_user("bob")
        assert await bob.get("video_old") is None
        assert await bob.is_foreign("video_old")
        assert await bob.list(limit=10) == []
        held = await journal.claim_key(
            "old-key", arguments_hash="h1", model="sora-2", family="sora", arguments={}
        )
        assert held.holder is not None
        assert held.holder.task_id == "video_old"
        bobs = await bob.claim_key(
            "old-key", arguments_hash="h1", model="sora-2", family="sora", arguments={}
        )
        assert bobs.local_id is not None  # a key of bob's own
        await bob.fail_submission(bobs.local_id, message="test", outcome_unknown=False)
    finally:
        journal.close()


@pytest.mark.parametrize("user", ["alice", "Alice", "../x"])
def test_storage_names_keep_users_apart(tmp_path: Path, user: str) -> None:
    from gravitex_mcp.store.storage import OutputDir

    root = OutputDir(tmp_path / "videos")
    name = Caller(user).storage_name
    folder = root.for_user(name)
    assert folder.path.parent == tmp_path / "videos" / "users"
    assert root.for_user("local") is root


# --- over streamable HTTP with a tokens file ------------------------------------------


@pytest.mark.parametrize("sign_in", ["tokens file", "oauth"])
async def test_two_signed_in_users_over_streamable_http(
    tmp_path: Path, backend: Backend, sign_in: str
) -> None:
    """Alice and Bob signed in with a tokens file's tokens, or with JWTs from an OAuth
    issuer (``sub`` is the user), on each backend."""
    from gravitex_mcp.server.callers import TokensFileVerifier
    from gravitex_mcp.server.callers_jwt import JwtVerifier
    from gravitex_mcp.upstream.http import json_fetcher
    from tests.server.test_callers import ISSUER, Clock, Issuer
    from tests.server.test_team_ops import ACCEPT, VERSION, answer, rpc, running
    from tests.server.test_users import PUBLIC, _http_app, _session, _sim, _tokens_file

    recording = Recording(simulator_transport(_sim(FakeClock())))
    issuer = Issuer()
    keys = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=issuer.app()))
    verifier: Any
    if sign_in == "oauth":
        verifier = JwtVerifier(ISSUER, PUBLIC, json_fetcher(keys), clock=Clock())
        alice_token, bob_token = (issuer.mint(sub=who, aud=PUBLIC) for who in ("alice", "bob"))
    else:
        verifier = TokensFileVerifier(_tokens_file(tmp_path))
        alice_token, bob_token = "alice-token-1", "bob-token-2"
    app = _http_app(tmp_path, verifier, recording, **backend.settings)
    alice_auth = {"Authorization": f"Bearer {alice_token}"}
    bob_auth = {"Authorization": f"Bearer {bob_token}"}

    async with keys, running(app) as client:

        async def call(session: str, auth: dict[str, str], method: str, params: Any) -> Any:
            response = await client.post(
                "/mcp",
                json=rpc(method, params, ident=7),
                headers={**ACCEPT, **VERSION, **auth, "mcp-session-id": session},
            )
            return answer(response)

        async with _session(client, alice_auth) as alice, _session(client, bob_auth) as bob:
            made = await call(
                alice,
                alice_auth,
                "tools/call",
                {"name": "generate_video", "arguments": {**GENERATE, "idempotency_key": "k"}},
            )
            alice_id = made["result"]["structuredContent"]["task_id"]
            missing = _missing_like(alice_id)
            sent = _sent(recording)
            shapes = []
            for task_id in (alice_id, missing):
                got = await call(
                    bob,
                    bob_auth,
                    "tools/call",
                    {"name": "download_video", "arguments": {"task_id": task_id}},
                )
                result = got["result"]
                shapes.append(
                    (
                        json.dumps(result["content"]).replace(task_id, "<ID>"),
                        result.get("isError"),
                        sorted(result.get("structuredContent") or {}),
                    )
                )
            assert shapes[0] == shapes[1]
            assert shapes[0][1] is True
            read = [
                await call(bob, bob_auth, "resources/read", {"uri": f"gravitex://tasks/{t}"})
                for t in (alice_id, missing)
            ]
            assert json.dumps(read[0]).replace(alice_id, "<ID>") == json.dumps(read[1]).replace(
                missing, "<ID>"
            )
            ref = {"type": "ref/resource", "uri": "gravitex://tasks/{task_id}"}
            argument = {"name": "task_id", "value": alice_id[:4]}
            offered = await call(
                bob, bob_auth, "completion/complete", {"ref": ref, "argument": argument}
            )
            assert offered["result"]["completion"]["values"] == []
            hers = await call(
                alice, alice_auth, "completion/complete", {"ref": ref, "argument": argument}
            )
            assert hers["result"]["completion"]["values"] == [alice_id]
            usage = await call(bob, bob_auth, "tools/call", {"name": "get_usage", "arguments": {}})
            assert usage["result"]["structuredContent"]["user"] == "bob"
            assert usage["result"]["structuredContent"]["tasks_today"] == 0
            assert _sent(recording) == sent


async def test_a_signed_in_user_cannot_take_the_local_users_name(
    tmp_path: Path, backend: Backend
) -> None:
    server, _ = _server(tmp_path, backend, callers={"local": Caller("local")})
    async with Client(server, raise_exceptions=False) as stdio:
        made = await stdio.call_tool("generate_video", {**GENERATE, "wait_seconds": 0})
        assert not made.is_error, text_of(made)
    async with as_user(server, "local") as impostor:
        listed = await impostor.call_tool("list_video_tasks", {})
    assert listed.is_error
    assert "reserved for the server's own local user" in text_of(listed)
