"""The graph's gRPC servicer (``muster.v1.Graph``): thin over ``GraphService``."""

from __future__ import annotations

from typing import Any

import orjson

from muster._proto.muster.v1 import graph_pb2 as pb
from muster._proto.muster.v1 import graph_pb2_grpc as pb_grpc
from muster.errors import Invalid
from muster.graph.algorithms import Impact, Traversal
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
)
from muster.graph.service import CycleReport, GraphService, Upserted
from muster.grpc.common import present_fields, timestamp, unary
from muster.validation import parse

__all__ = ["GraphServicer"]


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Invalid(field, "must be a JSON object") from None
    if not isinstance(value, dict):
        raise Invalid(field, "must be a JSON object")
    return value


def _service_item(item: pb.GraphServiceInput, position: int) -> dict[str, Any]:
    data: dict[str, Any] = {"service_id": item.service_id}
    if item.metadata_json:
        data["metadata"] = _json_object(item.metadata_json, f"services[{position}].metadata_json")
    if item.criticality:
        data["criticality"] = item.criticality
    data.update(present_fields(item, "team"))
    return data


def _dependency_item(item: pb.DependencyInput, position: int) -> dict[str, Any]:
    data: dict[str, Any] = {"source_service_id": item.source_service_id, "target_service_id": item.target_service_id}
    for name in ("communication_mode", "criticality", "discovery_source"):
        if getattr(item, name):
            data[name] = getattr(item, name)
    data.update(present_fields(item, "protocol", "timeout_ms", "confidence_score"))
    if item.HasField("retry_config_json"):
        data["retry_config"] = _json_object(item.retry_config_json, f"dependencies[{position}].retry_config_json")
    return data


def _service(record: GraphServiceRecord) -> pb.GraphService:
    message = pb.GraphService(
        id=record.id,
        service_id=record.service_id,
        metadata_json=orjson.dumps(record.metadata).decode(),
        criticality=record.criticality,
        discovered=record.discovered,
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        owner=record.owner,
    )
    if record.team is not None:
        message.team = record.team
    return message


def _edge(record: DependencyRecord) -> pb.Dependency:
    message = pb.Dependency(
        id=record.id,
        source_service_id=record.source_service_id,
        target_service_id=record.target_service_id,
        communication_mode=record.communication_mode,
        criticality=record.criticality,
        discovery_source=record.discovery_source,
        confidence_score=record.confidence_score,
        last_observed_at=timestamp(record.last_observed_at),
        is_stale=record.is_stale,
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
    )
    if record.protocol is not None:
        message.protocol = record.protocol
    if record.timeout_ms is not None:
        message.timeout_ms = record.timeout_ms
    if record.retry_config is not None:
        message.retry_config_json = orjson.dumps(record.retry_config).decode()
    return message


def _alert(record: CycleAlertRecord) -> pb.CycleAlert:
    message = pb.CycleAlert(
        id=record.id,
        members=record.members,
        cycle_path=record.cycle_path,
        status=record.status,
        detected_at=timestamp(record.detected_at),
        updated_at=timestamp(record.updated_at),
        resolved_at=timestamp(record.resolved_at),
    )
    if record.acknowledged_by is not None:
        message.acknowledged_by = record.acknowledged_by
    if record.resolution_notes is not None:
        message.resolution_notes = record.resolution_notes
    return message


def _upserted(result: Upserted) -> pb.UpsertReply:
    return pb.UpsertReply(upserted=result.upserted, discovered=result.discovered)


def _traversal(result: Traversal) -> pb.TraverseReply:
    return pb.TraverseReply(
        service_id=result.service_id,
        direction=result.direction,
        depth=result.depth,
        services=[pb.ReachedService(service_id=s, distance=d, direction=how) for s, d, how in result.services],
        edges=[pb.EdgeRef(source=s, target=t, criticality=c) for s, t, c in result.edges],
    )


def _impact(result: Impact) -> pb.ImpactReply:
    summary = result.to_dict()
    return pb.ImpactReply(
        service_id=result.service_id,
        total=summary["total"],
        by_path_criticality=summary["by_path_criticality"],
        impacted=[pb.ImpactedService(service_id=s, distance=d, path_criticality=c) for s, d, c in result.impacted],
    )


def _report(report: CycleReport) -> pb.DetectCyclesReply:
    return pb.DetectCyclesReply(
        components=report.components,
        opened=[_alert(a) for a in report.opened],
        unchanged=[_alert(a) for a in report.unchanged],
        resolved=[_alert(a) for a in report.resolved],
    )


def _service_id(request: Any) -> str:
    if not request.service_id:
        raise Invalid("service_id", "must not be empty")
    return str(request.service_id)


