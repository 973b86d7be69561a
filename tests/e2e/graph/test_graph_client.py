"""GraphClient (``client.graph``) over gRPC and over HTTP against a real `muster serve`."""

from __future__ import annotations

import uuid

import pytest

from muster.client import MusterClient
from muster.errors import FailedPrecondition, Invalid, NotFound
from tests.conftest import ServerProcess


@pytest.fixture(params=["grpc", "http"])
async def client(request: pytest.FixtureRequest, shared_server: ServerProcess) -> MusterClient:
    url = f"grpc://{shared_server.grpc_target}" if request.param == "grpc" else shared_server.http_url
    return await MusterClient.connect(url)


async def test_graph_walkthrough(client: MusterClient) -> None:
    """Every GraphClient method returns the service layer's values, the same over both transports."""
    p = f"c{uuid.uuid4().hex[:6]}-"
    async with client:
        graph = client.graph
        upserted = await graph.upsert_services(
            [
                {"service_id": f"{p}pay", "criticality": "critical", "team": p, "metadata": {"tier": 0}},
                {"service_id": f"{p}log", "criticality": "low", "team": p},
            ]
        )
        assert (upserted.upserted, upserted.discovered) == (2, [])
        upserted = await graph.upsert_dependencies(
            [
                {"source_service_id": f"{p}web", "target_service_id": f"{p}pay"},
                {"source_service_id": f"{p}pay", "target_service_id": f"{p}db", "protocol": "grpc",
                 "timeout_ms": 250, "retry_config": {"n": 3}},
                {"source_service_id": f"{p}pay", "target_service_id": f"{p}log"},
                {"source_service_id": f"{p}db", "target_service_id": f"{p}web", "criticality": "soft"},
            ]
        )
        assert upserted.discovered == [f"{p}db", f"{p}web"]
        services, total = await graph.list_services(team=p)
        assert ([s.service_id for s in services], total) == ([f"{p}log", f"{p}pay"], 2)
        pay = await graph.get_service(f"{p}pay")
        assert (pay.metadata, pay.criticality, pay.discovered, pay.team) == ({"tier": 0}, "critical", False, p)
        deps = await graph.list_dependencies(f"{p}pay")
        assert [(d.target_service_id, d.timeout_ms, d.retry_config) for d in deps] == [
            (f"{p}db", 250, {"n": 3}),
            (f"{p}log", None, None),
        ]
        assert [d.source_service_id for d in await graph.list_dependents(f"{p}pay")] == [f"{p}web"]
        walk = await graph.traverse(f"{p}pay", direction="both", depth=2)
        assert {s: how for s, _, how in walk.services} == {f"{p}db": "both", f"{p}log": "downstream",
                                                          f"{p}web": "both"}
        impact = await graph.impact(f"{p}pay")
        assert [(s, c) for s, _, c in impact.impacted] == [(f"{p}web", "hard"), (f"{p}db", "soft")]
        assert (f"{p}pay", f"{p}log") in {(f.service_id, f.depends_on) for f in await graph.list_findings()}
        report = await graph.detect_cycles()
        alert = next(a for a in report.opened + report.unchanged if a.members[0] == f"{p}db")
        assert alert.cycle_path == [f"{p}db", f"{p}web", f"{p}pay"]
        assert alert.id in [a.id for a in await graph.list_alerts(status="open", limit=1000)]
        acked = await graph.update_alert(alert.id, status="acknowledged", acknowledged_by="ana")
        assert (acked.status, acked.acknowledged_by) == ("acknowledged", "ana")
        with pytest.raises(FailedPrecondition):
            await graph.update_alert(alert.id, status="acknowledged", acknowledged_by="bo")
        resolved = await graph.update_alert(alert.id, status="resolved", resolution_notes="fixed")
        assert (resolved.status, resolved.resolution_notes, resolved.resolved_at is not None) == (
            "resolved", "fixed", True
        )
        assert await graph.mark_stale(1) == 0
        await graph.delete_service(f"{p}db")
        with pytest.raises(NotFound) as caught:
            await graph.get_service(f"{p}db")
        assert caught.value.field == "service_id"


async def test_errors_come_back_as_muster_errors(client: MusterClient) -> None:
    """Server-side and client-side rule violations raise the same MusterError classes on both transports."""
    async with client:
        graph = client.graph
        for call in (
            lambda: graph.traverse("nope-404"),
            lambda: graph.impact("nope-404"),
            lambda: graph.delete_service("nope-404"),
            lambda: graph.list_dependents("nope-404"),
            lambda: graph.update_alert(str(uuid.uuid4()), status="resolved"),
        ):
            with pytest.raises(NotFound):
                await call()
        with pytest.raises(Invalid) as caught:
            await graph.upsert_dependencies([{"source_service_id": "q", "target_service_id": "q"}])
        assert caught.value.field == "dependencies[0]"
        with pytest.raises(Invalid) as caught:
            await graph.traverse("a", depth=11)
        assert caught.value.field == "depth"
        with pytest.raises(Invalid) as caught:
            await graph.mark_stale(0)
        assert caught.value.field == "older_than_hours"


async def test_closed_client_refuses_graph_calls(client: MusterClient) -> None:
    """A closed client's graph operations raise instead of reopening a connection."""
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.graph.list_findings()


async def test_an_id_with_url_characters_names_only_itself(client: MusterClient) -> None:
    """delete_service("victim?really=no") is NotFound on both transports; the service "victim" survives."""
    victim = f"v{uuid.uuid4().hex[:6]}"
    async with client:
        graph = client.graph
        await graph.upsert_services([{"service_id": victim}])
        for tricky in (f"{victim}?really=no", f"{victim}#x", f"{victim}/impact"):
            with pytest.raises(NotFound):
                await graph.delete_service(tricky)
        assert (await graph.get_service(victim)).service_id == victim
