"""The server's Prometheus metrics: each defined once, here, on a registry of its own.

A shared module, so any layer may record into the :class:`Metrics` object it is handed
(none is global: each server, and each test, has its own registry). ``prometheus-client``
comes with the ``team`` extra and is imported only when a :class:`Metrics` is made:
:func:`make_metrics` answers ``None`` without it, and every hook takes ``None`` as "off".
``GET /metrics`` (server/http_app.py) serves :meth:`Metrics.exposition`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

logger = logging.getLogger(__name__)

#: Upstream latency buckets, seconds: a query answers in ~0.1 s, a submit in a few,
#: a video download takes up to minutes.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0)

#: What the tasks gauge reads at each scrape: task count per status (the task store's).
TaskCounts = Callable[[], Mapping[str, int]]


class Metrics:
    """Every metric of one server. Record with the attributes; scrape with
    :meth:`exposition`. Counters are this process's; the tasks gauge is read at
    scrape time from ``task_counts`` (the shared store's, when there is one)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tool_calls: Counter = Counter(
            "gravitex_tool_calls",
            "Tool calls, by tool and outcome (ok; refused: answered with isError)",
            ["tool", "outcome"],
            registry=r,
        )
        self.submits: Counter = Counter(
            "gravitex_submits", "Generations the upstream accepted (2xx to a submit)", registry=r
        )
        self.upstream_seconds: Histogram = Histogram(
            "gravitex_upstream_request_seconds",
            "Upstream requests by endpoint: time to the response's headers",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_errors: Counter = Counter(
            "gravitex_upstream_errors",
            "Upstream answers with an error status (4xx, 5xx), by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.saves: Counter = Counter(
            "gravitex_saves",
            "Video saves finished, by outcome (saved, failed)",
            ["outcome"],
            registry=r,
        )
        self.saved_bytes: Counter = Counter(
            "gravitex_saved_bytes", "Bytes of video saved", registry=r
        )
        self.lease_takeovers: Counter = Counter(
            "gravitex_lease_takeovers",
            "Poll or save leases taken over from a replica that stopped renewing them",
            ["lease"],
            registry=r,
        )
        self.database_errors: Counter = Counter(
            "gravitex_database_errors",
            "Task store (database) errors, by operation",
            ["operation"],
            registry=r,
        )
        self.storage_errors: Counter = Counter(
            "gravitex_storage_errors",
            "Video store (storage) errors, by operation",
            ["operation"],
            registry=r,
        )
        #: Set where the task store is opened; the tasks gauge is empty until then.
        self.task_counts: TaskCounts | None = None
        r.register(_TaskGauge(self))

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every metric, and its content type (blocking:
        the tasks gauge reads the task store)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _TaskGauge:
    """``gravitex_tasks{status}``, read from the task store at each scrape."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return []  # read at scrape time only: registering must not query the store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "gravitex_tasks", "Tasks in the task store, by status", labels=["status"]
        )
        counts = self._metrics.task_counts
        if counts is not None:
            try:
                for status, count in sorted(counts().items()):
                    family.add_metric([status], count)
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the store
                logger.warning("metrics: could not count the tasks: %s", exc)
                self._metrics.database_errors.labels("task_counts").inc()
        yield family


def make_metrics() -> Metrics | None:
    """A fresh :class:`Metrics`, or ``None`` when ``prometheus-client`` is not installed."""
    try:
        return Metrics()
    except ImportError:
        return None
