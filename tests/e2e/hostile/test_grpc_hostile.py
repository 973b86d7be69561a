"""Hostile gRPC input: undecodable frames, invalid UTF-8, out-of-range values: never INTERNAL or UNKNOWN."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import descriptor_pool

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from muster._proto.muster.v1 import events_pb2 as events_pb
from muster.client import MusterClient
from muster.errors import Invalid, error_for_grpc_code, trailing_metadata_of
from tests.conftest import ServerProcess
from tests.e2e.identity import grpc_util  # loads every Muster service into the descriptor pool

_SERVICES = ("muster.v1.Catalog", "muster.v1.Events", "muster.v1.Graph", "srm.SymbolRegistry", "muster.v1.Tokens")
_METHODS = [
    (f"/{name}/{m.name}", m.client_streaming, m.server_streaming)
    for name in _SERVICES
    for m in descriptor_pool.Default().FindServiceByName(name).methods
]
assert grpc_util  # imported for its side effect

# Not a message at all: a field tag with wire type 7, which no protobuf accepts.
_GARBAGE = b"\x0f\xff\xff\xff"


def _raw(
    channel: grpc.Channel, method: str, client_streaming: bool, server_streaming: bool, payload: bytes
) -> grpc.RpcError:
    kind = ("stream" if client_streaming else "unary") + "_" + ("stream" if server_streaming else "unary")
    call = getattr(channel, kind)(method, request_serializer=None, response_deserializer=None)
    request = iter([payload]) if client_streaming else payload
    with pytest.raises(grpc.RpcError) as failed:
        reply = call(request, timeout=10)
        if server_streaming:
            next(iter(reply))
    return failed.value


@pytest.mark.parametrize(("method", "client_streaming", "server_streaming"), _METHODS, ids=[m[0] for m in _METHODS])
def test_undecodable_requests_are_invalid_argument(
    shared_server: ServerProcess, method: str, client_streaming: bool, server_streaming: bool
) -> None:
    """Bytes that are not the request message get INVALID_ARGUMENT naming the message type, on every method."""
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        error = _raw(channel, method, client_streaming, server_streaming, _GARBAGE)
    assert grpc.StatusCode.INVALID_ARGUMENT == error.code(), error.details()
    assert "is not a valid" in (error.details() or "")
    rebuilt = error_for_grpc_code(error.code(), error.details(), trailing_metadata_of(error))
    assert isinstance(rebuilt, Invalid) and "request" == rebuilt.field


def test_heartbeat_stream_with_invalid_utf8_is_invalid_argument(shared_server: ServerProcess) -> None:
    """A HeartbeatStream message whose service_id is not UTF-8 ends the stream with INVALID_ARGUMENT."""
    beat = b"\x0a\x03\xff\xfe\xfd"  # HeartbeatRequest.service_id = three bytes that are not UTF-8
    batch = b"\x0a" + bytes([len(beat)]) + beat  # HeartbeatBatch.beats = [that]
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        error = _raw(channel, "/muster.v1.Catalog/HeartbeatStream", True, True, batch)
    assert grpc.StatusCode.INVALID_ARGUMENT == error.code(), error.details()


def test_non_ascii_label_key_is_refused_with_its_field_in_the_rich_status(shared_server: ServerProcess) -> None:
    """A label key outside the allowed characters: INVALID_ARGUMENT, the field in google.rpc.BadRequest."""

    async def main() -> None:
        async with await MusterClient.connect(f"grpc://{shared_server.grpc_target}") as client:
            with pytest.raises(Invalid) as refused:
                await client.register(name="x", type="agent", url="http://127.0.0.1:1", labels={"z\u00f6ne": "eu"})
            assert refused.value.field is not None and refused.value.field.startswith("labels")

    asyncio.run(main())
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = pb_grpc.CatalogStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Register(pb.RegisterRequest(name="x", type="agent", url="http://127.0.0.1:1",
                                              labels={"z\u00f6ne": "eu"}), timeout=10)
    assert grpc.StatusCode.INVALID_ARGUMENT == failed.value.code()
    assert all(key != "muster-error-field" for key, _ in failed.value.trailing_metadata() or ())


def test_out_of_range_timestamp_is_invalid_argument(shared_server: ServerProcess) -> None:
    """ListAlerts with a Timestamp beyond year 9999 names `since`, instead of failing inside."""
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = pb_grpc.CatalogStub(channel)
        request = pb.ListAlertsRequest()
        request.since.seconds = 2**62
        with pytest.raises(grpc.RpcError) as failed:
            stub.ListAlerts(request, timeout=10)
    assert grpc.StatusCode.INVALID_ARGUMENT == failed.value.code()
    assert "since" in (failed.value.details() or "")


def test_watch_prefixes_have_the_same_limits_on_both_doors(shared_server: ServerProcess) -> None:
    """A 60 KB kind prefix is INVALID_ARGUMENT over gRPC and 422 over HTTP, as is a 1 KB subject prefix."""
    import httpx

    from muster._proto.muster.v1 import events_pb2_grpc

    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = events_pb2_grpc.EventsStub(channel)
        for request in (events_pb.WatchRequest(since=0, kind_prefix="k" * 60_000),
                        events_pb.WatchRequest(since=0, subject_prefix="s" * 1_000)):
            with pytest.raises(grpc.RpcError) as failed:
                next(iter(stub.Watch(request, timeout=10)))
            assert grpc.StatusCode.INVALID_ARGUMENT == failed.value.code()
    for params in ({"kind": "k" * 60_000}, {"subject": "s" * 1_000}):
        assert 422 == httpx.get(shared_server.http_url + "/watch", params=params).status_code


def test_alerts_since_that_overflows_utc_is_422(shared_server: ServerProcess) -> None:
    """`since=0001-01-01T00:00:00+01:00` (before year 1 in UTC) is refused naming `since`, not a 500."""
    import httpx

    reply = httpx.get(shared_server.http_url + "/alerts", params={"since": "0001-01-01T00:00:00+01:00"})
    assert 422 == reply.status_code
    assert "since" == reply.json()["field"]
    assert 200 == httpx.get(shared_server.http_url + "/alerts", params={"since": "2026-01-01T00:00:00Z"}).status_code


async def test_bridge_refuses_undecodable_requests_as_invalid_argument() -> None:
    """The bridge worker answers bytes that are not its request message with INVALID_ARGUMENT, on every method."""
    from muster._proto.snakepit.bridge import snakepit_bridge_pb2
    from muster.bridge import Worker
    from muster.bridge.examples import ExampleAdapter

    service = snakepit_bridge_pb2.DESCRIPTOR.services_by_name["SnakepitBridge"]
    async with Worker(ExampleAdapter) as worker:
        target = f"127.0.0.1:{worker.port}"

        def probe() -> list[tuple[str, grpc.StatusCode]]:
            with grpc.insecure_channel(target) as channel:
                return [
                    (m.name, _raw(channel, f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming,
                                  _GARBAGE).code())
                    for m in service.methods
                ]

        codes = await asyncio.to_thread(probe)
    assert [(name, grpc.StatusCode.INVALID_ARGUMENT) for name, _ in codes] == codes
