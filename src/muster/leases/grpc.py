"""The symbol registry's gRPC servicer (``srm.SymbolRegistry``): thin over ``LeasesService``.

proto3 cannot tell an empty string or a zero from an absent field, so ``""``
means "not given" for optional strings and ``0`` means "the default" for
``ttl_sec`` (the proto says so too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from muster._proto.srm import symbol_pb2 as pb
from muster._proto.srm import symbol_pb2_grpc as pb_grpc
from muster.clock import isoformat
from muster.errors import Invalid
from muster.grpc.common import streaming, unary
from muster.leases.metrics import reserves_with_status
from muster.leases.model import (
    DEFAULT_TTL_SEC,
    ClaimInput,
    ExtendInput,
    Lease,
    LookupInput,
    PlanIdInput,
    ReleaseInput,
    ReserveInput,
    ReservePlanInput,
    lease_from_dict,
    timestamp_text,
)
from muster.leases.service import LeasesService
from muster.limits import grpc_caller, holding
from muster.validation import parse

__all__ = ["SERVICE_NAME", "SymbolRegistryServicer", "lease_message"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SymbolRegistry"].full_name


def lease_message(lease: Lease) -> pb.Lease:
    return pb.Lease(
        lease_id=lease.lease_id,
        repo=lease.repo,
        branch=lease.branch,
        fq_name=lease.fq_name,
        kind=lease.kind,
        file_path=lease.file_path,
        plan_id=lease.plan_id or "",
        status=lease.status,
        commit_sha=lease.commit_sha or "",
        reserved_at=timestamp_text(lease.reserved_at),
        expires_at=_optional_text(lease.expires_at),
        updated_at=timestamp_text(lease.updated_at),
        owner=lease.owner,
    )


def _optional_text(moment: datetime | None) -> str:
    return "" if moment is None else timestamp_text(moment)


def _ttl(value: int) -> int:
    return value or DEFAULT_TTL_SEC


def _symbol(message: Any) -> dict[str, Any]:
    return {
        "repo": message.repo,
        "branch": message.branch,
        "fq_name": message.fq_name,
        "kind": message.kind,
        "file_path": message.file_path,
    }


def _plan_id(plan_id: str) -> str:
    return parse(PlanIdInput, {"plan_id": plan_id}).plan_id


class SymbolRegistryServicer(pb_grpc.SymbolRegistryServicer):
    def __init__(self, service: LeasesService) -> None:
        self.service = service

    @unary("SymbolRegistry/Reserve")
    async def Reserve(self, request: pb.ReserveRequest, context: Any) -> pb.ReserveReply:
        try:
            data = parse(
                ReserveInput, {**_symbol(request), "plan_id": request.plan_id, "ttl_sec": _ttl(request.ttl_sec)}
            )
        except Invalid:
            reserves_with_status("invalid").inc()
            raise
        lease = await self.service.reserve(data)
        return pb.ReserveReply(
            lease_id=lease.lease_id,
            status=lease.status,
            expires_at=_optional_text(lease.expires_at),
            lease=lease_message(lease),
        )

    @unary("SymbolRegistry/Claim")
    async def Claim(self, request: pb.ClaimRequest, context: Any) -> pb.ClaimReply:
        data = parse(ClaimInput, {"lease_id": request.lease_id, "commit_sha": request.commit_sha})
        lease = await self.service.claim(data)
        return pb.ClaimReply(status=lease.status, lease=lease_message(lease))

    @unary("SymbolRegistry/Lookup")
    async def Lookup(self, request: pb.LookupRequest, context: Any) -> pb.LookupReply:
        query = parse(LookupInput, {"repo": request.repo, "branch": request.branch, "fq_name": request.fq_name})
        lease = await self.service.lookup(query)
        return pb.LookupReply(
            status=lease.status,
            file_path=lease.file_path,
            commit_sha=lease.commit_sha or "",
            lease=lease_message(lease),
        )

    @unary("SymbolRegistry/Release")
    async def Release(self, request: pb.ReleaseRequest, context: Any) -> pb.ReleaseReply:
        lease = await self.service.release(parse(ReleaseInput, {"lease_id": request.lease_id}))
        return pb.ReleaseReply(status=lease.status, lease=lease_message(lease))

    @unary("SymbolRegistry/Extend")
    async def Extend(self, request: pb.ExtendRequest, context: Any) -> pb.ExtendReply:
        data = parse(ExtendInput, {"lease_id": request.lease_id, "ttl_sec": _ttl(request.ttl_sec)})
        lease = await self.service.extend(data)
        return pb.ExtendReply(
            status=lease.status, expires_at=_optional_text(lease.expires_at), lease=lease_message(lease)
        )

    @streaming("SymbolRegistry/Watch")
    async def Watch(self, request: pb.WatchRequest, context: Any) -> AsyncIterator[pb.LeaseEvent]:
        since = request.since if request.HasField("since") else None
        stream = self.service.watch(repo=request.repo, branch=request.branch, since=since)
        slots = self.service.hub.slots
        if slots is not None:
            stream = holding(slots.acquire(grpc_caller(slots, context)), stream)
        async for event in stream:
            yield pb.LeaseEvent(
                revision=event.revision,
                kind=event.kind,
                lease=lease_message(lease_from_dict(event.payload["lease"])),
                ts=isoformat(event.ts) or "",
                actor=event.actor,
            )

    @unary("SymbolRegistry/ReservePlan")
    async def ReservePlan(self, request: pb.ReservePlanRequest, context: Any) -> pb.PlanReply:
        try:
            data = parse(
                ReservePlanInput,
                {
                    "plan_id": request.plan_id,
                    "symbols": [_symbol(symbol) for symbol in request.symbols],
                    "ttl_sec": _ttl(request.ttl_sec),
                },
            )
        except Invalid:
            reserves_with_status("invalid").inc()
            raise
        granted = await self.service.reserve_plan(data)
        return pb.PlanReply(plan_id=data.plan_id, leases=[lease_message(lease) for lease in granted])

    @unary("SymbolRegistry/GetPlan")
    async def GetPlan(self, request: pb.GetPlanRequest, context: Any) -> pb.PlanReply:
        plan_id = _plan_id(request.plan_id)
        found = await self.service.get_plan(plan_id)
        return pb.PlanReply(plan_id=plan_id, leases=[lease_message(lease) for lease in found])

    @unary("SymbolRegistry/ReleasePlan")
    async def ReleasePlan(self, request: pb.ReleasePlanRequest, context: Any) -> pb.ReleasePlanReply:
        outcome = await self.service.release_plan(_plan_id(request.plan_id))
        return pb.ReleasePlanReply(
            plan_id=outcome.plan_id,
            released=outcome.released,
            leases=[lease_message(lease) for lease in outcome.leases],
        )
