"""Rate limits over real doors: 429 with Retry-After, RESOURCE_EXHAUSTED with RetryInfo, heartbeats untouched."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server allowing 5 writes and 2 expensive reads a second per caller (bursts of 10 and 4)."""
    server = ServerProcess(
        data_dir=tmp_path_factory.mktemp("limited"),
        extra_args=["--rate-limit-writes", "5", "--rate-limit-expensive", "2"],
    ).start()
    yield server
    server.stop()


def test_http_writes_past_the_budget_get_429_with_retry_after(limited_server: ServerProcess) -> None:
    """The eleventh quick registration is refused with 429, Retry-After and Muster's error shape."""
    body = {"name": "burst", "type": "agent", "url": "http://127.0.0.1:1", "heartbeat_interval_s": 60, "ttl_s": 90}
    with httpx.Client(base_url=limited_server.http_url) as http:
        codes = [http.post("/register", json=body) for _ in range(14)]
        refused = [r for r in codes if r.status_code == 429]
        assert refused, [r.status_code for r in codes]
        assert int(refused[0].headers["retry-after"]) >= 1
        assert "rate_limited" == refused[0].json()["error"]
        sid = next(r for r in codes if r.status_code == 200).json()["service_id"]
        beats = [http.put("/heartbeat", json={"service_id": sid}).status_code for _ in range(50)]
        assert {200} == set(beats)  # a service's keep-alive is never throttled
        metrics = http.get("/metrics").text
    assert 'muster_rate_limited_total{door="http",kind="write"}' in metrics


def test_grpc_expensive_reads_past_the_budget_get_resource_exhausted(limited_server: ServerProcess) -> None:
    """Wide discovers past the budget: RESOURCE_EXHAUSTED with a RetryInfo; narrow ones go on."""
    with grpc.insecure_channel(limited_server.grpc_target) as channel:
        stub = pb_grpc.CatalogStub(channel)
        wide = pb.DiscoverRequest(cap=["a"], label=["k=v"], type="model")
        failures = []
        for _ in range(8):
            try:
                stub.Discover(wide, timeout=5)
            except grpc.RpcError as exc:
                failures.append(exc)
        assert failures and grpc.StatusCode.RESOURCE_EXHAUSTED == failures[0].code()
        raw = dict(failures[0].trailing_metadata())["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(raw)
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
        for _ in range(20):
            stub.Discover(pb.DiscoverRequest(cap=["a"]), timeout=5)


def test_watch_streams_per_caller_are_bounded_on_both_doors(server_factory: object) -> None:
    """With 2 streams per caller, a third SSE or gRPC watch is refused (429 / RESOURCE_EXHAUSTED) until one ends."""
    import contextlib
    import time

    from muster._proto.muster.v1 import events_pb2, events_pb2_grpc

    server = server_factory(extra_args=["--max-watchers-per-caller", "2"])  # type: ignore[operator]
    url = server.http_url + "/watch"
    readers = []  # kept referenced: a dropped reader closes its stream
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            opened = stack.enter_context(httpx.stream("GET", url, timeout=10))
            assert 200 == opened.status_code
            readers.append(opened.iter_bytes())
            next(readers[-1])  # the stream is open and started
        third = httpx.get(url, timeout=10)
        assert 429 == third.status_code and "watch streams" in third.json()["message"]
        assert "retry-after" in third.headers
        with grpc.insecure_channel(server.grpc_target) as channel:  # the gRPC door counts its own streams
            stub = events_pb2_grpc.EventsStub(channel)
            held = [stub.Watch(events_pb2.WatchRequest(), timeout=30) for _ in range(2)]
            time.sleep(0.5)  # both handlers are running and hold their slots
            with pytest.raises(grpc.RpcError) as refused:
                next(stub.Watch(events_pb2.WatchRequest(), timeout=10))
            assert grpc.StatusCode.RESOURCE_EXHAUSTED == refused.value.code()
            for call in held:
                call.cancel()
    def status() -> int:
        with httpx.stream("GET", url, timeout=10) as response:
            return response.status_code

    deadline = time.monotonic() + 10
    while status() == 429:  # slots come back when streams close
        assert time.monotonic() < deadline, "closed streams never gave their slots back"
        time.sleep(0.1)


def test_a_heartbeat_stream_past_its_message_rate_is_ended_with_retry_info(server_factory: object) -> None:
    """At 5 messages a second (burst 10), a stream sending 40 at once is ended with RESOURCE_EXHAUSTED after ~10."""
    server = server_factory(extra_args=["--heartbeat-stream-messages-per-s", "5"])  # type: ignore[operator]
    sid = httpx.post(server.http_url + "/register", json={"name": "s", "type": "agent", "url": "http://h:1"}).json()[
        "service_id"
    ]
    with grpc.insecure_channel(server.grpc_target) as channel:
        stream = pb_grpc.CatalogStub(channel).HeartbeatStream(
            iter([pb.HeartbeatBatch(beats=[pb.HeartbeatRequest(service_id=sid, status="ok")])] * 40), timeout=20
        )
        answered = 0
        with pytest.raises(grpc.RpcError) as ended:
            for reply in stream:
                assert "" == reply.replies[0].error_code
                answered += 1
    assert grpc.StatusCode.RESOURCE_EXHAUSTED == ended.value.code()
    assert "messages a second" in (ended.value.details() or "")
    assert 8 <= answered <= 12
