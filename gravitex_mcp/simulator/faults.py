"""Programmable faults: what the simulator does wrong, where, and how many times.

``sim.faults.add(endpoint, kind, times=1, **params)`` queues a fault for one
endpoint. Faults fire in the order they were added and each is used up after
``times`` requests (``times=None``: every request until :meth:`FaultPlan.clear`).

Two moments matter:

* *arrival* faults (:data:`ARRIVAL_KINDS`) replace the answer as soon as the
  request got past authentication: nothing else happens (no task is created);
* *answer* faults (:data:`ANSWER_KINDS`) spoil the answer the endpoint was about
  to give successfully, so they wait for a request that would have succeeded
  (a download of a finished video, a submit that passed validation, ...).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Endpoint(StrEnum):
    """The simulator's routes that faults and call counters are keyed by."""

    SUBMIT = "submit"  # POST /v1/video/generations
    QUERY = "query"  # GET /v1/video/generations/{task_id}
    DOWNLOAD = "download"  # GET /v1/video/generations/download?id=
    FILE = "file"  # GET /files/{task_id}.mp4?Expires=&Signature=


class FaultKind(StrEnum):
    """Every fault the simulator can inject (see :data:`FAULT_PARAMS` for parameters)."""

    RATE_LIMIT = "rate_limit"  # 429, optional Retry-After
    SERVER_ERROR = "server_error"  # 500/502/503/504 JSON error, optional Retry-After
    REQUEST_TIMEOUT = "request_timeout"  # 408
    MALFORMED_JSON = "malformed_json"  # a JSON content type whose body is not JSON
    HTML_PAGE = "html_page"  # a proxy's HTML error page (502 by default, or 200)
    EXPIRED_URL = "expired_url"  # file: 403 "Request has expired", signature or not
    TRUNCATED = "truncated"  # fewer body bytes than Content-Length, then the connection ends
    BAD_BASE64 = "bad_base64"  # download: invalid characters inside the base64 text
    WRONG_SIZE = "wrong_size"  # download: the "size" field disagrees with the bytes
    HTML_INSTEAD_OF_VIDEO = "html_instead_of_video"  # file: 200 text/html, not the mp4
    ACCEPTED_BUT_LOST = "accepted_but_lost"  # submit: the task IS created, the answer is lost


ARRIVAL_KINDS: frozenset[FaultKind] = frozenset(
    {
        FaultKind.RATE_LIMIT,
        FaultKind.SERVER_ERROR,
        FaultKind.REQUEST_TIMEOUT,
        FaultKind.MALFORMED_JSON,
        FaultKind.HTML_PAGE,
        FaultKind.EXPIRED_URL,
    }
)
ANSWER_KINDS: frozenset[FaultKind] = frozenset(FaultKind) - ARRIVAL_KINDS

_JSON_ENDPOINTS = frozenset({Endpoint.SUBMIT, Endpoint.QUERY, Endpoint.DOWNLOAD})

#: Where each kind may be used (every endpoint unless named here).
FAULT_ENDPOINTS: Mapping[FaultKind, frozenset[Endpoint]] = {
    **{kind: frozenset(Endpoint) for kind in FaultKind},
    FaultKind.MALFORMED_JSON: _JSON_ENDPOINTS,
    FaultKind.EXPIRED_URL: frozenset({Endpoint.FILE}),
    FaultKind.BAD_BASE64: frozenset({Endpoint.DOWNLOAD}),
    FaultKind.WRONG_SIZE: frozenset({Endpoint.DOWNLOAD}),
    FaultKind.HTML_INSTEAD_OF_VIDEO: frozenset({Endpoint.FILE}),
    FaultKind.ACCEPTED_BUT_LOST: frozenset({Endpoint.SUBMIT}),
}