class GraphServicer(pb_grpc.GraphServicer):
    def __init__(self, graph: GraphService) -> None:
        self.graph = graph

    @unary("Graph/UpsertServices")
    async def UpsertServices(self, request: pb.UpsertServicesRequest, context: Any) -> pb.UpsertReply:
        items = [_service_item(item, n) for n, item in enumerate(request.services)]
        return _upserted(await self.graph.upsert_services(parse(UpsertServicesInput, {"services": items})))

    @unary("Graph/UpsertDependencies")
    async def UpsertDependencies(self, request: pb.UpsertDependenciesRequest, context: Any) -> pb.UpsertReply:
        items = [_dependency_item(item, n) for n, item in enumerate(request.dependencies)]
        data = parse(UpsertDependenciesInput, {"dependencies": items})
        return _upserted(await self.graph.upsert_dependencies(data))

    @unary("Graph/ListServices")
    async def ListServices(
        self, request: pb.ListGraphServicesRequest, context: Any
    ) -> pb.ListGraphServicesReply:
        data: dict[str, Any] = {"offset": request.offset}
        data.update(present_fields(request, "team", "criticality", "limit"))
        records, total = await self.graph.list_services(parse(ListServicesQuery, data))
        return pb.ListGraphServicesReply(services=[_service(r) for r in records], total=total)

    @unary("Graph/GetService")
    async def GetService(self, request: pb.GraphServiceRef, context: Any) -> pb.GraphService:
        return _service(await self.graph.get_service(_service_id(request)))

    @unary("Graph/DeleteService")
    async def DeleteService(self, request: pb.GraphServiceRef, context: Any) -> pb.DeleteGraphServiceReply:
        service_id = _service_id(request)
        await self.graph.delete_service(service_id)
        return pb.DeleteGraphServiceReply(service_id=service_id, deleted=True)

    @unary("Graph/ListDependencies")
    async def ListDependencies(self, request: pb.EdgesRequest, context: Any) -> pb.EdgesReply:
        service_id = _service_id(request)
        records = await self.graph.edges(service_id, outgoing=True, include_stale=request.include_stale)
        return pb.EdgesReply(service_id=service_id, edges=[_edge(r) for r in records])

    @unary("Graph/ListDependents")
    async def ListDependents(self, request: pb.EdgesRequest, context: Any) -> pb.EdgesReply:
        service_id = _service_id(request)
        records = await self.graph.edges(service_id, outgoing=False, include_stale=request.include_stale)
        return pb.EdgesReply(service_id=service_id, edges=[_edge(r) for r in records])

    @unary("Graph/Traverse")
    async def Traverse(self, request: pb.TraverseRequest, context: Any) -> pb.TraverseReply:
        data: dict[str, Any] = {"service_id": request.service_id, "include_stale": request.include_stale}
        if request.direction:
            data["direction"] = request.direction
        data.update(present_fields(request, "depth"))
        return _traversal(await self.graph.traverse(parse(TraverseQuery, data)))

    @unary("Graph/Impact")
    async def Impact(self, request: pb.GraphServiceRef, context: Any) -> pb.ImpactReply:
        return _impact(await self.graph.impact(_service_id(request)))

    @unary("Graph/DetectCycles")
    async def DetectCycles(self, request: pb.DetectCyclesRequest, context: Any) -> pb.DetectCyclesReply:
        return _report(await self.graph.detect_cycles())

    @unary("Graph/ListAlerts")
    async def ListAlerts(self, request: pb.ListCycleAlertsRequest, context: Any) -> pb.ListCycleAlertsReply:
        limit = request.limit if request.HasField("limit") else 100
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise Invalid("limit", f"must be between 1 and {MAX_LIST_LIMIT}")
        if request.offset < 0:
            raise Invalid("offset", "must be >= 0")
        status = request.status if request.HasField("status") else None
        records = await self.graph.list_alerts(status=status, limit=limit, offset=request.offset)
        return pb.ListCycleAlertsReply(alerts=[_alert(r) for r in records])

    @unary("Graph/UpdateAlert")
    async def UpdateAlert(self, request: pb.UpdateAlertRequest, context: Any) -> pb.CycleAlert:
        data: dict[str, Any] = {"status": request.status}
        data.update(present_fields(request, "acknowledged_by", "resolution_notes"))
        return _alert(await self.graph.update_alert(request.id, parse(AlertUpdateInput, data)))

    @unary("Graph/MarkStale")
    async def MarkStale(self, request: pb.MarkStaleRequest, context: Any) -> pb.MarkStaleReply:
        marked = await self.graph.mark_stale(request.older_than_hours)
        return pb.MarkStaleReply(marked_stale=marked, older_than_hours=request.older_than_hours)

    @unary("Graph/ListFindings")
    async def ListFindings(self, request: pb.ListFindingsRequest, context: Any) -> pb.ListFindingsReply:
        return pb.ListFindingsReply(findings=[pb.Finding(**f.to_dict()) for f in await self.graph.findings()])
