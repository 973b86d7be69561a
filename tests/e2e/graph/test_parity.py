"""Parity: every muster.v1.Graph RPC has one HTTP route and one GraphClient method."""

from __future__ import annotations

import re

from muster._proto.muster.v1 import graph_pb2 as pb
from muster.client.graph import GraphClient
from muster.graph.http import router

# RPC -> HTTP route. The client method is the RPC's name in snake case.
ROUTES = {
    "UpsertServices": "PUT /graph/services",
    "UpsertDependencies": "PUT /graph/dependencies",
    "ListServices": "GET /graph/services",
    "GetService": "GET /graph/services/{service_id}",
    "DeleteService": "DELETE /graph/services/{service_id}",
    "ListDependencies": "GET /graph/services/{service_id}/dependencies",
    "ListDependents": "GET /graph/services/{service_id}/dependents",
    "Traverse": "GET /graph/services/{service_id}/traverse",
    "Impact": "GET /graph/services/{service_id}/impact",
    "DetectCycles": "POST /graph/cycles/detect",
    "ListAlerts": "GET /graph/alerts",
    "UpdateAlert": "PATCH /graph/alerts/{alert_id}",
    "MarkStale": "POST /graph/dependencies/mark-stale",
    "ListFindings": "GET /graph/findings",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_graph_rpc_has_an_http_route_and_a_client_method() -> None:
    """The RPC list, the route table and GraphClient's public methods are the same set of operations."""
    rpcs = set(pb.DESCRIPTOR.services_by_name["Graph"].methods_by_name)
    assert set(ROUTES) == rpcs
    routes = {f"{sorted(r.methods)[0]} {r.path}" for r in router(None).routes}  # type: ignore[arg-type,attr-defined]
    assert set(ROUTES.values()) == routes
    methods = {name for name in vars(GraphClient) if not name.startswith("_")}
    assert {_snake(rpc) for rpc in rpcs} == methods
    assert all(callable(getattr(GraphClient, name)) for name in methods)
