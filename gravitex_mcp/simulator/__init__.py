"""A fake of the Gravitex video API for tests, the demo and ``--simulate``.

``Simulator`` holds the state (tasks, faults, call counters, clock) and its
Starlette ``app``; :func:`simulator_transport` connects an ``httpx2`` client to
it in-process; :func:`serve` puts it on loopback HTTP.
"""

from __future__ import annotations

from .app import Simulator, create_app
from .config import FailureStyle, SimulatorConfig, UrlSignedAt
from .faults import (
    ANSWER_KINDS,
    ARRIVAL_KINDS,
    FAULT_ENDPOINTS,
    FAULT_PARAMS,
    Endpoint,
    Fault,
    FaultKind,
    FaultPlan,
)
from .gateway_fields import GatewayError
from .gateway_rules import MODELS, validate_submit
from .media import iter_base64, iter_mp4, sample_mp4
from .responses import ABORT_EXTENSION, StreamedBody
from .serving import make_server, serve
from .store import STORE_FILENAME, TaskStore
from .tasks import SimTask, TaskState
from .transport import SimulatorTransport, simulator_transport

__all__ = [
    "ABORT_EXTENSION",
    "ANSWER_KINDS",
    "ARRIVAL_KINDS",
    "FAULT_ENDPOINTS",
    "FAULT_PARAMS",
    "MODELS",
    "STORE_FILENAME",
    "Endpoint",
    "FailureStyle",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "GatewayError",
    "SimTask",
    "Simulator",
    "SimulatorConfig",
    "SimulatorTransport",
    "StreamedBody",
    "TaskState",
    "TaskStore",
    "UrlSignedAt",
    "create_app",
    "iter_base64",
    "iter_mp4",
    "make_server",
    "sample_mp4",
    "serve",
    "simulator_transport",
    "validate_submit",
]