#: The keyword parameters each kind takes, with their defaults.
FAULT_PARAMS: Mapping[FaultKind, Mapping[str, Any]] = {
    # retry_after: seconds (int/float) or an HTTP date string; None sends no header
    FaultKind.RATE_LIMIT: {"retry_after": None},
    # status: 500, 502, 503 or 504
    FaultKind.SERVER_ERROR: {"status": 500, "retry_after": None},
    FaultKind.REQUEST_TIMEOUT: {},
    # status: any; body: the exact (non-JSON) text to send
    FaultKind.MALFORMED_JSON: {"status": 200, "body": None},
    # status: any (200 and 502 are the usual ones)
    FaultKind.HTML_PAGE: {"status": 502},
    FaultKind.EXPIRED_URL: {},
    # at: how many body bytes are sent before the connection ends; None: the
    # middle of the base64 text for a download, half the body elsewhere
    FaultKind.TRUNCATED: {"at": None},
    # offset: where in the base64 text the 4 bad characters go; None: the middle
    FaultKind.BAD_BASE64: {"offset": None},
    # size: the value to report; None: the real size + 1
    FaultKind.WRONG_SIZE: {"size": None},
    FaultKind.HTML_INSTEAD_OF_VIDEO: {},
    # mode: "status" (answer with `status` after creating the task) or "drop"
    # (start a 200 answer and end the connection half-way through its body)
    FaultKind.ACCEPTED_BUT_LOST: {"mode": "status", "status": 500},
}

_SERVER_ERROR_STATUSES = frozenset({500, 502, 503, 504})


@dataclass(slots=True)
class Fault:
    """One queued fault. ``remaining`` is ``None`` for a fault that never runs out."""

    endpoint: Endpoint
    kind: FaultKind
    remaining: int | None
    params: dict[str, Any] = field(default_factory=dict)
    fired: int = 0

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint.value,
            "kind": self.kind.value,
            "remaining": self.remaining,
            "fired": self.fired,
            "params": dict(self.params),
        }


def _check_params(kind: FaultKind, params: Mapping[str, Any]) -> dict[str, Any]:
    allowed = FAULT_PARAMS[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        valid = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"fault {kind.value!r} does not take {unknown}; parameters: {valid}")
    merged = {**allowed, **params}
    if kind is FaultKind.SERVER_ERROR and merged["status"] not in _SERVER_ERROR_STATUSES:
        raise ValueError(f"server_error status must be one of {sorted(_SERVER_ERROR_STATUSES)}")
    if kind in (FaultKind.MALFORMED_JSON, FaultKind.HTML_PAGE):
        status = merged["status"]
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"{kind.value} status must be an HTTP status code")
    if kind is FaultKind.ACCEPTED_BUT_LOST:
        if merged["mode"] not in ("status", "drop"):
            raise ValueError("accepted_but_lost mode must be 'status' or 'drop'")
        if not isinstance(merged["status"], int) or not 400 <= merged["status"] <= 599:
            raise ValueError("accepted_but_lost status must be a 4xx/5xx status code")
    retry_after = merged.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float | str)
    ):
        raise ValueError("retry_after must be seconds (int/float), an HTTP date string, or None")
    for name in ("at", "offset", "size"):
        value = merged.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise ValueError(f"{kind.value} {name} must be a non-negative int or None")
    return merged


class FaultPlan:
    """The queue of faults, per endpoint; safe to program from another thread."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        endpoint: Endpoint | str,
        kind: FaultKind | str,
        times: int | None = 1,
        **params: Any,
    ) -> Fault:
        """Queue a fault; a bad endpoint, kind, combination or parameter is a ``ValueError``."""
        ep = Endpoint(endpoint)
        fk = FaultKind(kind)
        if ep not in FAULT_ENDPOINTS[fk]:
            where = ", ".join(sorted(e.value for e in FAULT_ENDPOINTS[fk]))
            raise ValueError(f"fault {fk.value!r} applies to: {where} (not {ep.value!r})")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError("times must be a positive int, or None for 'every time'")
        fault = Fault(ep, fk, times, _check_params(fk, params))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self, endpoint: Endpoint | str | None = None) -> None:
        """Drop every pending fault (of one endpoint, when given)."""
        ep = None if endpoint is None else Endpoint(endpoint)
        with self._lock:
            self._faults = [f for f in self._faults if ep is not None and f.endpoint is not ep]

    def pending(self, endpoint: Endpoint | str | None = None) -> list[Fault]:
        """The faults that have not run out yet, oldest first."""
        ep = None if endpoint is None else Endpoint(endpoint)
        with self._lock:
            return [f for f in self._faults if ep is None or f.endpoint is ep]

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.pending())

    def __len__(self) -> int:
        return len(self.pending())

    def take(self, endpoint: Endpoint, kinds: frozenset[FaultKind]) -> Fault | None:
        """Use up one firing of the oldest pending fault of ``endpoint`` among ``kinds``."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint is endpoint and fault.kind in kinds:
                    fault.fired += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    if fault.exhausted:
                        self._faults.remove(fault)
                    return fault
        return None
