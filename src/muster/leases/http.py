"""The symbol registry's HTTP routes (paths and payloads as the SRM contract fixes them).

Every reply carries the lease as JSON (``lease_id``, ``status``, ``expires_at``
and the rest). Watching uses the shared ``GET /watch`` stream with
``kind=leases.`` and ``subject=<repo>/<branch>/`` (see docs/leases.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from muster.errors import Invalid
from muster.http.query import parse_query, query_openapi
from muster.http.responses import JSON
from muster.leases.metrics import reserves_with_status
from muster.leases.model import (
    ClaimInput,
    ExtendInput,
    LookupInput,
    PlanIdInput,
    ReleaseInput,
    ReserveInput,
    ReservePlanInput,
)
from muster.leases.service import LeasesService
from muster.validation import parse

__all__ = ["router"]


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object body (validated by the caller's model, so errors name the field)."""
    try:
        data = await request.json()
    except ValueError:
        raise Invalid("body", "must be a JSON object") from None
    if not isinstance(data, dict):
        raise Invalid("body", "must be a JSON object")
    return data


def _plan_id(plan_id: str) -> str:
    return parse(PlanIdInput, {"plan_id": plan_id}).plan_id


_PLAN_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"


def router(service: LeasesService) -> APIRouter:
    api = APIRouter(tags=["leases"])

    def openapi(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}

    @api.post(
        "/reserve",
        summary="Reserve a symbol before writing it (409 if a live lease holds it)",
        openapi_extra=openapi(ReserveInput),
    )
    async def reserve(request: Request) -> Response:
        try:
            data = parse(ReserveInput, await _body(request))
        except Invalid:
            reserves_with_status("invalid").inc()
            raise
        return JSON((await service.reserve(data)).to_dict())

    @api.post("/claim", summary="The commit landed: make the symbol active", openapi_extra=openapi(ClaimInput))
    async def claim(request: Request) -> Response:
        return JSON((await service.claim(parse(ClaimInput, await _body(request)))).to_dict())

    @api.get(
        "/lookup", summary="The symbol's newest lease (404 if never reserved)", openapi_extra=query_openapi(LookupInput)
    )
    async def lookup(request: Request) -> Response:
        query = parse_query(LookupInput, request)
        return JSON((await service.lookup(query)).to_dict())

    @api.post("/release", summary="Give the symbol back (idempotent)", openapi_extra=openapi(ReleaseInput))
    async def release(request: Request) -> Response:
        return JSON((await service.release(parse(ReleaseInput, await _body(request)))).to_dict())

    @api.post("/extend", summary="Keep a reservation ttl_sec more seconds from now", openapi_extra=openapi(ExtendInput))
    async def extend(request: Request) -> Response:
        return JSON((await service.extend(parse(ExtendInput, await _body(request)))).to_dict())

    @api.post(
        "/plans/reserve",
        summary="Reserve every symbol of a plan, or none (409 names the held ones)",
        openapi_extra=openapi(ReservePlanInput),
    )
    async def reserve_plan(request: Request) -> Response:
        try:
            data = parse(ReservePlanInput, await _body(request))
        except Invalid:
            reserves_with_status("invalid").inc()
            raise
        granted = await service.reserve_plan(data)
        return JSON({"plan_id": data.plan_id, "leases": [lease.to_dict() for lease in granted]})

    @api.get("/plans/{plan_id:path}", summary="Every lease taken under a plan, oldest first")
    async def get_plan(plan_id: str = Path(max_length=128, pattern=_PLAN_ID)) -> Response:
        plan = _plan_id(plan_id)
        return JSON({"plan_id": plan, "leases": [lease.to_dict() for lease in await service.get_plan(plan)]})

    @api.post("/plans/{plan_id:path}/release", summary="Release the plan's reservations (claimed symbols stay)")
    async def release_plan(plan_id: str = Path(max_length=128, pattern=_PLAN_ID)) -> Response:
        return JSON((await service.release_plan(_plan_id(plan_id))).to_dict())

    return api
