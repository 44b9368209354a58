"""OAuth 2.1 bearer JWTs: :class:`JwtVerifier`, the SDK ``TokenVerifier`` for
``GRAVITEX_OAUTH_ISSUER`` (see callers.py for the other ways of saying who calls).

The issuer's signing keys come from its metadata (RFC 8414
``/.well-known/oauth-authorization-server``, else OpenID ``openid-configuration``)
→ ``jwks_uri`` → JWKS. They are cached for ``keys_max_age`` seconds and fetched
again when a token names a ``kid`` not in the cache, at most once per
``refetch_interval`` seconds, so a flood of made-up kids cannot hammer the issuer.

A token is accepted only if its ``alg`` is asymmetric (RS*, PS*, ES*, EdDSA) and
fits the key it names (the key's own ``alg``, else its ``kty``/``crv``): ``none``
and every HMAC alg are refused before any key is touched, so a token "signed" with
the public key as an HMAC secret never verifies. Then the signature, ``iss``
(exactly the issuer), ``aud`` (exactly the server's public URL), ``exp`` (required),
``nbf`` and ``iat`` (``leeway`` seconds either way, by the injected ``clock``) and
``sub`` (the user id) are checked. Nothing logged or raised here holds the token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import jwt
from mcp.server.auth.provider import AccessToken

from ..errors import ConfigurationError
from ..upstream.http import FetchError, FetchJSON
from .callers import MAX_TOKEN_CHARS, Caller, fingerprint

logger = logging.getLogger(__name__)

#: alg → the key types (and EC curves) it may be used with.
ALGORITHMS: dict[str, tuple[str, frozenset[str] | None]] = {
    **{f"RS{n}": ("RSA", None) for n in (256, 384, 512)},
    **{f"PS{n}": ("RSA", None) for n in (256, 384, 512)},
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
_CLAIMS_KEPT = ("iss",)


def _is_loopback_http(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    if not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(f"{what} must be a URL without query or fragment, got {url!r}.")
    if parts.scheme != "https" and not _is_loopback_http(url):
        raise ConfigurationError(f"{what} must be https (http only on loopback), got {url!r}.")
    return url


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be (RFC 8414 §3.1, then OpenID Connect)."""
    parts = urlsplit(issuer)
    base, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
    urls = [
        f"{base}/.well-known/oauth-authorization-server{path}",
        f"{base}/.well-known/openid-configuration{path}",
        f"{base}{path}/.well-known/openid-configuration",
    ]
    return list(dict.fromkeys(urls))


class JwtRefused(Exception):  # noqa: N818 - internal, never leaves verify_token
    """Why a token was refused (the reason names no part of the token)."""


