"""Metrics.

Metrics are Prometheus counters and histograms. With ``--doors split`` each
door is its own process, so prometheus-client runs in multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR`` is set by ``muster serve`` before this module is
first imported) and ``/metrics`` aggregates every process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from muster.errors import Invalid, NotFound, PermissionDenied, Unauthenticated

__all__ = [
    "AUTH_REFUSED",
    "BEAT_OUTCOMES",
    "GRPC_LATENCY",
    "GRPC_REQUESTS",
    "HEARTBEATS",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "MONITOR_SWEEPS",
    "RATE_LIMITED",
    "beat_outcome",
    "counting_beat",
    "heartbeat_counters",
    "render_metrics",
]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

HTTP_REQUESTS = Counter(
    "muster_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "muster_http_request_duration_seconds", "HTTP request latency", ["route", "method"], buckets=_BUCKETS
)
GRPC_REQUESTS = Counter("muster_grpc_requests_total", "gRPC calls by method and status code", ["rpc", "code"])
RATE_LIMITED = Counter("muster_rate_limited_total", "Requests refused by a rate limit", ["door", "kind"])
AUTH_REFUSED = Counter(
    "muster_auth_refused_total", "Requests refused at a door for their credentials", ["door", "code"]
)
GRPC_LATENCY = Histogram("muster_grpc_request_duration_seconds", "gRPC call latency", ["rpc"], buckets=_BUCKETS)
HEARTBEATS = Counter(
    "muster_heartbeats_received_total",
    "Heartbeats received, by outcome: accepted, unknown (the service must register again),"
    " refused (invalid) or error (the server could not take it, e.g. the store is unavailable)",
    ["door", "outcome"],
)
BEAT_OUTCOMES = ("accepted", "unknown", "refused", "error")


def heartbeat_counters(door: str) -> dict[str, Any]:
    """The door's heartbeat counter per outcome, bound once (``labels`` costs a lookup per call)."""
    return {outcome: HEARTBEATS.labels(door=door, outcome=outcome) for outcome in BEAT_OUTCOMES}


@contextlib.contextmanager
def counting_beat(counters: dict[str, Any]) -> Iterator[None]:
    """Count the one heartbeat handled inside the block under its outcome (``heartbeat_counters``)."""
    try:
        yield
    except Exception as exc:
        counters[beat_outcome(exc)].inc()
        raise
    counters["accepted"].inc()


def beat_outcome(error: BaseException | None) -> str:
    """How a heartbeat ended, for ``HEARTBEATS``."""
    if error is None:
        return "accepted"
    if isinstance(error, NotFound):
        return "unknown"
    return "refused" if isinstance(error, (Invalid, PermissionDenied, Unauthenticated)) else "error"
MONITOR_SWEEPS = Counter("muster_monitor_sweeps_total", "Heartbeat monitor sweeps", ["outcome"])


class GaugeCollector(Collector):
    """A gauge family computed at scrape time from in-memory state."""

    def __init__(self, name: str, documentation: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        self._name, self._doc, self._label, self._read = name, documentation, label, read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._doc, labels=[self._label])
        for value, amount in sorted(self._read().items()):
            family.add_metric([value], amount)
        yield family


def render_metrics(extra: Iterable[Collector] = ()) -> bytes:
    """The text exposition of every process's metrics plus ``extra`` collectors."""
    from prometheus_client import REGISTRY

    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    scratch = CollectorRegistry()
    for collector in extra:
        scratch.register(collector)
    return generate_latest(registry) + generate_latest(scratch)
