"""The graph over real HTTP and gRPC against `muster serve` processes (split doors: two processes)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest

from muster._proto.muster.v1 import graph_pb2 as pb
from muster._proto.muster.v1 import graph_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess


def _wait(condition: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _edge(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"source_service_id": source, "target_service_id": target, **extra}


def test_http_walkthrough(shared_server: ServerProcess) -> None:
    """Upsert, list, traverse (all directions), impact, findings, cycles, alerts and staleness over HTTP."""
    p = f"h{uuid.uuid4().hex[:6]}-"
    with httpx.Client(base_url=shared_server.http_url) as http:
        reply = http.put(
            "/graph/services",
            json={
                "services": [
                    {"service_id": f"{p}pay", "criticality": "critical", "team": p, "metadata": {"tier": 0}},
                    {"service_id": f"{p}log", "criticality": "low", "team": p},
                ]
            },
        )
        assert reply.json() == {"upserted": 2, "discovered": []}
        reply = http.put(
            "/graph/dependencies",
            json={
                "dependencies": [
                    _edge(f"{p}web", f"{p}pay"),
                    _edge(f"{p}pay", f"{p}db", protocol="grpc", timeout_ms=250),
                    _edge(f"{p}pay", f"{p}log"),
                    _edge(f"{p}db", f"{p}web", criticality="soft"),
                ]
            },
        )
        assert reply.json() == {"upserted": 4, "discovered": [f"{p}db", f"{p}web"]}
        listed = http.get("/graph/services", params={"team": p}).json()
        assert ([s["service_id"] for s in listed["services"]], listed["total"]) == ([f"{p}log", f"{p}pay"], 2)
        assert http.get(f"/graph/services/{p}pay").json()["metadata"] == {"tier": 0}
        deps = http.get(f"/graph/services/{p}pay/dependencies").json()["dependencies"]
        assert [(d["target_service_id"], d["timeout_ms"]) for d in deps] == [(f"{p}db", 250), (f"{p}log", None)]
        assert [
            d["source_service_id"] for d in http.get(f"/graph/services/{p}pay/dependents").json()["dependents"]
        ] == [f"{p}web"]
        down = http.get(f"/graph/services/{p}pay/traverse", params={"depth": 1}).json()
        assert [(s["service_id"], s["distance"]) for s in down["services"]] == [(f"{p}db", 1), (f"{p}log", 1)]
        both = http.get(f"/graph/services/{p}pay/traverse", params={"direction": "both", "depth": 2}).json()
        assert {s["service_id"]: s["direction"] for s in both["services"]} == {
            f"{p}db": "both",
            f"{p}log": "downstream",
            f"{p}web": "both",
        }
        impact = http.get(f"/graph/services/{p}pay/impact").json()
        assert [(i["service_id"], i["path_criticality"]) for i in impact["impacted"]] == [
            (f"{p}web", "hard"),
            (f"{p}db", "soft"),
        ]
        findings = http.get("/graph/findings").json()["findings"]
        assert {"service_id": f"{p}pay", "depends_on": f"{p}log"}.items() <= next(
            f for f in findings if f["service_id"] == f"{p}pay"
        ).items()
        detected = http.post("/graph/cycles/detect").json()
        alert = next(a for a in detected["opened"] + detected["unchanged"] if a["members"][0] == f"{p}db")
        assert alert["cycle_path"] == [f"{p}db", f"{p}web", f"{p}pay"]
        assert alert["id"] in [a["id"] for a in http.get("/graph/alerts", params={"status": "open"}).json()["alerts"]]
        acked = http.patch(f"/graph/alerts/{alert['id']}", json={"status": "acknowledged", "acknowledged_by": "ana"})
        assert acked.json()["status"] == "acknowledged"
        again = http.patch(f"/graph/alerts/{alert['id']}", json={"status": "acknowledged", "acknowledged_by": "bo"})
        assert (again.status_code, again.json()["error"]) == (409, "failed_precondition")
        assert http.post("/graph/dependencies/mark-stale", params={"older_than_hours": 1}).json()["marked_stale"] == 0
        assert http.delete(f"/graph/services/{p}db").json() == {"service_id": f"{p}db", "deleted": True}
        assert http.get(f"/graph/services/{p}db").status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("PUT", "/graph/dependencies", {"json": {"dependencies": [_edge("a", "a")]}}, "dependencies[0]"),
        (
            "PUT",
            "/graph/dependencies",
            {"json": {"dependencies": [_edge("a", "b", timeout_ms=-5)]}},
            "dependencies[0].timeout_ms",
        ),
        ("PUT", "/graph/dependencies", {"json": {"dependencies": []}}, "dependencies"),
        ("PUT", "/graph/dependencies", {"json": [1, 2]}, "request"),
        (
            "PUT",
            "/graph/services",
            {"json": {"services": [{"service_id": "x", "criticality": "vital"}]}},
            "services[0].criticality",
        ),
        ("PUT", "/graph/services", {"content": b"{not json", "headers": {"content-type": "application/json"}}, None),
        ("GET", "/graph/services/x/traverse", {"params": {"depth": 0}}, "depth"),
        ("GET", "/graph/services/x/traverse", {"params": {"depth": "deep"}}, "depth"),
        ("GET", "/graph/services/x/traverse", {"params": {"direction": "sideways"}}, "direction"),
        ("GET", "/graph/services", {"params": {"limit": 5000}}, "limit"),
        ("GET", "/graph/alerts", {"params": {"status": "sleeping"}}, "status"),
        ("PATCH", "/graph/alerts/not-a-uuid", {"json": {"status": "resolved"}}, "alert_id"),
        ("PATCH", "/graph/alerts/00000000-0000-0000-0000-000000000000", {"json": {"status": "open"}}, "status"),
        ("POST", "/graph/dependencies/mark-stale", {"params": {"older_than_hours": "nan"}}, "older_than_hours"),
        ("POST", "/graph/dependencies/mark-stale", {}, "older_than_hours"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    shared_server: ServerProcess, method: str, path: str, kwargs: dict[str, Any], field: str | None
) -> None:
    """Bad input gets a 422 whose body names the field and the rule; never a 500."""
    reply = httpx.request(method, shared_server.http_url + path, **kwargs)
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["error"] == "invalid_argument"
    if field is not None:
        assert (body["field"], body["message"].startswith(f"{field}: ")) == (field, True)


def test_unknown_service_is_404(shared_server: ServerProcess) -> None:
    """Reads and deletes of a service that does not exist are 404, not empty results."""
    for method, path in [
        ("GET", "/graph/services/nope-404"),
        ("DELETE", "/graph/services/nope-404"),
        ("GET", "/graph/services/nope-404/traverse"),
        ("GET", "/graph/services/nope-404/impact"),
        ("GET", "/graph/services/nope-404/dependents"),
    ]:
        assert httpx.request(method, shared_server.http_url + path).status_code == 404


def test_grpc_walkthrough_and_errors(shared_server: ServerProcess) -> None:
    """Every Graph RPC works over gRPC, written through HTTP's process and read through gRPC's."""
    p = f"g{uuid.uuid4().hex[:6]}-"
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = pb_grpc.GraphStub(channel)
        reply = stub.UpsertServices(
            pb.UpsertServicesRequest(
                services=[
                    pb.GraphServiceInput(service_id=f"{p}a", criticality="critical", metadata_json='{"k": 1}', team=p),
                    pb.GraphServiceInput(service_id=f"{p}z", criticality="low", team=p),
                ]
            )
        )
        assert reply.upserted == 2
        reply = stub.UpsertDependencies(
            pb.UpsertDependenciesRequest(
                dependencies=[
                    pb.DependencyInput(
                        source_service_id=f"{p}a", target_service_id=f"{p}b", retry_config_json='{"n": 3}'
                    ),
                    pb.DependencyInput(source_service_id=f"{p}b", target_service_id=f"{p}a", criticality="degraded"),
                    pb.DependencyInput(
                        source_service_id=f"{p}a",
                        target_service_id=f"{p}z",
                        discovery_source="kubernetes",
                        confidence_score=0.4,
                    ),
                ]
            )
        )
        assert list(reply.discovered) == [f"{p}b"]
        assert stub.GetService(pb.GraphServiceRef(service_id=f"{p}a")).metadata_json == '{"k":1}'
        assert stub.ListServices(pb.ListGraphServicesRequest(team=p)).total == 2
        deps = stub.ListDependencies(pb.EdgesRequest(service_id=f"{p}a")).edges
        assert [(e.target_service_id, e.retry_config_json) for e in deps] == [(f"{p}b", '{"n":3}'), (f"{p}z", "")]
        assert [e.source_service_id for e in stub.ListDependents(pb.EdgesRequest(service_id=f"{p}a")).edges] == [
            f"{p}b"
        ]
        walk = stub.Traverse(pb.TraverseRequest(service_id=f"{p}a", direction="downstream", depth=2))
        assert [(s.service_id, s.distance) for s in walk.services] == [(f"{p}b", 1), (f"{p}z", 1)]
        impact = stub.Impact(pb.GraphServiceRef(service_id=f"{p}a"))
        assert [(i.service_id, i.path_criticality) for i in impact.impacted] == [(f"{p}b", "degraded")]
        assert f"{p}a" in [f.service_id for f in stub.ListFindings(pb.ListFindingsRequest()).findings]
        detected = stub.DetectCycles(pb.DetectCyclesRequest())
        alert = next(a for a in [*detected.opened, *detected.unchanged] if a.members[0] == f"{p}a")
        assert list(alert.cycle_path) == [f"{p}a", f"{p}b"]
        assert alert.id in [a.id for a in stub.ListAlerts(pb.ListCycleAlertsRequest(status="open")).alerts]
        resolved = stub.UpdateAlert(pb.UpdateAlertRequest(id=alert.id, status="resolved", resolution_notes="ok"))
        assert (resolved.status, resolved.resolution_notes) == ("resolved", "ok")
        assert stub.MarkStale(pb.MarkStaleRequest(older_than_hours=24)).marked_stale == 0
        assert stub.DeleteService(pb.GraphServiceRef(service_id=f"{p}b")).deleted
        for call, code in [
            (
                lambda: stub.UpdateAlert(
                    pb.UpdateAlertRequest(id=alert.id, status="acknowledged", acknowledged_by="x")
                ),
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
            (lambda: stub.GetService(pb.GraphServiceRef(service_id=f"{p}b")), grpc.StatusCode.NOT_FOUND),
            (lambda: stub.Traverse(pb.TraverseRequest(service_id=f"{p}a", depth=11)), grpc.StatusCode.INVALID_ARGUMENT),
            (
                lambda: stub.UpsertDependencies(
                    pb.UpsertDependenciesRequest(
                        dependencies=[pb.DependencyInput(source_service_id="q", target_service_id="q")]
                    )
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                lambda: stub.UpsertServices(
                    pb.UpsertServicesRequest(services=[pb.GraphServiceInput(service_id="q", metadata_json="[1]")])
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (lambda: stub.MarkStale(pb.MarkStaleRequest()), grpc.StatusCode.INVALID_ARGUMENT),
            (lambda: stub.ListAlerts(pb.ListCycleAlertsRequest(limit=0)), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == code


def test_both_doors_see_one_graph(shared_server: ServerProcess) -> None:
    """A write through HTTP is visible to traversal through gRPC (another process) via the event log."""
    p = f"x{uuid.uuid4().hex[:6]}-"
    httpx.put(f"{shared_server.http_url}/graph/dependencies", json={"dependencies": [_edge(f"{p}a", f"{p}b")]})
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = pb_grpc.GraphStub(channel)
        walk = stub.Traverse(pb.TraverseRequest(service_id=f"{p}a"))
        assert [s.service_id for s in walk.services] == [f"{p}b"]
        httpx.put(f"{shared_server.http_url}/graph/dependencies", json={"dependencies": [_edge(f"{p}b", f"{p}c")]})
        _wait(lambda: len(stub.Traverse(pb.TraverseRequest(service_id=f"{p}a")).services) == 2)


def test_service_down_alert_lists_impacted_graph_services(server_factory: Any) -> None:
    """A catalog instance named like a graph service goes silent: its service_down alert lists who is impacted."""
    server = server_factory()
    http = httpx.Client(base_url=server.http_url)
    http.put(
        "/graph/dependencies",
        json={
            "dependencies": [
                _edge("checkout", "payments"),
                _edge("web", "checkout"),
                _edge("reports", "payments", criticality="soft"),
            ]
        },
    )
    registration = {
        "name": "payments",
        "type": "service",
        "url": "http://127.0.0.1:9",
        "heartbeat_interval_s": 1,
        "ttl_s": 1,
    }
    sid = http.post("/register", json=registration).json()["service_id"]
    alert = _wait(
        lambda: next(
            (
                a
                for a in http.get("/alerts").json()["alerts"]
                if a["service_id"] == sid and a["alert_type"] == "service_down"
            ),
            None,
        )
    )
    assert alert["impacted_services"] == ["checkout", "reports", "web"]


def test_postgres_server_serves_the_graph(server_factory: Any, pg_server_url: str) -> None:
    """On PostgreSQL, both door processes share the graph through the event log and NOTIFY."""
    server = server_factory(database_url=pg_server_url)
    httpx.put(f"{server.http_url}/graph/dependencies", json={"dependencies": [_edge("a", "b"), _edge("b", "a")]})
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GraphStub(channel)
        detected = _wait(lambda: stub.DetectCycles(pb.DetectCyclesRequest()).components == 1)
        assert detected
        alerts = httpx.get(f"{server.http_url}/graph/alerts", params={"status": "open"}).json()["alerts"]
        assert [a["cycle_path"] for a in alerts] == [["a", "b"]]
