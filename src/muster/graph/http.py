"""The graph's HTTP routes under ``/graph``: parse, call the service, return."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from muster.graph.model import (
    MAX_BULK_ITEMS,
    MAX_LIST_LIMIT,
    MAX_OFFSET,
    MAX_SERVICE_ID,
    SERVICE_ID_PATTERN,
    AlertUpdateInput,
    ListServicesQuery,
    TraverseQuery,
    UpsertDependenciesInput,
    UpsertServicesInput,
)
from muster.graph.service import MAX_STALE_HOURS, GraphService
from muster.http.query import parse_query, query_openapi
from muster.http.responses import JSON
from muster.validation import parse

__all__ = ["router"]

_TRAVERSE_PARAMS = ("direction", "depth", "include_stale")
# The traverse route reads its query itself (see below); these keep it documented.
_TRAVERSE_OPENAPI: dict[str, Any] = {
    "parameters": [
        {"name": "direction", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["downstream", "upstream", "both"], "default": "downstream"},
         "description": "both = the union of the upstream and the downstream traversals"},
        {"name": "depth", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3}},
        {"name": "include_stale", "in": "query", "required": False,
         "schema": {"type": "boolean", "default": False}},
    ]
}


# A service id in a path: the model's own rule, stated in the OpenAPI document.
ServicePath = Annotated[str, Path(max_length=MAX_SERVICE_ID, pattern=SERVICE_ID_PATTERN)]


def _body(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def router(graph: GraphService) -> APIRouter:
    api = APIRouter(prefix="/graph", tags=["graph"])

    @api.put(
        "/services",
        summary=f"Create or replace services (bulk, idempotent, up to {MAX_BULK_ITEMS:,})",
        openapi_extra=_body(UpsertServicesInput),
    )
    async def upsert_services(body: dict[str, Any] = Body(...)) -> Response:
        return JSON((await graph.upsert_services(parse(UpsertServicesInput, body))).to_dict())

    @api.put(
        "/dependencies",
        summary=f"Create or update dependencies (bulk, idempotent, up to {MAX_BULK_ITEMS:,}); unknown services are "
        "created with discovered=true",
        openapi_extra=_body(UpsertDependenciesInput),
    )
    async def upsert_dependencies(body: dict[str, Any] = Body(...)) -> Response:
        return JSON((await graph.upsert_dependencies(parse(UpsertDependenciesInput, body))).to_dict())

    @api.get(
        "/services",
        summary="Services by service_id, filtered by team and criticality",
        openapi_extra=query_openapi(ListServicesQuery),
    )
    async def list_services(request: Request) -> Response:
        query = parse_query(ListServicesQuery, request)
        records, total = await graph.list_services(query)
        return JSON({"services": [r.to_dict() for r in records], "total": total})

    @api.get("/services/{service_id}", summary="One service")
    async def get_service(service_id: ServicePath) -> Response:
        return JSON((await graph.get_service(service_id)).to_dict())

    @api.delete("/services/{service_id}", summary="Delete a service and every edge touching it")
    async def delete_service(service_id: ServicePath) -> Response:
        await graph.delete_service(service_id)
        return JSON({"service_id": service_id, "deleted": True})

    @api.get("/services/{service_id}/dependencies", summary="What this service depends on (its outgoing edges)")
    async def dependencies(service_id: ServicePath, include_stale: bool = False) -> Response:
        records = await graph.edges(service_id, outgoing=True, include_stale=include_stale)
        return JSON({"service_id": service_id, "dependencies": [r.to_dict() for r in records]})

    @api.get("/services/{service_id}/dependents", summary="What depends on this service (its incoming edges)")
    async def dependents(service_id: ServicePath, include_stale: bool = False) -> Response:
        records = await graph.edges(service_id, outgoing=False, include_stale=include_stale)
        return JSON({"service_id": service_id, "dependents": [r.to_dict() for r in records]})

    # The hot read: the query string goes straight to the same pydantic model
    # (same rules, same errors) instead of through FastAPI's per-parameter
    # machinery, and the reply is rendered by orjson once into a plain Response.
    @api.get(
        "/services/{service_id}/traverse",
        summary="Services within depth hops, with distances and the edges followed; "
        "direction=both is the union of the upstream and downstream traversals",
        openapi_extra=_TRAVERSE_OPENAPI,
    )
    async def traverse(service_id: ServicePath, request: Request) -> Response:
        params = request.query_params
        data: dict[str, Any] = {"service_id": service_id}
        for name in _TRAVERSE_PARAMS:
            value = params.get(name)
            if value is not None:
                data[name] = value
        result = await graph.traverse(parse(TraverseQuery, data))
        return Response(orjson.dumps(result.to_dict()), media_type="application/json")

    @api.get(
        "/services/{service_id}/impact",
        summary="Everything that depends on this service, transitively, with the weakest-path criticality",
    )
    async def impact(service_id: ServicePath) -> Response:
        return JSON((await graph.impact(service_id)).to_dict())

    @api.post("/cycles/detect", summary="Find strongly connected components; one alert per component")
    async def detect_cycles() -> Response:
        return JSON((await graph.detect_cycles()).to_dict())

    @api.get("/alerts", summary="Circular dependency alerts, newest first")
    async def list_alerts(
        status: Literal["open", "acknowledged", "resolved"] | None = None,
        limit: int = Query(100, ge=1, le=MAX_LIST_LIMIT),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> Response:
        records = await graph.list_alerts(status=status, limit=limit, offset=offset)
        return JSON({"alerts": [r.to_dict() for r in records]})

    @api.patch(
        "/alerts/{alert_id}",
        summary="Acknowledge or resolve an alert (open → acknowledged → resolved)",
        openapi_extra=_body(AlertUpdateInput),
    )
    async def update_alert(
        alert_id: str = Path(json_schema_extra={"format": "uuid"}), body: dict[str, Any] = Body(...)
    ) -> Response:
        return JSON((await graph.update_alert(alert_id, parse(AlertUpdateInput, body))).to_dict())

    @api.post("/dependencies/mark-stale", summary="Mark edges not observed for older_than_hours stale")
    async def mark_stale(older_than_hours: float = Query(..., gt=0, le=MAX_STALE_HOURS)) -> Response:
        marked = await graph.mark_stale(older_than_hours)
        return JSON({"marked_stale": marked, "older_than_hours": older_than_hours})

    @api.get("/findings", summary="Criticality inversions: critical services with hard edges to low ones")
    async def findings() -> Response:
        return JSON({"findings": [f.to_dict() for f in await graph.findings()]})

    return api
