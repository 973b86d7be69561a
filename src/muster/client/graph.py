"""The graph operations of ``MusterClient``, over either transport: ``client.graph``.

    async with await MusterClient.connect("grpc://127.0.0.1:9090") as client:
        await client.graph.upsert_dependencies([{"source_service_id": "web", "target_service_id": "db"}])
        walk = await client.graph.traverse("web", depth=3)
        report = await client.graph.detect_cycles()

One method per ``muster.v1.Graph`` RPC, named after it in snake case, each
with an HTTP twin under ``/graph``. Inputs are validated before they leave the
process with the models the server uses; replies come back as the service
layer's own values (``Traversal``, ``Impact``, ``CycleReport``, records), and
server errors as the same ``MusterError`` subclasses whichever transport
carried them.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import orjson

from muster._proto.muster.v1 import graph_pb2 as pb
from muster._proto.muster.v1 import graph_pb2_grpc as pb_grpc
from muster.client._convert import parse_ts
from muster.client._transport import GrpcTransport, HttpTransport
from muster.errors import Invalid
from muster.graph.algorithms import Impact, Inversion, Traversal
from muster.graph.model import (
    MAX_LIST_LIMIT,
    AlertUpdateInput,
    CycleAlertRecord,
    DependencyRecord,
    GraphServiceRecord,
    ListServicesQuery,
    TraverseQuery,
    UpsertDependenciesInput,
    UpsertServicesInput,
    require_existable,
)
from muster.graph.service import CycleReport, Upserted
from muster.grpc.common import field_or_none, timestamp_or_none
from muster.validation import parse

if TYPE_CHECKING:
    from muster.client import MusterClient

__all__ = ["GraphClient"]

Item = Mapping[str, Any]


class GraphClient:
    """``client.graph``: the dependency graph's operations over the client's transport."""

    def __init__(self, client: MusterClient) -> None:
        self._client = client

    def _door(self) -> _GraphDoor:
        transport = self._client._check_open()  # a closed client refuses reuse
        door = _doors.get(transport)
        if door is None:
            if isinstance(transport, GrpcTransport):
                door = _GrpcGraph(transport)
            elif isinstance(transport, HttpTransport):
                door = _HttpGraph(transport)
            else:
                raise TypeError(f"no graph door for {type(transport).__name__}")
            _doors[transport] = door
        return door

    # -- writes ------------------------------------------------------------------------

    async def upsert_services(self, services: Sequence[Item]) -> Upserted:
        """Create or replace services (up to MUSTER_MAX_BATCH_ITEMS, 10,000 by default); idempotent."""
        return await self._door().upsert_services(parse(UpsertServicesInput, {"services": list(services)}))

    async def upsert_dependencies(self, dependencies: Sequence[Item]) -> Upserted:
        """Create or update edges (up to MUSTER_MAX_BATCH_ITEMS a call); unknown services return in ``discovered``."""
        data = parse(UpsertDependenciesInput, {"dependencies": list(dependencies)})
        return await self._door().upsert_dependencies(data)

    async def delete_service(self, service_id: str) -> None:
        """Delete a service and every edge touching it (``NotFound`` if it does not exist)."""
        await self._door().delete_service(_service_id(service_id))

    async def mark_stale(self, older_than_hours: float) -> int:
        """Mark edges not observed for ``older_than_hours`` stale; return how many."""
        return await self._door().mark_stale(float(older_than_hours))

    # -- reads ---------------------------------------------------------------------------

    async def list_services(
        self, *, team: str | None = None, criticality: str | None = None, limit: int = 100, offset: int = 0
    ) -> tuple[list[GraphServiceRecord], int]:
        """A page of services by service_id, and the total matching the filters."""
        query = parse(ListServicesQuery, {"team": team, "criticality": criticality, "limit": limit, "offset": offset})
        return await self._door().list_services(query)

    async def get_service(self, service_id: str) -> GraphServiceRecord:
        return await self._door().get_service(_service_id(service_id))

    async def list_dependencies(self, service_id: str, *, include_stale: bool = False) -> list[DependencyRecord]:
        """What the service depends on: its outgoing edges."""
        return await self._door().edges(_service_id(service_id), True, include_stale)

    async def list_dependents(self, service_id: str, *, include_stale: bool = False) -> list[DependencyRecord]:
        """What depends on the service: its incoming edges."""
        return await self._door().edges(_service_id(service_id), False, include_stale)

    async def traverse(
        self, service_id: str, *, direction: str = "downstream", depth: int = 3, include_stale: bool = False
    ) -> Traversal:
        """Services within ``depth`` hops; ``both`` is the union of the upstream and downstream traversals."""
        query = parse(
            TraverseQuery,
            {"service_id": service_id, "direction": direction, "depth": depth, "include_stale": include_stale},
        )
        return await self._door().traverse(query)

    async def impact(self, service_id: str) -> Impact:
        """Everything that depends on the service, transitively, with the weakest-path criticality."""
        return await self._door().impact(_service_id(service_id))

    async def list_findings(self) -> list[Inversion]:
        """Criticality inversions: critical services with hard edges to low ones."""
        return await self._door().list_findings()

    # -- cycle alerts ----------------------------------------------------------------------

    async def detect_cycles(self) -> CycleReport:
        """One alert per strongly connected component of the live graph."""
        return await self._door().detect_cycles()

    async def list_alerts(
        self, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[CycleAlertRecord]:
        """Circular dependency alerts, newest first."""
        if status is not None and status not in ("open", "acknowledged", "resolved"):
            raise Invalid("status", "must be one of open, acknowledged, resolved")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise Invalid("limit", f"must be between 1 and {MAX_LIST_LIMIT}")
        if offset < 0:
            raise Invalid("offset", "must be >= 0")
        return await self._door().list_alerts(status, limit, offset)

    async def update_alert(
        self,
        alert_id: str,
        *,
        status: str,
        acknowledged_by: str | None = None,
        resolution_notes: str | None = None,
    ) -> CycleAlertRecord:
        """Acknowledge (who) or resolve (with notes) an alert: open → acknowledged → resolved."""
        data = parse(
            AlertUpdateInput,
            {"status": status, "acknowledged_by": acknowledged_by, "resolution_notes": resolution_notes},
        )
        if not alert_id:
            raise Invalid("alert_id", "must not be empty")
        return await self._door().update_alert(alert_id, data)


def _service_id(service_id: str) -> str:
    """The id, checked as the server would: an id no service can have is NotFound on either transport.

    (Over HTTP it would otherwise change the URL it travels in: ``a?x`` or ``a/impact``.)
    """
    if not service_id:
        raise Invalid("service_id", "must not be empty")
    require_existable(service_id)
    return service_id


class _GraphDoor(Protocol):
    async def upsert_services(self, data: UpsertServicesInput) -> Upserted: ...
    async def upsert_dependencies(self, data: UpsertDependenciesInput) -> Upserted: ...
    async def delete_service(self, service_id: str) -> None: ...
    async def mark_stale(self, older_than_hours: float) -> int: ...
    async def list_services(self, query: ListServicesQuery) -> tuple[list[GraphServiceRecord], int]: ...
    async def get_service(self, service_id: str) -> GraphServiceRecord: ...
    async def edges(self, service_id: str, outgoing: bool, include_stale: bool) -> list[DependencyRecord]: ...
    async def traverse(self, query: TraverseQuery) -> Traversal: ...
    async def impact(self, service_id: str) -> Impact: ...
    async def list_findings(self) -> list[Inversion]: ...
    async def detect_cycles(self) -> CycleReport: ...
    async def list_alerts(self, status: str | None, limit: int, offset: int) -> list[CycleAlertRecord]: ...
    async def update_alert(self, alert_id: str, data: AlertUpdateInput) -> CycleAlertRecord: ...


# One door per transport, dropped with it.
_doors: weakref.WeakKeyDictionary[Any, _GraphDoor] = weakref.WeakKeyDictionary()


# -- HTTP ------------------------------------------------------------------------------------


def _ts(value: Any) -> datetime:
    moment = parse_ts(value)
    assert moment is not None
    return moment


def _service_from_dict(data: dict[str, Any]) -> GraphServiceRecord:
    return GraphServiceRecord(
        id=data["id"], service_id=data["service_id"], metadata=data["metadata"], criticality=data["criticality"],
        team=data["team"], discovered=data["discovered"], created_at=_ts(data["created_at"]),
        updated_at=_ts(data["updated_at"]), owner=data.get("owner", "anonymous"),
    )


def _edge_from_dict(data: dict[str, Any]) -> DependencyRecord:
    return DependencyRecord(
        id=data["id"], source_service_id=data["source_service_id"], target_service_id=data["target_service_id"],
        communication_mode=data["communication_mode"], criticality=data["criticality"], protocol=data["protocol"],
        timeout_ms=data["timeout_ms"], retry_config=data["retry_config"], discovery_source=data["discovery_source"],
        confidence_score=float(data["confidence_score"]), last_observed_at=_ts(data["last_observed_at"]),
        is_stale=data["is_stale"], created_at=_ts(data["created_at"]), updated_at=_ts(data["updated_at"]),
    )


def _alert_from_dict(data: dict[str, Any]) -> CycleAlertRecord:
    return CycleAlertRecord(
        id=data["id"], members=list(data["members"]), cycle_path=list(data["cycle_path"]), status=data["status"],
        acknowledged_by=data["acknowledged_by"], resolution_notes=data["resolution_notes"],
        detected_at=_ts(data["detected_at"]), updated_at=_ts(data["updated_at"]),
        resolved_at=parse_ts(data["resolved_at"]),
    )


def _report_from_dict(data: dict[str, Any]) -> CycleReport:
    return CycleReport(
        components=int(data["components"]),
        opened=[_alert_from_dict(a) for a in data["opened"]],
        unchanged=[_alert_from_dict(a) for a in data["unchanged"]],
        resolved=[_alert_from_dict(a) for a in data["resolved"]],
    )


class _HttpGraph:
    def __init__(self, transport: HttpTransport) -> None:
        self._request = transport._request

    @staticmethod
    def _json(value: dict[str, Any]) -> dict[str, Any]:
        return {"content": orjson.dumps(value), "headers": {"content-type": "application/json"}}

    async def _upsert(self, path: str, body: dict[str, Any]) -> Upserted:
        data = await self._request("PUT", path, **self._json(body))
        return Upserted(int(data["upserted"]), list(data["discovered"]))

    async def upsert_services(self, data: UpsertServicesInput) -> Upserted:
        return await self._upsert("/graph/services", data.model_dump(mode="json"))

    async def upsert_dependencies(self, data: UpsertDependenciesInput) -> Upserted:
        return await self._upsert("/graph/dependencies", data.model_dump(mode="json"))

    async def delete_service(self, service_id: str) -> None:
        await self._request("DELETE", f"/graph/services/{_segment(service_id)}")

    async def mark_stale(self, older_than_hours: float) -> int:
        data = await self._request(
            "POST", "/graph/dependencies/mark-stale", params={"older_than_hours": older_than_hours}
        )
        return int(data["marked_stale"])

    async def list_services(self, query: ListServicesQuery) -> tuple[list[GraphServiceRecord], int]:
        params = {k: v for k, v in query.model_dump().items() if v is not None}
        data = await self._request("GET", "/graph/services", params=params)
        return [_service_from_dict(s) for s in data["services"]], int(data["total"])

    async def get_service(self, service_id: str) -> GraphServiceRecord:
        return _service_from_dict(await self._request("GET", f"/graph/services/{_segment(service_id)}"))

    async def edges(self, service_id: str, outgoing: bool, include_stale: bool) -> list[DependencyRecord]:
        part = "dependencies" if outgoing else "dependents"
        params = {"include_stale": "true" if include_stale else "false"}
        data = await self._request("GET", f"/graph/services/{_segment(service_id)}/{part}", params=params)
        return [_edge_from_dict(e) for e in data[part]]

    async def traverse(self, query: TraverseQuery) -> Traversal:
        params = {
            "direction": query.direction, "depth": query.depth,
            "include_stale": "true" if query.include_stale else "false",
        }
        data = await self._request("GET", f"/graph/services/{_segment(query.service_id)}/traverse", params=params)
        return Traversal(
            service_id=data["service_id"], direction=data["direction"], depth=int(data["depth"]),
            services=[(s["service_id"], int(s["distance"]), s["direction"]) for s in data["services"]],
            edges=[(e["source"], e["target"], e["criticality"]) for e in data["edges"]],
        )

    async def impact(self, service_id: str) -> Impact:
        data = await self._request("GET", f"/graph/services/{_segment(service_id)}/impact")
        rows = [(i["service_id"], int(i["distance"]), i["path_criticality"]) for i in data["impacted"]]
        return Impact(data["service_id"], rows)

    async def list_findings(self) -> list[Inversion]:
        data = await self._request("GET", "/graph/findings")
        return [Inversion(f["service_id"], f["depends_on"]) for f in data["findings"]]

    async def detect_cycles(self) -> CycleReport:
        return _report_from_dict(await self._request("POST", "/graph/cycles/detect"))

    async def list_alerts(self, status: str | None, limit: int, offset: int) -> list[CycleAlertRecord]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        data = await self._request("GET", "/graph/alerts", params=params)
        return [_alert_from_dict(a) for a in data["alerts"]]

    async def update_alert(self, alert_id: str, data: AlertUpdateInput) -> CycleAlertRecord:
        body = data.model_dump(mode="json", exclude_none=True)
        return _alert_from_dict(await self._request("PATCH", f"/graph/alerts/{_segment(alert_id)}", **self._json(body)))


# -- gRPC --------------------------------------------------------------------------------------


def _at(message: Any, name: str) -> datetime:
    moment = timestamp_or_none(message, name)
    assert moment is not None
    return moment


def _service_from_message(m: pb.GraphService) -> GraphServiceRecord:
    return GraphServiceRecord(
        id=m.id, service_id=m.service_id, metadata=orjson.loads(m.metadata_json or "{}"), criticality=m.criticality,
        team=field_or_none(m, "team"), discovered=m.discovered, created_at=_at(m, "created_at"),
        updated_at=_at(m, "updated_at"), owner=m.owner,
    )


def _edge_from_message(m: pb.Dependency) -> DependencyRecord:
    return DependencyRecord(
        id=m.id, source_service_id=m.source_service_id, target_service_id=m.target_service_id,
        communication_mode=m.communication_mode, criticality=m.criticality, protocol=field_or_none(m, "protocol"),
        timeout_ms=field_or_none(m, "timeout_ms"),
        retry_config=orjson.loads(m.retry_config_json) if m.HasField("retry_config_json") else None,
        discovery_source=m.discovery_source, confidence_score=m.confidence_score,
        last_observed_at=_at(m, "last_observed_at"), is_stale=m.is_stale, created_at=_at(m, "created_at"),
        updated_at=_at(m, "updated_at"),
    )


def _alert_from_message(m: pb.CycleAlert) -> CycleAlertRecord:
    return CycleAlertRecord(
        id=m.id, members=list(m.members), cycle_path=list(m.cycle_path), status=m.status,
        acknowledged_by=field_or_none(m, "acknowledged_by"), resolution_notes=field_or_none(m, "resolution_notes"),
        detected_at=_at(m, "detected_at"), updated_at=_at(m, "updated_at"),
        resolved_at=timestamp_or_none(m, "resolved_at"),
    )


def _service_input(item: Any) -> pb.GraphServiceInput:
    message = pb.GraphServiceInput(
        service_id=item.service_id, metadata_json=orjson.dumps(item.metadata).decode(), criticality=item.criticality
    )
    if item.team is not None:
        message.team = item.team
    return message


def _dependency_input(item: Any) -> pb.DependencyInput:
    message = pb.DependencyInput(
        source_service_id=item.source_service_id, target_service_id=item.target_service_id,
        communication_mode=item.communication_mode, criticality=item.criticality,
        discovery_source=item.discovery_source, confidence_score=item.confidence_score,
    )
    if item.protocol is not None:
        message.protocol = item.protocol
    if item.timeout_ms is not None:
        message.timeout_ms = item.timeout_ms
    if item.retry_config is not None:
        message.retry_config_json = orjson.dumps(item.retry_config).decode()
    return message


class _GrpcGraph:
    def __init__(self, transport: GrpcTransport) -> None:
        self._stub = pb_grpc.GraphStub(transport.channel)
        self._call = transport._call

    async def upsert_services(self, data: UpsertServicesInput) -> Upserted:
        request = pb.UpsertServicesRequest(services=[_service_input(s) for s in data.services])
        reply = await self._call(self._stub.UpsertServices, request)
        return Upserted(reply.upserted, list(reply.discovered))

    async def upsert_dependencies(self, data: UpsertDependenciesInput) -> Upserted:
        request = pb.UpsertDependenciesRequest(dependencies=[_dependency_input(d) for d in data.dependencies])
        reply = await self._call(self._stub.UpsertDependencies, request)
        return Upserted(reply.upserted, list(reply.discovered))

    async def delete_service(self, service_id: str) -> None:
        await self._call(self._stub.DeleteService, pb.GraphServiceRef(service_id=service_id))

    async def mark_stale(self, older_than_hours: float) -> int:
        reply = await self._call(self._stub.MarkStale, pb.MarkStaleRequest(older_than_hours=older_than_hours))
        return int(reply.marked_stale)

    async def list_services(self, query: ListServicesQuery) -> tuple[list[GraphServiceRecord], int]:
        request = pb.ListGraphServicesRequest(limit=query.limit, offset=query.offset)
        if query.team is not None:
            request.team = query.team
        if query.criticality is not None:
            request.criticality = query.criticality
        reply = await self._call(self._stub.ListServices, request)
        return [_service_from_message(s) for s in reply.services], reply.total

    async def get_service(self, service_id: str) -> GraphServiceRecord:
        return _service_from_message(await self._call(self._stub.GetService, pb.GraphServiceRef(service_id=service_id)))

    async def edges(self, service_id: str, outgoing: bool, include_stale: bool) -> list[DependencyRecord]:
        method = self._stub.ListDependencies if outgoing else self._stub.ListDependents
        reply = await self._call(method, pb.EdgesRequest(service_id=service_id, include_stale=include_stale))
        return [_edge_from_message(e) for e in reply.edges]

    async def traverse(self, query: TraverseQuery) -> Traversal:
        request = pb.TraverseRequest(
            service_id=query.service_id, direction=query.direction, depth=query.depth,
            include_stale=query.include_stale,
        )
        reply = await self._call(self._stub.Traverse, request)
        return Traversal(
            service_id=reply.service_id, direction=reply.direction, depth=reply.depth,
            services=[(s.service_id, s.distance, s.direction) for s in reply.services],
            edges=[(e.source, e.target, e.criticality) for e in reply.edges],
        )

    async def impact(self, service_id: str) -> Impact:
        reply = await self._call(self._stub.Impact, pb.GraphServiceRef(service_id=service_id))
        return Impact(reply.service_id, [(i.service_id, i.distance, i.path_criticality) for i in reply.impacted])

    async def list_findings(self) -> list[Inversion]:
        reply = await self._call(self._stub.ListFindings, pb.ListFindingsRequest())
        return [Inversion(f.service_id, f.depends_on) for f in reply.findings]

    async def detect_cycles(self) -> CycleReport:
        reply = await self._call(self._stub.DetectCycles, pb.DetectCyclesRequest())
        return CycleReport(
            components=reply.components,
            opened=[_alert_from_message(a) for a in reply.opened],
            unchanged=[_alert_from_message(a) for a in reply.unchanged],
            resolved=[_alert_from_message(a) for a in reply.resolved],
        )

    async def list_alerts(self, status: str | None, limit: int, offset: int) -> list[CycleAlertRecord]:
        request = pb.ListCycleAlertsRequest(limit=limit, offset=offset)
        if status is not None:
            request.status = status
        reply = await self._call(self._stub.ListAlerts, request)
        return [_alert_from_message(a) for a in reply.alerts]

    async def update_alert(self, alert_id: str, data: AlertUpdateInput) -> CycleAlertRecord:
        request = pb.UpdateAlertRequest(id=alert_id, status=data.status)
        if data.acknowledged_by is not None:
            request.acknowledged_by = data.acknowledged_by
        if data.resolution_notes is not None:
            request.resolution_notes = data.resolution_notes
        return _alert_from_message(await self._call(self._stub.UpdateAlert, request))


def _segment(value: str) -> str:
    """One URL path segment: ``?``, ``#``, ``/`` and the rest escaped, so an id can only name itself."""
    return quote(value, safe="")
