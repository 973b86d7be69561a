"""The shape limits are settings: a server told smaller bounds states them in its contract and enforces them."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from muster._proto.muster.v1 import graph_pb2, graph_pb2_grpc

SMALL = {
    "MUSTER_MAX_LABELS": "2",
    "MUSTER_MAX_CAPS": "1",
    "MUSTER_MAX_BATCH_ITEMS": "3",
    "MUSTER_MAX_PLAN_SYMBOLS": "2",
}


def _body_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def test_configured_shape_limits_are_stated_and_enforced_on_both_doors(server_factory: object) -> None:
    """MUSTER_MAX_LABELS/CAPS/BATCH_ITEMS/PLAN_SYMBOLS change the OpenAPI bounds and both doors' refusals."""
    server = server_factory(extra_env=SMALL)  # type: ignore[operator]
    spec = httpx.get(server.http_url + "/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert 2 == schemas["RegisterInput"]["properties"]["labels"]["maxProperties"]
    assert 1 == schemas["RegisterInput"]["properties"]["caps"]["maxItems"]
    assert 3 == _body_schema(spec, "put", "/graph/services")["properties"]["services"]["maxItems"]
    assert 2 == _body_schema(spec, "post", "/plans/reserve")["properties"]["symbols"]["maxItems"]

    base = {"name": "limits", "type": "agent", "url": "http://h:1"}
    answer = httpx.post(server.http_url + "/register", json={**base, "labels": {"a": "1", "b": "2", "c": "3"}})
    assert 422 == answer.status_code and "labels" == answer.json()["field"]
    answer = httpx.post(server.http_url + "/register", json={**base, "caps": ["x", "y"]})
    assert 422 == answer.status_code and "caps" == answer.json()["field"]
    assert 200 == httpx.post(server.http_url + "/register", json={**base, "labels": {"a": "1", "b": "2"}}).status_code
    items = [{"service_id": f"s{i}", "name": f"s{i}"} for i in range(4)]
    answer = httpx.put(server.http_url + "/graph/services", json={"services": items})
    assert 422 == answer.status_code and "services" == answer.json()["field"]

    with grpc.insecure_channel(server.grpc_target) as channel:
        catalog = pb_grpc.CatalogStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            catalog.Register(pb.RegisterRequest(**base, labels={"a": "1", "b": "2", "c": "3"}), timeout=30)
        assert grpc.StatusCode.INVALID_ARGUMENT == failed.value.code() and "labels" in (failed.value.details() or "")
        graph = graph_pb2_grpc.GraphStub(channel)
        items_pb = [graph_pb2.GraphServiceInput(service_id=f"g{i}") for i in range(4)]
        batch = graph_pb2.UpsertServicesRequest(services=items_pb)
        with pytest.raises(grpc.RpcError) as failed:
            graph.UpsertServices(batch, timeout=30)
        assert grpc.StatusCode.INVALID_ARGUMENT == failed.value.code()
        del batch.services[-1]
        assert 3 == graph.UpsertServices(batch, timeout=30).upserted
