"""The simulator: a Starlette app that behaves like the Gravitex video API.

Routes (as documented upstream, plus the object-store route the non-Sora
results point at, and a control API for out-of-process tests):

* ``POST /v1/video/generations``                  submit a task
* ``GET  /v1/video/generations/{task_id}``        query a task
* ``GET  /v1/video/generations/download?id=...``  Sora only: the mp4 as base64 in JSON (streamed)
* ``GET  /files/{task_id}.mp4?Expires=&Signature=`` signed, expiring link to a non-Sora mp4
* ``/_simulator/state|faults|advance|reset``      control (when ``config.control_routes``)

Time comes from one injected clock plus :meth:`Simulator.advance`; nothing sleeps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import anyio
import anyio.lowlevel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..domain import Family
from . import clips, media
from .config import SimulatorConfig
from .faults import ANSWER_KINDS, ARRIVAL_KINDS, Endpoint, Fault, FaultKind, FaultPlan
from .gateway_fields import GatewayError
from .gateway_rules import validate_submit
from .responses import (
    FILE_REFUSALS,
    JSON_TYPE,
    REFUSAL_STATUS,
    REFUSALS,
    StreamedBody,
    bytes_body,
    corrupted,
    cut_at_of,
    dumps,
    gateway_error,
    html_page,
    json_response,
    request_id,
    xml_error,
)
from .store import TaskStore
from .tasks import SimTask, TaskState, new_task_id, size_from_prompt


class Simulator:
    """The fake upstream: config, clock, tasks, faults and call counters, plus ``app``.

    ``clock`` returns seconds (any epoch, e.g. ``time.monotonic`` or a test's
    ``lambda: 0.0``); :meth:`advance` moves simulated time forward on top of it.
    The signed URLs' ``Expires`` is unix time, anchored once to ``time.time()``.

    ``store`` keeps the tasks (default: in memory). Simulators sharing a
    persistent :class:`TaskStore` see each other's tasks; their clocks must then
    share an epoch (``time.time``, or one fake unix clock in tests), since a
    task's times are stored in clock seconds.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        store: TaskStore | None = None,
    ) -> None:
        self.config = config or SimulatorConfig()
        size = self.config.video_size_bytes
        if size is not None and not media.is_valid_size(size):
            raise ValueError(
                f"video_size_bytes={size} is not a size the simulator can make; "
                f"use {media.sample_size()} or at least {media.normalize_size(size)}"
            )
        self._clock = clock
        self._offset = 0.0
        self._wall_anchor = time.time() - clock()
        self.tasks: TaskStore = store if store is not None else TaskStore()
        self._signing_key = self.config.signing_key or self.tasks.signing_key()
        self._lock = threading.Lock()
        self.faults = FaultPlan()
        self.calls: Counter[str] = Counter()
        self.app = self._build_app()

    # --- time ---------------------------------------------------------------

    def now(self) -> float:
        """Simulated time: the clock plus everything :meth:`advance` added."""
        return self._clock() + self._offset

    def unix_time(self, at: float | None = None) -> float:
        """Unix time of simulated time ``at`` (default: now)."""
        return (self.now() if at is None else at) + self._wall_anchor

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (never backward)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._offset += seconds

    def close(self) -> None:
        """Release the task store's file (a memory store has none)."""
        self.tasks.close()

    # --- tasks --------------------------------------------------------------

    def status(self, task_id: str) -> TaskState:
        """A task's current status (``KeyError`` for an unknown id)."""
        return self.tasks[task_id].status_at(self.now())

    def reset(self) -> None:
        """Forget every task, fault and counter (the clock offset stays)."""
        with self._lock:
            self.tasks.clear()
            self.calls.clear()
        self.faults.clear()

    def _create_task(
        self,
        model: str,
        family: Family,
        prompt: str,
        body: dict[str, Any],
        clip: bytes | None = None,
    ) -> SimTask:
        cfg = self.config
        size = cfg.video_size_bytes
        if cfg.size_marker:
            marked = size_from_prompt(prompt)
            if marked is not None:
                size = marked
        now = self.now()
        with self._lock:
            task = SimTask(
                task_id=new_task_id(family, self.unix_time(now), self.tasks),
                model=model,
                family=family,
                prompt=prompt,
                created_at=now,
                queued_seconds=cfg.queued_seconds,
                processing_seconds=cfg.processing_seconds,
                video_size=media.normalize_size(size, clip),
                fails=bool(cfg.fail_marker) and cfg.fail_marker in prompt,
                error_code=cfg.failure_code,
                error_message=cfg.failure_message,
                body=body,
                clip=clip,
            )
            self.tasks[task.task_id] = task
        return task

    # --- signed file URLs ---------------------------------------------------

    def _signature(self, task_id: str, expires: int) -> str:
        message = f"GET\n/files/{task_id}.mp4\n{expires}".encode()
        digest = hmac.new(self._signing_key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def signed_url(self, task: SimTask, base_url: str) -> str:
        """The expiring link to a finished non-Sora task's mp4 (see ``url_signed_at``)."""
        issued = task.finished_at if self.config.url_signed_at == "completion" else self.now()
        expires = int(self.unix_time(issued) + self.config.url_ttl_seconds)
        base = (self.config.public_base_url or base_url).rstrip("/")
        signature = self._signature(task.task_id, expires)
        return f"{base}/files/{task.task_id}.mp4?Expires={expires}&Signature={signature}"

    # --- the app ------------------------------------------------------------

    def _build_app(self) -> Starlette:
        routes = [
            Route("/v1/video/generations", self._submit, methods=["POST"]),
            Route("/v1/video/generations/download", self._download, methods=["GET"]),
            Route("/v1/video/generations/{task_id}", self._query, methods=["GET"]),
            Route("/files/{filename}", self._file, methods=["GET"]),
        ]
        if self.config.control_routes:
            routes += [
                Route("/_simulator/state", self._control_state, methods=["GET"]),
                Route("/_simulator/faults", self._control_faults, methods=["POST", "DELETE"]),
                Route("/_simulator/advance", self._control_advance, methods=["POST"]),
                Route("/_simulator/reset", self._control_reset, methods=["POST"]),
            ]
        app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_exception},
        )
        app.state.simulator = self
        return app

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        headers = exc.headers if isinstance(exc, HTTPException) and exc.headers else {}
        where = f"{request.method} {request.url.path}"
        error = GatewayError(
            f"Invalid URL ({where})" if status == 404 else f"Method not allowed ({where})",
            code="not_found" if status == 404 else "method_not_allowed",
            status=status,
        )
        return gateway_error(error, headers)

    def _authenticate(self, request: Request) -> GatewayError | None:
        """The reason to refuse the request's key, or ``None``. The key is never echoed."""
        header = request.headers.get("authorization")
        if not header or not header.strip():
            return GatewayError(
                "You didn't provide an API key. Send it in the Authorization header: "
                "'Authorization: Bearer sk-...'.",
                code="missing_api_key",
                status=401,
            )
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return GatewayError(
                "Malformed Authorization header: expected 'Bearer sk-...'.",
                code="invalid_api_key",
                status=401,
            )
        accepted = self.config.api_keys
        if not key.startswith("sk-") or (accepted is not None and key not in accepted):
            return GatewayError("Incorrect API key provided.", code="invalid_api_key", status=401)
        return None

    def _begin(self, endpoint: Endpoint, request: Request) -> Response | None:
        """Count the call, check the key (not for signed files), fire an arrival fault:
        a response to send, or None."""
        with self._lock:
            self.calls[endpoint.value] += 1
        refusal = None if endpoint is Endpoint.FILE else self._authenticate(request)
        if refusal is not None:
            return gateway_error(refusal, {"WWW-Authenticate": "Bearer"})
        fault = self.faults.take(endpoint, ARRIVAL_KINDS)
        return None if fault is None else self._arrival_response(fault)

    def _arrival_response(self, fault: Fault) -> Response:
        kind, params = fault.kind, fault.params
        if kind in REFUSALS:
            status = REFUSAL_STATUS.get(kind) or int(params["status"])
            if fault.endpoint is Endpoint.FILE:  # the object store answers in XML
                response = xml_error(status, *FILE_REFUSALS[kind])
            else:
                message, code, error_type = REFUSALS[kind]
                code = code or HTTPStatus(status).phrase.lower().replace(" ", "_")
                error = GatewayError(message, code=code, status=status, error_type=error_type)
                response = gateway_error(error)
            if params.get("retry_after") is not None:
                response.headers["Retry-After"] = str(params["retry_after"])
            return response
        if kind is FaultKind.MALFORMED_JSON:
            body = params.get("body")
            text = body if isinstance(body, str) else '{"status": "queued", "format": "mp4", '
            return Response(
                text,
                status_code=int(params["status"]),
                media_type=JSON_TYPE,
                headers={"X-Request-Id": request_id()},
            )
        if kind is FaultKind.HTML_PAGE:
            return html_page(int(params["status"]))
        if kind is FaultKind.EXPIRED_URL:
            return xml_error(403, "AccessDenied", "Request has expired.")
        raise AssertionError(f"not an arrival fault: {kind}")  # pragma: no cover

    # --- submit -------------------------------------------------------------

    async def _submit(self, request: Request) -> Response:
        early = self._begin(Endpoint.SUBMIT, request)
        if early is not None:
            return early
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return gateway_error(
                GatewayError(
                    "We could not parse the JSON body of your request. Send valid JSON.",
                    code="invalid_json",
                )
            )
        try:
            accepted = validate_submit(body, strict=self.config.strict_fields)
        except GatewayError as error:
            return gateway_error(error)
        clip = await self._clip_for(accepted.rule.family, accepted.prompt, body)
        task = self._create_task(
            accepted.rule.id, accepted.rule.family, accepted.prompt, body, clip
        )
        answer = dumps({"task_id": task.task_id, "status": "submitted", "format": "mp4"})
        fault = self.faults.take(Endpoint.SUBMIT, ANSWER_KINDS)
        if fault is not None and fault.kind is FaultKind.ACCEPTED_BUT_LOST:
            if fault.params["mode"] == "drop":
                return bytes_body(answer, media_type=JSON_TYPE, cut_at=0)
            status = int(fault.params["status"])
            return gateway_error(
                GatewayError(
                    "Upstream request failed.",
                    code="upstream_error",
                    status=status,
                    error_type="server_error",
                )
            )
        return bytes_body(answer, media_type=JSON_TYPE, cut_at=cut_at_of(fault, len(answer) // 2))

    async def _clip_for(self, family: Family, prompt: str, body: dict[str, Any]) -> bytes | None:
        """The real clip a new task's video starts with (None: the sample)."""
        if not self.config.clips:
            return None
        marker = self.config.short_marker
        shape = clips.shape_for(family, body, short=bool(marker) and marker in prompt)
        # Encoding blocks for tens of milliseconds the first time a shape is asked for.
        return await anyio.to_thread.run_sync(clips.render_clip, shape)

    # --- query --------------------------------------------------------------

    def task_json(self, task: SimTask, base_url: str) -> dict[str, Any]:
        """What the query endpoint says about ``task`` right now."""
        state = task.status_at(self.now())
        out: dict[str, Any] = {"task_id": task.task_id, "status": state, "format": "mp4"}
        if state == "succeeded" and task.family is not Family.SORA:
            out["url"] = self.signed_url(task, base_url)
        if state == "failed":
            style = self.config.failure_style
            if style in ("error", "both"):
                out["error"] = {"code": task.error_code, "message": task.error_message}
            if style in ("metadata", "both"):
                out["metadata"] = {
                    "output": {"code": task.error_code, "message": task.error_message}
                }
        return out

    def _unknown_task(self, task_id: str) -> Response:
        return gateway_error(
            GatewayError(
                f"Task {task_id!r} not found.", code="task_not_found", param="task_id", status=404
            )
        )

    async def _query(self, request: Request) -> Response:
        early = self._begin(Endpoint.QUERY, request)
        if early is not None:
            return early
        task_id = request.path_params["task_id"]
        task = self.tasks.get(task_id)
        if task is None:
            return self._unknown_task(task_id)
        answer = dumps(self.task_json(task, str(request.base_url)))
        fault = self.faults.take(Endpoint.QUERY, ANSWER_KINDS)
        return bytes_body(answer, media_type=JSON_TYPE, cut_at=cut_at_of(fault, len(answer) // 2))

    # --- download (Sora) ----------------------------------------------------

    async def _download(self, request: Request) -> Response:
        early = self._begin(Endpoint.DOWNLOAD, request)
        if early is not None:
            return early
        task_id = request.query_params.get("id")
        if not task_id:
            return gateway_error(
                GatewayError(
                    "Missing required parameter: 'id'.",
                    code="missing_required_parameter",
                    param="id",
                )
            )
        task = self.tasks.get(task_id)
        if task is None:
            return self._unknown_task(task_id)
        if task.family is not Family.SORA:
            return gateway_error(
                GatewayError(
                    f"The download endpoint only serves Sora 2 videos; model {task.model!r} "
                    "results are fetched from the 'url' of the task query.",
                    code="download_not_supported",
                    param="id",
                )
            )
        state = task.status_at(self.now())
        if state != "succeeded":
            reason = (
                f"Video generation failed: {task.error_message}"
                if state == "failed"
                else f"Video is not ready yet (status: {state})."
            )
            return gateway_error(GatewayError(reason, code=f"task_{state}", param="id"))
        fault = self.faults.take(Endpoint.DOWNLOAD, ANSWER_KINDS)
        return self._download_body(task, fault)

    def _download_body(self, task: SimTask, fault: Fault | None) -> StreamedBody:
        size = task.video_size
        chunk = self.config.chunk_bytes
        kind = fault.kind if fault is not None else None
        params = fault.params if fault is not None else {}
        reported = size
        if kind is FaultKind.WRONG_SIZE:
            reported = size + 1 if params["size"] is None else int(params["size"])
        b64_length = media.base64_length(size)
        corrupt_at: int | None = None
        if kind is FaultKind.BAD_BASE64:
            wanted = b64_length // 2 if params["offset"] is None else int(params["offset"])
            corrupt_at = max(0, min(wanted, b64_length - 4)) // 4 * 4
        task_id = json.dumps(task.task_id)
        prefix = (
            f'{{"success": true, "generation_id": {task_id}, "task_id": {task_id}, '
            f'"format": "mp4", "size": {reported}, "base64": "'
        ).encode()
        middle = b'", "data_url": "data:video/mp4;base64,'
        suffix = b'"}'
        length = len(prefix) + b64_length + len(middle) + b64_length + len(suffix)

        def chunks() -> Iterator[bytes]:
            yield prefix
            yield from corrupted(media.iter_base64(size, chunk, task.clip), corrupt_at)
            yield middle
            yield from corrupted(media.iter_base64(size, chunk, task.clip), corrupt_at)
            yield suffix

        return StreamedBody(
            chunks(),
            length=length,
            media_type=JSON_TYPE,
            headers={"X-Request-Id": request_id()},
            cut_at=cut_at_of(fault, len(prefix) + b64_length // 2),
        )

    # --- signed files (non-Sora) --------------------------------------------

    async def _file(self, request: Request) -> Response:
        early = self._begin(Endpoint.FILE, request)
        if early is not None:
            return early
        if self.config.reject_authorization_on_files and "authorization" in request.headers:
            return xml_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the signature query parameters or "
                "the Authorization header should be specified.",
            )
        filename: str = request.path_params["filename"]
        expires_raw = request.query_params.get("Expires")
        signature = request.query_params.get("Signature")
        if not expires_raw or not signature:
            return xml_error(
                403, "AccessDenied", "Anonymous access is forbidden for this operation."
            )
        task_id = filename.removesuffix(".mp4")
        try:
            expires = int(expires_raw)
        except ValueError:
            expires = -1
        expected = self._signature(task_id, expires)
        if (
            not filename.endswith(".mp4")
            or expires < 0
            or not hmac.compare_digest(expected, signature)
        ):
            return xml_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self.unix_time() > expires:
            return xml_error(403, "AccessDenied", "Request has expired.")
        task = self.tasks.get(task_id)
        if task is None or task.family is Family.SORA or task.status_at(self.now()) != "succeeded":
            return xml_error(404, "NoSuchKey", "The specified key does not exist.")
        size = task.video_size
        headers = {"X-Request-Id": request_id(), "ETag": f'"{task_id}"'}
        if request.method == "HEAD":
            return Response(
                status_code=200,
                media_type="video/mp4",
                headers={**headers, "Content-Length": str(size)},
            )
        answer = self.faults.take(Endpoint.FILE, ANSWER_KINDS)
        if answer is not None and answer.kind is FaultKind.HTML_INSTEAD_OF_VIDEO:
            return Response(
                "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
                "<body><p>Checking your browser before accessing the file.</p></body></html>",
                status_code=200,
                media_type="text/html",
            )
        return StreamedBody(
            media.iter_mp4(size, self.config.chunk_bytes, task.clip),
            length=size,
            media_type="video/mp4",
            headers=headers,
            cut_at=cut_at_of(answer, size // 2),
        )

    # --- control ------------------------------------------------------------

    def state_json(self) -> dict[str, Any]:
        """The simulator's state as JSON-able data (also ``GET /_simulator/state``)."""
        now = self.now()
        return {
            "now": now,
            "unix_time": self.unix_time(now),
            "calls": dict(self.calls),
            "tasks": [
                {
                    "task_id": t.task_id,
                    "model": t.model,
                    "family": t.family.value,
                    "status": t.status_at(now),
                    "video_size": t.video_size,
                    "created_at": t.created_at,
                    "finished_at": t.finished_at,
                }
                for t in list(self.tasks.values())
            ],
            "faults": [f.to_json() for f in self.faults.pending()],
        }

    async def _control_state(self, request: Request) -> Response:
        return json_response(self.state_json())

    async def _control_json(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        data = json.loads(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    async def _control_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            endpoint = request.query_params.get("endpoint")
            try:
                self.faults.clear(endpoint)
            except ValueError as exc:
                return json_response({"error": {"message": str(exc)}}, 400)
            return json_response({"faults": [f.to_json() for f in self.faults.pending()]})
        try:
            data = await self._control_json(request)
            params = data.get("params") or {}
            if not isinstance(params, dict):
                raise ValueError("params must be an object")
            fault = self.faults.add(
                data.get("endpoint", ""), data.get("kind", ""), data.get("times", 1), **params
            )
        except (ValueError, TypeError) as exc:
            return json_response({"error": {"message": str(exc)}}, 400)
        return json_response({"fault": fault.to_json()}, 201)

    async def _control_advance(self, request: Request) -> Response:
        try:
            data = await self._control_json(request)
            seconds = data.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise ValueError("seconds must be a number")
            self.advance(float(seconds))
        except ValueError as exc:
            return json_response({"error": {"message": str(exc)}}, 400)
        return json_response({"now": self.now(), "unix_time": self.unix_time()})

    async def _control_reset(self, request: Request) -> Response:
        self.reset()
        return json_response({"reset": True})


def create_app(
    config: SimulatorConfig | None = None, *, clock: Callable[[], float] = time.monotonic
) -> Starlette:
    """A new simulator's app; the :class:`Simulator` is ``app.state.simulator``."""
    return Simulator(config, clock=clock).app
