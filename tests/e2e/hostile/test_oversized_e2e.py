"""Oversized requests get their documented error on both doors, and the doors' memory stays bounded."""

from __future__ import annotations

import grpc
import httpx
import psutil
import pytest

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from muster._proto.muster.v1 import graph_pb2, graph_pb2_grpc
from tests.conftest import ServerProcess


def _rss(server: ServerProcess) -> int:
    assert server.process is not None
    parent = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])


def _refused(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failed:
        call(request, timeout=60)  # type: ignore[operator]
    return failed.value


def test_huge_labels_names_and_batches_are_refused_with_bounded_memory(server_factory: object) -> None:
    """100k labels, a 1 MB name, 10,001 graph items: INVALID_ARGUMENT / 413, 10,000 items fine, memory bounded."""
    server = server_factory()  # type: ignore[operator]
    before = _rss(server)
    with grpc.insecure_channel(server.grpc_target, options=[("grpc.max_send_message_length", 16 << 20)]) as channel:
        catalog = pb_grpc.CatalogStub(channel)
        labels = {f"k{i}": "v" for i in range(100_000)}
        error = _refused(catalog.Register, pb.RegisterRequest(name="x", type="agent", url="http://h:1", labels=labels))
        assert grpc.StatusCode.INVALID_ARGUMENT == error.code() and "labels" in (error.details() or "")
        error = _refused(catalog.Register, pb.RegisterRequest(name="n" * 1_000_000, type="agent", url="http://h:1"))
        assert grpc.StatusCode.INVALID_ARGUMENT == error.code() and "name" in (error.details() or "")
        graph = graph_pb2_grpc.GraphStub(channel)
        too_many = graph_pb2.UpsertServicesRequest(
            services=[graph_pb2.GraphServiceInput(service_id=f"s{i}") for i in range(10_001)]
        )
        assert grpc.StatusCode.INVALID_ARGUMENT == _refused(graph.UpsertServices, too_many).code()
        del too_many.services[-1]
        assert 10_000 == graph.UpsertServices(too_many, timeout=120).upserted
        error = _refused(catalog.Register, pb.RegisterRequest(name="x", type="agent", url="h" * (9 << 20)))
        assert grpc.StatusCode.RESOURCE_EXHAUSTED == error.code()  # over the 8 MiB message limit
    body = {"name": "x", "type": "agent", "url": "http://h:1", "labels": {f"k{i}": "v" for i in range(100_000)}}
    assert 413 == httpx.post(server.http_url + "/register", json=body).status_code
    assert 413 == httpx.post(server.http_url + "/register", json={"name": "n" * 2_000_000}).status_code
    grown = _rss(server) - before
    assert grown < 300 * 2**20, f"the doors grew by {grown / 2**20:.0f} MiB"