class JwtVerifier:
    """Verifies bearer JWTs issued by ``issuer`` for ``audience`` (the server's public URL)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        fetch_json: FetchJSON,
        *,
        clock: Callable[[], float] = time.time,
        leeway: float = 30.0,
        refetch_interval: float = 30.0,
        keys_max_age: float = 3600.0,
    ) -> None:
        self.issuer = _check_url(issuer, "GRAVITEX_OAUTH_ISSUER")
        self.audience = _check_url(audience, "GRAVITEX_PUBLIC_URL")
        self._fetch_json = fetch_json
        self._clock = clock
        self._leeway = leeway
        self._refetch_interval = refetch_interval
        self._keys_max_age = keys_max_age
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._lock = anyio.Lock()
        #: how many times the JWKS was fetched (tests and diagnostics)
        self.fetches = 0

    def __repr__(self) -> str:
        return f"JwtVerifier(issuer={self.issuer!r}, audience={self.audience!r})"

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            return await self._verify(token)
        except JwtRefused as exc:
            logger.info("bearer JWT refused: %s", exc)
            return None

    def caller_for(self, access: AccessToken) -> Caller | None:
        return Caller(access.subject) if access.subject else None

    async def _verify(self, token: str) -> AccessToken:
        if len(token) > MAX_TOKEN_CHARS:
            raise JwtRefused("longer than any token this server accepts")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise JwtRefused("not a JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise JwtRefused(f"algorithm {str(alg)[:20]!r} is not an accepted asymmetric one")
        if kid is not None and not isinstance(kid, str):
            raise JwtRefused("kid is not a string")
        jwk = await self._key(kid)
        key = self._usable_key(jwk, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    # times are checked below, by the injected clock
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise JwtRefused(type(exc).__name__) from None
        self._check_times(claims)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise JwtRefused("sub is not a non-empty string")
        client_id = claims.get("client_id") or claims.get("azp") or sub
        return AccessToken(
            token=fingerprint(token),
            client_id=str(client_id),
            subject=sub,
            scopes=_scopes(claims),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            claims={k: claims[k] for k in _CLAIMS_KEPT if k in claims},
        )

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._clock(), self._leeway
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise JwtRefused(f"{name} is not a number")
        if claims["exp"] <= now - leeway:
            raise JwtRefused("expired")
        if "nbf" in claims and claims["nbf"] > now + leeway:
            raise JwtRefused("not valid yet (nbf)")
        if "iat" in claims and claims["iat"] > now + leeway:
            raise JwtRefused("issued in the future (iat)")

    def _usable_key(self, jwk: dict[str, Any], alg: str) -> Any:
        kty, curves = ALGORITHMS[alg]
        if jwk.get("kty") != kty or (curves is not None and jwk.get("crv") not in curves):
            raise JwtRefused(f"{alg} does not fit the key's type")
        if "alg" in jwk and jwk["alg"] != alg:
            raise JwtRefused(f"{alg} is not the key's own algorithm")
        try:
            return jwt.PyJWK(jwk, algorithm=alg).key
        except jwt.PyJWTError:
            raise JwtRefused("the issuer's key is unusable") from None

    async def _key(self, kid: str | None) -> dict[str, Any]:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at >= self._keys_max_age
        if stale or not self._has(kid):
            async with self._lock:
                # Another request may have fetched while this one waited.
                recent = self._fetched_at is not None and (
                    self._clock() - self._fetched_at < self._refetch_interval
                )
                if not recent:
                    await self._fetch_keys()
        if not self._has(kid):
            raise JwtRefused("no key of the issuer has this kid" if kid else "no kid, many keys")
        return self._keys[kid] if kid is not None else next(iter(self._keys.values()))

    def _has(self, kid: str | None) -> bool:
        return kid in self._keys if kid is not None else len(self._keys) == 1

    async def _fetch_keys(self) -> None:
        self._fetched_at = self._clock()  # before awaiting: failures are rate-limited too
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            jwks = await self._fetch_json(self._jwks_uri)
        except (FetchError, ValueError) as exc:
            logger.warning("could not fetch the keys of %s: %s", self.issuer, exc)
            return
        self.fetches += 1
        keys: dict[str | None, dict[str, Any]] = {}
        raw = jwks.get("keys")
        for jwk in raw if isinstance(raw, list) else []:
            if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
                continue  # symmetric ("oct") and odd keys are never used
            if jwk.get("use", "sig") != "sig" or "d" in jwk:
                continue  # an encryption key, or a private key published by mistake
            kid = jwk.get("kid")
            keys[kid if isinstance(kid, str) else None] = jwk
        self._keys = keys
        logger.info("keys of %s: %d signing key(s)", self.issuer, len(keys))

    async def _discover(self) -> str:
        for url in metadata_urls(self.issuer):
            try:
                metadata = await self._fetch_json(url)
            except FetchError:
                continue
            if metadata.get("issuer") != self.issuer:
                raise ValueError(f"the metadata at {url} names another issuer")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError(f"the metadata at {url} has no jwks_uri")
            try:
                return _check_url(jwks_uri, "jwks_uri")
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None
        raise ValueError("no metadata (oauth-authorization-server or openid-configuration)")


def _scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    return [s for s in scp if isinstance(s, str)] if isinstance(scp, list) else []
