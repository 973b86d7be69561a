"""The symbol registry's metrics, named as the SRM contract names them."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Histogram

__all__ = ["LOOKUP_LATENCY_MS", "RESERVES", "reserves_with_status"]

# status: reserved (granted), conflict (held by another lease), invalid (rejected input).
RESERVES = Counter("srm_reserve_total", "Reserve calls by outcome", ["status"])
LOOKUP_LATENCY_MS = Histogram(
    "srm_lookup_latency_ms",
    "Lookup latency inside the server, in milliseconds",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 100.0),
)


@functools.cache
def reserves_with_status(status: str) -> Counter:
    """The ``srm_reserve_total`` child for ``status`` (looked up once, not on every call)."""
    return RESERVES.labels(status=status)
