"""The catalog's HTTP routes (paths and payloads as the catalog contract fixes them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.responses import Response

from muster.catalog.model import (
    MAX_DISCOVER_LIMIT,
    DeregisterInput,
    DiscoverQuery,
    HeartbeatInput,
    PromoteInput,
    RegisterInput,
)
from muster.catalog.service import CatalogService
from muster.errors import Invalid
from muster.http.query import parse_query, query_openapi
from muster.http.responses import JSON
from muster.observability import counting_beat, heartbeat_counters
from muster.validation import invalid_from

__all__ = ["router"]


def _moment(field: str, text: str | None) -> datetime | None:
    """An ISO 8601 time with its UTC offset; numbers (epoch seconds) are not times here."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if any(c in text for c in "-:") else None
    except ValueError:
        moment = None
    if moment is None:
        raise Invalid(field, "must be an ISO 8601 time, e.g. 2026-01-01T00:00:00Z")
    if moment.tzinfo is None:
        raise Invalid(field, "must carry a UTC offset, e.g. 2026-01-01T00:00:00Z")
    return moment


def router(catalog: CatalogService) -> APIRouter:
    api = APIRouter(tags=["catalog"])
    # The index hands back the same list object while its cached answer holds;
    # reuse the JSON rendered for it (keyed by identity, checked by reference).
    rendered: dict[int, tuple[list[Any], bytes]] = {}

    @api.post("/register", summary="Register a service instance")
    async def register(body: RegisterInput) -> Response:
        return JSON((await catalog.register(body)).to_dict())

    beats = heartbeat_counters("http")

    # The hottest route: the body is validated straight from JSON bytes by
    # pydantic (same model, same errors) instead of FastAPI's generic body path.
    @api.put(
        "/heartbeat",
        summary="Report that a service is alive (404: register again)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": HeartbeatInput.model_json_schema()}},
            }
        },
    )
    async def heartbeat(request: Request) -> Response:
        with counting_beat(beats):
            try:
                body = HeartbeatInput.model_validate_json(await request.body())
            except ValidationError as exc:
                raise invalid_from(exc) from None
            ack = await catalog.heartbeat(body)
        return JSON(ack.to_dict())

    @api.get(
        "/discover",
        summary="Find live services, best first (lowest load, then p95)",
        openapi_extra=query_openapi(DiscoverQuery),
    )
    async def discover(request: Request) -> Response:
        query = parse_query(DiscoverQuery, request)
        records = catalog.discover(query)
        cached = rendered.get(id(records))
        if cached is None or cached[0] is not records:
            if len(rendered) > 1024:
                rendered.clear()
            cached = (records, orjson.dumps({"services": [r.to_dict() for r in records]}))
            rendered[id(records)] = cached
        return Response(cached[1], media_type="application/json")

    @api.post("/promote", summary="Change a service's role")
    async def promote(body: PromoteInput) -> Response:
        return JSON((await catalog.promote(body)).to_dict())

    @api.post("/deregister", summary="Remove a service")
    async def deregister(body: DeregisterInput) -> Response:
        record = await catalog.deregister(body)
        return JSON({"service_id": record.service_id, "deregistered": True})

    @api.get("/services", summary="Every registered service, by name")
    async def list_services(
        status: Literal["ok", "degraded", "down"] | None = None,
        limit: int = Query(1000, ge=1, le=10_000),
        offset: int = Query(0, ge=0, le=1 << 31),
    ) -> Response:
        records = catalog.list_services(status=status, limit=limit, offset=offset)
        return JSON({"services": [r.to_dict() for r in records]})

    @api.get("/services/{service_id}", summary="One service")
    async def get_service(service_id: str) -> Response:
        return JSON((await catalog.get(service_id)).to_dict())

    @api.get("/stats", summary="Heartbeat monitor statistics")
    async def stats() -> Response:
        return JSON((await catalog.stats()).to_dict())

    @api.get("/alerts", summary="Heartbeat alerts, newest first")
    async def alerts(
        limit: int = Query(100, ge=1, le=MAX_DISCOVER_LIMIT),
        since: str | None = Query(
            None, description="ISO 8601 with a UTC offset; alerts at or after it",
            json_schema_extra={"format": "date-time"},
        ),
    ) -> Response:
        records = await catalog.alerts(limit=limit, since=_moment("since", since))
        return JSON({"alerts": [a.to_dict() for a in records]})

    return api
