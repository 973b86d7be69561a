"""The catalog's gRPC servicer (``muster.v1.Catalog``): thin over ``CatalogService``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc
from muster.catalog.model import (
    AlertRecord,
    DeregisterInput,
    DiscoverQuery,
    HeartbeatInput,
    PromoteInput,
    RegisterInput,
    ServiceRecord,
)
from muster.catalog.service import BeatAck, CatalogService
from muster.errors import Invalid, MusterError, NotFound, RateLimited
from muster.grpc.common import from_timestamp, present_fields, streaming, timestamp, unary
from muster.limits import Bucket
from muster.observability import GRPC_LATENCY, beat_outcome, counting_beat, heartbeat_counters
from muster.validation import parse

__all__ = ["MAX_BEATS_PER_BATCH", "CatalogServicer", "service_message"]

MAX_BEATS_PER_BATCH = 1000


def service_message(record: ServiceRecord) -> pb.Service:
    message = pb.Service(
        service_id=record.service_id,
        name=record.name,
        type=record.type,
        role=record.role,
        url=record.url,
        caps=record.caps,
        labels=record.labels,
        heartbeat_interval_s=record.heartbeat_interval_s,
        ttl_s=record.ttl_s,
        status=record.status,
        registered_at=timestamp(record.registered_at),
        last_heartbeat_ts=timestamp(record.last_heartbeat_ts),
        owner=record.owner,
    )
    for name in ("ctx_limit", "cost_hint_usd_per_1k", "p95_ms", "queue_depth", "load", "instance_id"):
        value = getattr(record, name)
        if value is not None:
            setattr(message, name, value)
    return message


def _alert_message(alert: AlertRecord) -> pb.Alert:
    return pb.Alert(
        alert_id=alert.alert_id,
        alert_type=alert.alert_type,
        service_id=alert.service_id,
        service_name=alert.service_name,
        missed_beats=alert.missed_beats,
        last_seen=timestamp(alert.last_seen),
        action=alert.action,
        ts=timestamp(alert.ts),
        details_json=orjson.dumps(alert.details).decode(),
        actor=alert.actor,
    )


def _beat_input(request: pb.HeartbeatRequest) -> HeartbeatInput:
    data: dict[str, Any] = {"service_id": request.service_id, "status": request.status or "ok"}
    data.update(present_fields(request, "p95_ms", "queue_depth", "load"))
    return parse(HeartbeatInput, data)


def _ack(ack: BeatAck) -> pb.HeartbeatReply:
    return pb.HeartbeatReply(
        service_id=ack.service_id, status=ack.status, received_at=timestamp(ack.received_at), found=True
    )


class CatalogServicer(pb_grpc.CatalogServicer):
    def __init__(self, catalog: CatalogService, *, stream_messages_per_s: float = 1000.0) -> None:
        self.catalog = catalog
        # Messages a second one HeartbeatStream may send (burst twice that; 0: no bound).
        self.stream_messages_per_s = stream_messages_per_s
        self._beats = heartbeat_counters("grpc")
        # A stream has no per-call latency; each message (a batch of beats) is timed instead.
        self._batch_latency = GRPC_LATENCY.labels(rpc="Catalog/HeartbeatStream")

    @unary("Catalog/Register")
    async def Register(self, request: pb.RegisterRequest, context: Any) -> pb.RegisterReply:
        data: dict[str, Any] = {
            "name": request.name,
            "type": request.type,
            "url": request.url,
            "caps": list(request.caps),
            "labels": dict(request.labels),
        }
        if request.role:
            data["role"] = request.role
        data.update(
            present_fields(request, "ctx_limit", "cost_hint_usd_per_1k", "heartbeat_interval_s", "ttl_s", "instance_id")
        )
        registered = await self.catalog.register(parse(RegisterInput, data))
        return pb.RegisterReply(service_id=registered.service_id, registered_at=timestamp(registered.registered_at))

    @unary("Catalog/Heartbeat")
    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatReply:
        with counting_beat(self._beats):
            ack = await self.catalog.heartbeat(_beat_input(request))
        return _ack(ack)

    @streaming("Catalog/HeartbeatStream")
    async def HeartbeatStream(
        self, request_iterator: AsyncIterator[pb.HeartbeatBatch], context: Any
    ) -> AsyncIterator[pb.HeartbeatBatchReply]:
        catalog, beats, latency = self.catalog, self._beats, self._batch_latency
        rate = self.stream_messages_per_s
        bucket = Bucket(rate, 2 * rate, 2 * rate, time.monotonic()) if rate > 0 else None
        async for batch in request_iterator:
            started = time.perf_counter()
            if bucket is not None and (wait := bucket.take(time.monotonic())) > 0:
                raise RateLimited(
                    f"this HeartbeatStream sent more than {rate:g} messages a second (burst {2 * rate:g}); "
                    "put more beats in each message (up to 1,000) or open the stream again",
                    retry_after=wait,
                )
            if not 1 <= len(batch.beats) <= MAX_BEATS_PER_BATCH:
                raise Invalid("beats", f"1 to {MAX_BEATS_PER_BATCH} beats per message")
            replies, accepted = [], 0
            try:
                for request in batch.beats:
                    try:
                        replies.append(_ack(await catalog.heartbeat(_beat_input(request))))
                        accepted += 1
                    except MusterError as exc:  # one bad beat must not end a stream that carries many
                        beats[beat_outcome(exc)].inc()
                        replies.append(
                            pb.HeartbeatReply(
                                service_id=request.service_id,
                                found=not isinstance(exc, NotFound),  # only "unknown" means register again
                                error=exc.message,
                                error_code=exc.code,
                                error_field=exc.field or "",
                            )
                        )
                    except Exception:  # a fault of ours ends the stream (INTERNAL); the beat still counts
                        beats["error"].inc()
                        raise
            finally:  # one increment per message; beats applied before a failure or a cancel count too
                beats["accepted"].inc(accepted)
            latency.observe(time.perf_counter() - started)
            yield pb.HeartbeatBatchReply(replies=replies)

    @unary("Catalog/Discover")
    async def Discover(self, request: pb.DiscoverRequest, context: Any) -> pb.DiscoverReply:
        data: dict[str, Any] = {"cap": list(request.cap), "label": list(request.label)}
        data.update(present_fields(request, "name", "type", "role", "status", "limit"))
        records = self.catalog.discover(parse(DiscoverQuery, data))
        return pb.DiscoverReply(services=[service_message(r) for r in records])

    @unary("Catalog/Promote")
    async def Promote(self, request: pb.PromoteRequest, context: Any) -> pb.Service:
        data = parse(PromoteInput, {"service_id": request.service_id, "role": request.role})
        return service_message(await self.catalog.promote(data))

    @unary("Catalog/Deregister")
    async def Deregister(self, request: pb.DeregisterRequest, context: Any) -> pb.DeregisterReply:
        record = await self.catalog.deregister(parse(DeregisterInput, {"service_id": request.service_id}))
        return pb.DeregisterReply(service_id=record.service_id, deregistered=True)

    @unary("Catalog/ListServices")
    async def ListServices(self, request: pb.ListServicesRequest, context: Any) -> pb.ListServicesReply:
        status = request.status if request.HasField("status") else None
        if status is not None and status not in ("ok", "degraded", "down"):
            raise Invalid("status", "must be one of ok, degraded, down")
        limit = request.limit if request.HasField("limit") else 1000
        if not 1 <= limit <= 10_000:
            raise Invalid("limit", "must be between 1 and 10000")
        if request.offset < 0:
            raise Invalid("offset", "must be >= 0")
        records = self.catalog.list_services(status=status, limit=limit, offset=request.offset)
        return pb.ListServicesReply(services=[service_message(r) for r in records])

    @unary("Catalog/GetService")
    async def GetService(self, request: pb.GetServiceRequest, context: Any) -> pb.Service:
        if not request.service_id:
            raise Invalid("service_id", "must not be empty")
        return service_message(await self.catalog.get(request.service_id))

    @unary("Catalog/GetStats")
    async def GetStats(self, request: pb.GetStatsRequest, context: Any) -> pb.Stats:
        stats = await self.catalog.stats()
        return pb.Stats(
            total_services=stats.total_services,
            healthy_services=stats.healthy_services,
            degraded_services=stats.degraded_services,
            down_services=stats.down_services,
            last_check=timestamp(stats.last_check),
            replicas=stats.replicas,
            self_preservation=stats.self_preservation,
            buses=[
                pb.BusSink(sink=b.sink, published_revision=b.published_revision, lag_revisions=b.lag_revisions)
                for b in stats.buses
            ],
        )

    @unary("Catalog/ListAlerts")
    async def ListAlerts(self, request: pb.ListAlertsRequest, context: Any) -> pb.ListAlertsReply:
        limit = request.limit if request.HasField("limit") else 100
        if not 1 <= limit <= 1000:
            raise Invalid("limit", "must be between 1 and 1000")
        since = from_timestamp(request.since, "since") if request.HasField("since") else None
        alerts = await self.catalog.alerts(limit=limit, since=since)
        return pb.ListAlertsReply(alerts=[_alert_message(a) for a in alerts])
