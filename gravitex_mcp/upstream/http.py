"""JSON fetched over HTTP from remotes other than the Gravitex API (an OAuth
issuer's metadata and keys), so no layer above this one needs ``httpx2``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx2

#: fetch(url) -> the JSON object at ``url``; raises :class:`FetchError`.
FetchJSON = Callable[[str], Awaitable[dict[str, Any]]]


class FetchError(Exception):
    """The JSON object could not be fetched: transport, HTTP status or body."""


def json_fetcher(client: httpx2.AsyncClient) -> FetchJSON:
    """A :data:`FetchJSON` that GETs through ``client`` (its time-outs and transport)."""

    async def fetch(url: str) -> dict[str, Any]:
        try:
            response = await client.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            data = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise FetchError(str(exc)) from exc
        if not isinstance(data, dict):
            raise FetchError(f"{url} did not answer a JSON object")
        return data

    return fetch


def issuer_fetcher() -> FetchJSON:
    """The :data:`FetchJSON` the server reads an OAuth issuer's metadata and keys with:
    bounded time-outs, no redirects; its client lives as long as the server process."""
    return json_fetcher(httpx2.AsyncClient(timeout=httpx2.Timeout(10.0), follow_redirects=False))
