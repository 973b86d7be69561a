"""Token buckets and what counts as a write or an expensive read (fake clock)."""

from __future__ import annotations

import pytest

from muster._proto.muster.v1 import catalog_pb2, events_pb2, graph_pb2
from muster.errors import RateLimited
from muster.limits import RateLimiter, _peer_address, classify_grpc, classify_http


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_grants_its_burst_then_its_rate() -> None:
    """10/s gives a burst of 20, then one more every 0.1 s, and says how long to wait."""
    clock = Clock()
    limiter = RateLimiter({"write": 10}, clock=clock)
    for _ in range(20):
        limiter.check("alice", "write")
    with pytest.raises(RateLimited) as refused:
        limiter.check("alice", "write")
    assert 0.09 < refused.value.retry_after <= 0.1
    assert 429 == refused.value.http_status
    limiter.check("bob", "write")  # another caller has a budget of its own
    clock.now = 0.1
    limiter.check("alice", "write")
    with pytest.raises(RateLimited):
        limiter.check("alice", "write")
    clock.now = 100.0  # a long pause refills up to the burst, no further
    for _ in range(20):
        limiter.check("alice", "write")
    with pytest.raises(RateLimited):
        limiter.check("alice", "write")


def test_a_rate_of_zero_is_no_limit() -> None:
    """A class with rate 0 (or unknown) is never refused; nor is a request of no class."""
    limiter = RateLimiter({"write": 0, "expensive": 1}, clock=Clock())
    for _ in range(1000):
        limiter.check("x", "write")
        limiter.check("x", None)


def test_http_classes() -> None:
    """Mutations are writes, heartbeats nothing; wide discovers, deep traversals, impact, replays are expensive."""
    assert "write" == classify_http("POST", "/register", {})
    assert classify_http("PUT", "/heartbeat", {}) is None
    assert classify_http("GET", "/discover", {"cap": ["a", "b"]}) is None
    assert "expensive" == classify_http("GET", "/discover", {"cap": ["a", "b"], "type": ["model"]})
    assert classify_http("GET", "/graph/services/{service_id}/traverse", {"depth": ["5"]}) is None
    assert "expensive" == classify_http("GET", "/graph/services/{service_id}/traverse", {"depth": ["10"]})
    assert "expensive" == classify_http("GET", "/graph/services/{service_id}/impact", {})
    assert "expensive" == classify_http("GET", "/watch", {"since": ["0"]})
    assert classify_http("GET", "/watch", {"since": ["4000"]}) is None
    assert classify_http("GET", "/stats", {}) is None


def test_grpc_classes() -> None:
    """The same classes over gRPC, read from the decoded request."""
    writes = frozenset({"/muster.v1.Catalog/Register"})
    assert "write" == classify_grpc("/muster.v1.Catalog/Register", catalog_pb2.RegisterRequest(), writes)
    assert classify_grpc("/muster.v1.Catalog/Heartbeat", catalog_pb2.HeartbeatRequest(), writes) is None
    wide = catalog_pb2.DiscoverRequest(cap=["a"], label=["k=v"], type="model")
    assert "expensive" == classify_grpc("/muster.v1.Catalog/Discover", wide, writes)
    assert classify_grpc("/muster.v1.Catalog/Discover", catalog_pb2.DiscoverRequest(cap=["a"]), writes) is None
    assert "expensive" == classify_grpc("/muster.v1.Graph/Traverse", graph_pb2.TraverseRequest(depth=8), writes)
    assert classify_grpc("/muster.v1.Graph/Traverse", graph_pb2.TraverseRequest(), writes) is None
    assert "expensive" == classify_grpc("/muster.v1.Events/Watch", events_pb2.WatchRequest(since=0), writes)
    assert classify_grpc("/muster.v1.Events/Watch", events_pb2.WatchRequest(), writes) is None


def test_peer_addresses() -> None:
    """gRPC peers name their address without the port, on IPv4 and IPv6."""
    assert "127.0.0.1" == _peer_address("ipv4:127.0.0.1:5000")
    assert "::1" == _peer_address("ipv6:[::1]:5000")
    assert _peer_address("") is None
