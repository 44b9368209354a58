"""Who is calling: the tokens file, the shared token and OAuth JWTs (callers.py, callers_jwt.py).

A test issuer (an ASGI app reached through httpx2's ASGITransport) serves metadata and a
JWKS and mints JWTs with generated RSA and EC keys; the end-to-end test puts a real SDK
``MCPServer`` on 127.0.0.1 behind :class:`JwtVerifier`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gravitex_mcp.errors import ConfigurationError
from gravitex_mcp.server.callers import (
    LOCAL,
    Caller,
    SharedTokenVerifier,
    TokensFileError,
    TokensFileVerifier,
    auth_settings,
    current_caller,
    verifier_from_env,
)
from gravitex_mcp.server.callers_jwt import JwtVerifier, metadata_urls
from gravitex_mcp.upstream.http import json_fetcher

ISSUER = "http://127.0.0.1:8999"
AUDIENCE = "https://videos.example.com"
NOW = 1_900_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """An OAuth authorization server's key half: metadata, JWKS, and minting."""

    def __init__(self, *, metadata_path: str = "/.well-known/oauth-authorization-server") -> None:
        self.keys: dict[str, Any] = {}
        self.algs: dict[str, str] = {}
        self.jwks_hits = 0
        self.metadata_path = metadata_path
        self.add_key("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.add_key("ec-1", ec.generate_private_key(ec.SECP256R1()), alg="ES256")

    def add_key(self, kid: str, key: Any, alg: str = "RS256") -> None:
        self.keys[kid] = key
        self.algs[kid] = alg

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(
                jwt.algorithms.get_default_algorithms()[self.algs[kid]].to_jwk(key.public_key())
            )
            out.append({**jwk, "kid": kid, "use": "sig", "alg": self.algs[kid]})
        return {"keys": out}

    def public_pem(self, kid: str = "rsa-1") -> bytes:
        return bytes(
            self.keys[kid]
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def claims(self, **over: Any) -> dict[str, Any]:
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": int(NOW) - 10,
            "exp": int(NOW) + 600,
            "scope": "videos",
        }
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    def mint(self, kid: str = "rsa-1", *, alg: str | None = None, **over: Any) -> str:
        return jwt.encode(
            self.claims(**over),
            self.keys[kid],
            algorithm=alg or self.algs[kid],
            headers={"kid": kid},
        )

    def app(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            return JSONResponse({"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})

        async def jwks(request: Request) -> Response:
            self.jwks_hits += 1
            return JSONResponse(self.jwks())

        return Starlette(routes=[Route(self.metadata_path, metadata), Route("/jwks", jwks)])


def forge(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWT put together by hand (PyJWT refuses to make the bad ones)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
async def http(issuer: Issuer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=issuer.app())) as client:
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(http: httpx2.AsyncClient, clock: Clock) -> JwtVerifier:
    return JwtVerifier(ISSUER, AUDIENCE, json_fetcher(http), clock=clock, refetch_interval=30.0)


# --- OAuth JWTs ---------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
async def test_good_token_is_its_sub(verifier: JwtVerifier, issuer: Issuer, kid: str) -> None:
    token = issuer.mint(kid)
    access = await verifier.verify_token(token)
    assert access is not None
    assert access.subject == "alice"
    assert access.resource == AUDIENCE
    assert access.scopes == ["videos"]
    assert access.claims == {"iss": ISSUER}
    assert token not in repr(access)  # only a fingerprint is kept
    assert verifier.caller_for(access) == Caller("alice")


async def test_keys_are_cached(verifier: JwtVerifier, issuer: Issuer) -> None:
    for sub in ("alice", "bob", "carol"):
        assert await verifier.verify_token(issuer.mint(sub=sub)) is not None
    assert issuer.jwks_hits == 1


async def test_openid_configuration_is_the_fallback(clock: Clock) -> None:
    issuer = Issuer(metadata_path="/.well-known/openid-configuration")
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=issuer.app())) as http:
        verifier = JwtVerifier(ISSUER, AUDIENCE, json_fetcher(http), clock=clock)
        assert await verifier.verify_token(issuer.mint()) is not None


def test_metadata_urls_of_an_issuer_with_a_path() -> None:
    assert metadata_urls("https://id.example.com/realms/x") == [
        "https://id.example.com/.well-known/oauth-authorization-server/realms/x",
        "https://id.example.com/.well-known/openid-configuration/realms/x",
        "https://id.example.com/realms/x/.well-known/openid-configuration",
    ]


@pytest.mark.parametrize(
    ("over", "advance"),
    [
        pytest.param({"exp": int(NOW) - 60}, 0, id="expired"),
        pytest.param({}, 601 + 30, id="expired-later"),
        pytest.param({"nbf": int(NOW) + 300}, 0, id="not-yet-valid"),
        pytest.param({"iat": int(NOW) + 300}, 0, id="issued-in-future"),
        pytest.param({"exp": None}, 0, id="no-exp"),
        pytest.param({"exp": "soon"}, 0, id="exp-not-number"),
        pytest.param({"aud": "https://other.example.com"}, 0, id="wrong-audience"),
        pytest.param({"aud": AUDIENCE + "/"}, 0, id="audience-not-exact"),
        pytest.param({"aud": None}, 0, id="no-audience"),
        pytest.param({"iss": "http://127.0.0.1:8998"}, 0, id="wrong-issuer"),
        pytest.param({"sub": None}, 0, id="no-sub"),
        pytest.param({"sub": ""}, 0, id="empty-sub"),
    ],
)
async def test_bad_claims_are_refused(
    verifier: JwtVerifier,
    issuer: Issuer,
    clock: Clock,
    over: dict[str, Any],
    advance: float,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = issuer.mint(**over)
    clock.now += advance
    with caplog.at_level(logging.DEBUG):
        assert await verifier.verify_token(token) is None
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


async def test_small_clock_skew_is_allowed(
    verifier: JwtVerifier, issuer: Issuer, clock: Clock
) -> None:
    token = issuer.mint(nbf=int(NOW) + 10, iat=int(NOW) + 10)
    assert await verifier.verify_token(token) is not None
    clock.now += 600 + 20  # past exp, within the leeway
    assert await verifier.verify_token(token) is not None


async def test_alg_none_is_refused(verifier: JwtVerifier, issuer: Issuer) -> None:
    for alg in ("none", "None", "NONE"):
        token = forge({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, issuer.claims())
        assert await verifier.verify_token(token) is None
    assert issuer.jwks_hits == 0  # refused before any key was looked up


@pytest.mark.parametrize("secret_form", ["pem", "jwk"])
async def test_hmac_signed_with_the_public_key_is_refused(
    verifier: JwtVerifier, issuer: Issuer, secret_form: str
) -> None:
    secret = issuer.public_pem() if secret_form == "pem" else json.dumps(issuer.jwks()).encode()
    for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
        token = forge(
            {"alg": alg, "typ": "JWT", "kid": "rsa-1"},
            issuer.claims(),
            lambda data, d=digest: hmac.new(secret, data, d).digest(),
        )
        assert await verifier.verify_token(token) is None


async def test_tampered_token_is_refused(verifier: JwtVerifier, issuer: Issuer) -> None:
    token = issuer.mint()
    head, body, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0x01
    assert await verifier.verify_token(f"{head}.{body}.{_b64(bytes(raw))}") is None
    other = _b64(json.dumps(issuer.claims(sub="mallory")).encode())
    assert await verifier.verify_token(f"{head}.{other}.{sig}") is None
    assert await verifier.verify_token(token) is not None


async def test_alg_must_fit_the_key(verifier: JwtVerifier, issuer: Issuer) -> None:
    # The RSA key's own alg is RS256: a PS256 signature by the same key is refused.
    assert await verifier.verify_token(issuer.mint("rsa-1", alg="PS256")) is None
    # An EC alg naming the RSA key's kid is refused, whatever signs it.
    ec_signed = jwt.encode(
        issuer.claims(), issuer.keys["ec-1"], algorithm="ES256", headers={"kid": "rsa-1"}
    )
    assert await verifier.verify_token(ec_signed) is None


async def test_not_a_jwt_is_refused(verifier: JwtVerifier) -> None:
    for token in ("", "abc", "a.b.c", "x" * 100_000):
        assert await verifier.verify_token(token) is None


async def test_key_rotation_refetches_rate_limited(
    verifier: JwtVerifier, issuer: Issuer, clock: Clock
) -> None:
    assert await verifier.verify_token(issuer.mint()) is not None
    assert issuer.jwks_hits == 1
    clock.now += 31
    issuer.add_key("rsa-2", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    del issuer.keys["rsa-1"]
    # A token with the new kid: fetched again, and accepted.
    rotated = issuer.mint("rsa-2")
    assert await verifier.verify_token(rotated) is not None
    assert issuer.jwks_hits == 2
    # A flood of made-up kids within the interval: no fetch at all.
    for n in range(20):
        bogus = forge({"alg": "RS256", "kid": f"bogus-{n}"}, issuer.claims(), lambda _: b"x" * 256)
        assert await verifier.verify_token(bogus) is None
    assert issuer.jwks_hits == 2
    # A key the issuer adds within the interval is seen only once it has passed.
    issuer.add_key("rsa-3", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    third = issuer.mint("rsa-3")
    assert await verifier.verify_token(third) is None
    clock.now += 31
    assert await verifier.verify_token(third) is not None
    assert issuer.jwks_hits == 3


async def test_concurrent_unknown_kids_fetch_once(verifier: JwtVerifier, issuer: Issuer) -> None:
    results: list[bool] = []

    async def one(n: int) -> None:
        bogus = forge({"alg": "RS256", "kid": f"k{n}"}, issuer.claims(), lambda _: b"x")
        results.append(await verifier.verify_token(bogus) is None)

    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(one, n)
    assert results == [True] * 10
    assert issuer.jwks_hits == 1


async def test_issuer_down_refuses_then_recovers(issuer: Issuer, clock: Clock) -> None:
    up = False

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if not up:
            return httpx2.Response(503)
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=issuer.app())) as c:
            answer = await c.get(str(request.url))
            return httpx2.Response(answer.status_code, content=answer.content)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        verifier = JwtVerifier(ISSUER, AUDIENCE, json_fetcher(http), clock=clock)
        token = issuer.mint()
        assert await verifier.verify_token(token) is None
        up = True
        assert await verifier.verify_token(token) is None  # rate-limited: not asked again yet
        clock.now += 31
        assert await verifier.verify_token(token) is not None


def test_issuer_and_audience_must_be_https_off_loopback(http: httpx2.AsyncClient) -> None:
    with pytest.raises(ConfigurationError, match="https"):
        JwtVerifier("http://id.example.com", AUDIENCE, json_fetcher(http))
    with pytest.raises(ConfigurationError, match="https"):
        JwtVerifier(ISSUER, "http://videos.example.com", json_fetcher(http))


# --- the tokens file ----------------------------------------------------------------------

TOKEN_A = "alice-token-2f8c1d"
TOKEN_B = "bob-token-99ae03"


def _write(path: Path, text: str, *, bump: int = 0) -> None:
    """Write ``text``, moving the mtime on by ``bump`` seconds (coarse clocks)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    path.chmod(0o600)
    if bump:
        os.utime(path, ns=(before + bump * 10**9, before + bump * 10**9))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    sha_b = hashlib.sha256(TOKEN_B.encode()).hexdigest()
    _write(
        path,
        f'[alice]\ntoken = "{TOKEN_A}"\nupstream_key = "sk-alice-own-key"\n'
        f"budget_seconds_per_day = 120\n\n"
        f'[bob]\ntoken_sha256 = "{sha_b.upper()}"\n',
    )
    return path


async def test_tokens_file_token_and_sha256(tokens_file: Path, clock: Clock) -> None:
    verifier = TokensFileVerifier(tokens_file, clock=clock)
    alice = await verifier.verify_token(TOKEN_A)
    bob = await verifier.verify_token(TOKEN_B)
    assert alice is not None
    assert bob is not None
    assert (alice.subject, bob.subject) == ("alice", "bob")
    caller = verifier.caller_for(alice)
    assert caller is not None
    assert caller.user_id == "alice"
    assert caller.budget_seconds_per_day == 120
    assert caller.upstream_key is not None
    assert caller.upstream_key.get_secret_value() == "sk-alice-own-key"
    for shown in (repr(caller), str(caller), repr(alice), repr(verifier)):
        assert "sk-alice" not in shown
        assert TOKEN_A not in shown
    assert verifier.caller_for(bob) == Caller("bob")
    for wrong in (
        "",
        TOKEN_A + "x",
        TOKEN_A[:-1],
        "bob",
        hashlib.sha256(TOKEN_B.encode()).hexdigest(),
    ):
        assert await verifier.verify_token(wrong) is None


async def test_tokens_file_reload_without_restart(tokens_file: Path, clock: Clock) -> None:
    verifier = TokensFileVerifier(tokens_file, clock=clock)
    _write(tokens_file, '[carol]\ntoken = "carol-token-77"\n', bump=5)
    # Within the check interval the file is not even looked at.
    clock.now += 0.5
    assert await verifier.verify_token(TOKEN_A) is not None
    assert await verifier.verify_token("carol-token-77") is None
    clock.now += 1
    assert await verifier.verify_token(TOKEN_A) is None
    carol = await verifier.verify_token("carol-token-77")
    assert carol is not None
    assert carol.subject == "carol"
    assert verifier.users == ("carol",)


async def test_tokens_file_reload_sees_a_same_size_same_mtime_replacement(
    tokens_file: Path, clock: Clock
) -> None:
    verifier = TokensFileVerifier(tokens_file, clock=clock)
    before = tokens_file.stat()
    replacement = tokens_file.with_name("new.toml")
    replacement.write_text(tokens_file.read_text().replace("alice-", "ALICE-"))
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    replacement.replace(tokens_file)  # an atomic save: a new inode
    clock.now += 2
    assert await verifier.verify_token(TOKEN_A) is None
    assert await verifier.verify_token(TOKEN_A.replace("alice-", "ALICE-")) is not None


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param('[alice]\ntoken = "unterminated\n', 2, id="syntax"),
        pytest.param('[alice]\ntoken = "x1"\n\n[bob]\ntoken = "x1"\n', 4, id="duplicate"),
        pytest.param("[alice]\ntoken = 7\n", 1, id="token-not-string"),
        pytest.param('[alice]\ntokne = "x"\n', 1, id="unknown-field"),
        pytest.param('[alice]\ntoken = "x"\ntoken_sha256 = "00"\n', 1, id="both"),
        pytest.param('[a]\ntoken = "y"\n[alice]\ntoken_sha256 = "abc"\n', 3, id="bad-sha"),
        pytest.param('[alice]\ntoken = "x"\nbudget_seconds_per_day = -1\n', 1, id="budget"),
        pytest.param('[alice]\ntoken = "x"\nupstream_key = ""\n', 1, id="empty-key"),
    ],
)
async def test_broken_edit_keeps_the_last_good(
    tokens_file: Path,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    text: str,
    line: int,
) -> None:
    verifier = TokensFileVerifier(tokens_file, clock=clock)
    _write(tokens_file, text, bump=5)
    clock.now += 2
    with caplog.at_level(logging.INFO):
        assert await verifier.verify_token(TOKEN_A) is not None
        clock.now += 2  # checked again, unchanged: logged once only
        assert await verifier.verify_token(TOKEN_A) is not None
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert str(tokens_file) in message, message
    assert f"line {line}" in message, message
    assert "unterminated" not in message
    assert '"x1"' not in message
    with pytest.raises(TokensFileError, match=f"line {line}"):
        TokensFileVerifier(tokens_file, clock=clock)  # at start-up, the same is fatal


def test_duplicate_tokens_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    sha = hashlib.sha256(TOKEN_A.encode()).hexdigest()
    _write(path, f'[alice]\ntoken = "{TOKEN_A}"\n\n[mallory]\ntoken_sha256 = "{sha}"\n')
    with pytest.raises(TokensFileError, match=r"'mallory'.*same token as user 'alice'") as err:
        TokensFileVerifier(path)
    assert TOKEN_A not in str(err.value)
    assert sha not in str(err.value)


def test_readable_by_others_warns(tokens_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    tokens_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        TokensFileVerifier(tokens_file)
    assert "chmod 600" in caplog.text
    assert str(tokens_file) in caplog.text
    caplog.clear()
    tokens_file.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        TokensFileVerifier(tokens_file)
    assert "chmod" not in caplog.text


async def test_deleted_file_keeps_the_last_good(
    tokens_file: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = TokensFileVerifier(tokens_file, clock=clock)
    text = tokens_file.read_text()
    tokens_file.unlink()
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            clock.now += 2
            assert await verifier.verify_token(TOKEN_A) is not None
    assert len(caplog.records) == 1, caplog.text  # said once, not every second
    assert "still using the last good version" in caplog.text
    _write(tokens_file, text.replace("alice-", "ALICE-"))
    clock.now += 2
    assert await verifier.verify_token(TOKEN_A) is None  # back, and read again


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match=r"missing\.toml"):
        TokensFileVerifier(tmp_path / "missing.toml")


# --- the shared token, the local user, the environment --------------------------------------


async def test_shared_token() -> None:
    verifier = SharedTokenVerifier("shared-secret-1")
    access = await verifier.verify_token("shared-secret-1")
    assert access is not None
    assert verifier.caller_for(access) == Caller("shared")
    assert "shared-secret-1" not in repr(access) + repr(verifier)
    for wrong in ("", "shared-secret-", "shared-secret-12"):
        assert await verifier.verify_token(wrong) is None


def test_without_a_token_the_caller_is_local() -> None:
    assert current_caller(None) == LOCAL == Caller("local")
    assert current_caller(SharedTokenVerifier("t")) == LOCAL  # no request token: stdio


def test_storage_names() -> None:
    assert Caller("alice").storage_name == "alice"
    odd = {Caller(u).storage_name for u in ("../x", "a/b", "u-abc", "", "é", "x" * 65, "Alice")}
    assert len(odd) == 7
    assert all(n.startswith("u-") and len(n) == 34 for n in odd)


def test_verifier_from_env(tokens_file: Path, http: httpx2.AsyncClient) -> None:
    assert verifier_from_env({}) is None
    assert isinstance(verifier_from_env({"GRAVITEX_HTTP_TOKEN": "t"}), SharedTokenVerifier)
    env = {"GRAVITEX_TOKENS_FILE": str(tokens_file), "GRAVITEX_HTTP_TOKEN": "t"}
    assert isinstance(verifier_from_env(env), TokensFileVerifier)
    oauth = {"GRAVITEX_OAUTH_ISSUER": ISSUER, "GRAVITEX_PUBLIC_URL": AUDIENCE + "/"}
    jwt_verifier = verifier_from_env(oauth, fetch_json=json_fetcher(http))
    assert isinstance(jwt_verifier, JwtVerifier)
    assert jwt_verifier.audience == AUDIENCE
    with pytest.raises(ConfigurationError, match="GRAVITEX_PUBLIC_URL"):
        verifier_from_env({"GRAVITEX_OAUTH_ISSUER": ISSUER}, fetch_json=json_fetcher(http))
    with pytest.raises(ConfigurationError, match="not both"):
        verifier_from_env({**oauth, "GRAVITEX_TOKENS_FILE": str(tokens_file)})


# --- end to end: an SDK MCPServer on 127.0.0.1 ----------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    with sock:
        yield sock


@asynccontextmanager
async def serving(app: Any, listener: socket.socket) -> AsyncIterator[None]:
    """``app`` under uvicorn on ``listener`` (127.0.0.1) while the block runs."""
    import uvicorn

    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(uv.serve, [listener])
        with anyio.fail_after(30):
            while not uv.started:  # noqa: ASYNC110 - uvicorn has no started event
                await anyio.sleep(0.02)
            yield
        uv.should_exit = True


def _text(result: CallToolResult) -> str:
    text = "".join(b.text for b in result.content if isinstance(b, TextContent))
    assert not result.is_error, text
    return text


async def test_mcp_server_with_jwt_verifier(
    issuer: Issuer, http: httpx2.AsyncClient, listener: socket.socket
) -> None:
    public_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    verifier = JwtVerifier(ISSUER, public_url, json_fetcher(http))
    server: MCPServer[Any] = MCPServer(
        "callers-e2e", token_verifier=verifier, auth=auth_settings(verifier, public_url)
    )
    seen: list[str | None] = []

    @server.tool()
    def whoami() -> str:
        access = get_access_token()
        seen.append(access.subject if access else None)
        return current_caller(verifier).user_id

    now = int(time.time())
    good = issuer.mint(aud=public_url, sub="bob", iat=now, exp=now + 300)
    async with serving(server.streamable_http_app(), listener):
        async with httpx2.AsyncClient(base_url=public_url, timeout=10) as plain:
            refused = await plain.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert refused.status_code == 401
            challenge = refused.headers["www-authenticate"]
            metadata_url = f"{public_url}/.well-known/oauth-protected-resource"
            assert challenge.startswith("Bearer ")
            assert f'resource_metadata="{metadata_url}"' in challenge
            metadata = (await plain.get(metadata_url)).json()
            assert metadata["resource"] == public_url
            assert metadata["authorization_servers"] == [ISSUER]
            wrong_aud = issuer.mint(aud=AUDIENCE, iat=now, exp=now + 300)
            for bad in ("nope", wrong_aud):
                r = await plain.post(
                    "/mcp",
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                    headers={"Authorization": f"Bearer {bad}"},
                )
                assert r.status_code == 401
                assert bad not in r.text
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {good}"}, timeout=10) as h,
            Client(streamable_http_client(f"{public_url}/mcp", http_client=h)) as client,
        ):
            assert _text(await client.call_tool("whoami", {})) == "bob"
    assert seen == ["bob"]


async def test_mcp_server_over_sse_with_tokens_file(
    tokens_file: Path, listener: socket.socket
) -> None:
    public_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    verifier = TokensFileVerifier(tokens_file)
    server: MCPServer[Any] = MCPServer(
        "callers-e2e", token_verifier=verifier, auth=auth_settings(verifier, public_url)
    )

    @server.tool()
    def whoami() -> str:
        caller = current_caller(verifier)
        key = caller.upstream_key.get_secret_value() if caller.upstream_key else None
        return f"{caller.user_id} {key} {caller.budget_seconds_per_day}"

    async with serving(server.sse_app(), listener):
        async with httpx2.AsyncClient(base_url=public_url, timeout=10) as plain:
            refused = await plain.get("/sse", headers={"Authorization": "Bearer nope"})
            assert refused.status_code == 401
            # No authorization server to send a client to: no metadata, none named.
            assert "resource_metadata" not in refused.headers["www-authenticate"]
            assert (await plain.get("/.well-known/oauth-protected-resource")).status_code == 404
        answers = []
        for token in (TOKEN_A, TOKEN_B):
            headers = {"Authorization": f"Bearer {token}"}
            async with Client(sse_client(f"{public_url}/sse", headers=headers)) as client:
                answers.append(_text(await client.call_tool("whoami", {})))
    assert answers == ["alice sk-alice-own-key 120", "bob None None"]
