"""httpx2 event hooks on the upstream client: latency and error metrics by endpoint,
and an OpenTelemetry span per request.

The span comes from the global tracer provider: without an exporter configured it is
the API's no-op span and costs nothing. A request that ends without a response (a
connection or time-out error) reaches no response hook: the client's own error
handling is where those are told (see the report of issue 17).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2
from opentelemetry import trace

from ..metrics import Metrics
from .client import DOWNLOAD_PATH, QUERY_PATH, SUBMIT_PATH

_STARTED = "gravitex.started"
_SPAN = "gravitex.span"
_QUERY_PREFIX = QUERY_PATH.split("{", 1)[0]

EventHooks = dict[str, list[Callable[[Any], Any]]]


def endpoint_of(request: httpx2.Request, base_host: str) -> str:
    """A bounded label for ``request``: submit, query, download, or delivery (the
    video's own URL, on another host); task ids never become labels."""
    if request.url.host != base_host:
        return "delivery"
    path = request.url.path.rstrip("/")
    if path == SUBMIT_PATH:
        return "submit" if request.method == "POST" else "other"
    if path == DOWNLOAD_PATH:
        return "download"
    if path.startswith(_QUERY_PREFIX):
        return "query"
    return "other"


def upstream_hooks(
    base_url: str,
    metrics: Metrics | None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    tracer: trace.Tracer | None = None,
) -> EventHooks:
    """The ``event_hooks`` of the upstream client for ``base_url``."""
    base_host = httpx2.URL(base_url).host
    tracer = tracer or trace.get_tracer("gravitex_mcp.upstream")

    async def on_request(request: httpx2.Request) -> None:
        endpoint = endpoint_of(request, base_host)
        span = tracer.start_span(
            f"gravitex {endpoint}",
            kind=trace.SpanKind.CLIENT,
            # Never the URL: a delivery URL's query is a credential.
            attributes={"http.request.method": request.method, "gravitex.endpoint": endpoint},
        )
        request.extensions[_STARTED] = clock()
        request.extensions[_SPAN] = span

    async def on_response(response: httpx2.Response) -> None:
        request = response.request
        endpoint = endpoint_of(request, base_host)
        span: trace.Span | None = request.extensions.get(_SPAN)
        if span is not None:
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(trace.StatusCode.ERROR)
            span.end()
        if metrics is None:
            return
        started = request.extensions.get(_STARTED)
        if started is not None:
            metrics.upstream_seconds.labels(endpoint).observe(max(0.0, clock() - started))
        if response.status_code >= 400:
            metrics.upstream_errors.labels(endpoint, str(response.status_code)).inc()
        elif endpoint == "submit":
            metrics.submits.inc()

    return {"request": [on_request], "response": [on_response]}
