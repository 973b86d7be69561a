"""Wire formats back to domain values (the client returns the same types the service uses)."""

from __future__ import annotations

from typing import Any

import orjson

from muster._proto.muster.v1 import catalog_pb2 as pb
from muster._proto.muster.v1 import events_pb2 as events_pb
from muster.catalog.model import AlertRecord, ServiceRecord
from muster.catalog.service import BeatAck, Registered, SinkStatus, Stats
from muster.clock import parse_isoformat as parse_ts
from muster.events.hub import Event
from muster.grpc.common import field_or_none, timestamp_or_none

__all__ = [
    "ack_from_message",
    "alert_from_dict",
    "alert_from_message",
    "event_from_dict",
    "event_from_message",
    "parse_ts",
    "record_from_message",
    "stats_from_dict",
]


def record_from_message(message: pb.Service) -> ServiceRecord:
    registered_at = timestamp_or_none(message, "registered_at")
    assert registered_at is not None
    return ServiceRecord(
        service_id=message.service_id,
        name=message.name,
        type=message.type,
        role=message.role,
        url=message.url,
        caps=list(message.caps),
        labels=dict(message.labels),
        ctx_limit=field_or_none(message, "ctx_limit"),
        cost_hint_usd_per_1k=field_or_none(message, "cost_hint_usd_per_1k"),
        heartbeat_interval_s=message.heartbeat_interval_s,
        ttl_s=message.ttl_s,
        status=message.status,
        registered_at=registered_at,
        last_heartbeat_ts=timestamp_or_none(message, "last_heartbeat_ts"),
        p95_ms=field_or_none(message, "p95_ms"),
        queue_depth=field_or_none(message, "queue_depth"),
        load=field_or_none(message, "load"),
        owner=message.owner,
        instance_id=field_or_none(message, "instance_id"),
    )


def ack_from_message(message: pb.HeartbeatReply) -> BeatAck:
    received = timestamp_or_none(message, "received_at")
    assert received is not None
    return BeatAck(message.service_id, message.status, received)


def alert_from_message(message: pb.Alert) -> AlertRecord:
    ts = timestamp_or_none(message, "ts")
    assert ts is not None
    return AlertRecord(
        alert_id=message.alert_id,
        alert_type=message.alert_type,
        service_id=message.service_id,
        service_name=message.service_name,
        missed_beats=message.missed_beats,
        last_seen=timestamp_or_none(message, "last_seen"),
        action=message.action,
        ts=ts,
        details=orjson.loads(message.details_json or "{}"),
        actor=message.actor,
    )


_ALERT_FIELDS = {
    "alert_id", "alert_type", "service_id", "service_name", "missed_beats", "last_seen", "action", "ts", "actor",
}


def alert_from_dict(data: dict[str, Any]) -> AlertRecord:
    ts = parse_ts(data["ts"])
    assert ts is not None
    return AlertRecord(
        alert_id=int(data["alert_id"]),
        alert_type=data["alert_type"],
        service_id=data["service_id"],
        service_name=data["service_name"],
        missed_beats=int(data["missed_beats"]),
        last_seen=parse_ts(data.get("last_seen")),
        action=data["action"],
        ts=ts,
        details={k: v for k, v in data.items() if k not in _ALERT_FIELDS},
        actor=str(data.get("actor", "")),
    )


def stats_from_dict(data: dict[str, Any]) -> Stats:
    return Stats(
        total_services=int(data["total_services"]),
        healthy_services=int(data["healthy_services"]),
        degraded_services=int(data["degraded_services"]),
        down_services=int(data["down_services"]),
        last_check=parse_ts(data.get("last_check")),
        replicas=int(data.get("replicas", 0)),
        self_preservation=bool(data.get("self_preservation", False)),
        buses=[
            SinkStatus(str(b["sink"]), int(b["published_revision"]), int(b["lag_revisions"]))
            for b in data.get("buses", [])
        ],
    )


def registered_from_dict(data: dict[str, Any]) -> Registered:
    registered_at = parse_ts(data["registered_at"])
    assert registered_at is not None
    return Registered(data["service_id"], registered_at)


def event_from_message(message: events_pb.Event) -> Event:
    ts = timestamp_or_none(message, "ts")
    assert ts is not None
    payload = orjson.loads(message.payload_json or "{}")
    return Event(message.revision, message.kind, message.subject, payload, ts, message.actor)


def event_from_dict(data: dict[str, Any]) -> Event:
    ts = parse_ts(data["ts"])
    assert ts is not None
    return Event(int(data["revision"]), data["kind"], data["subject"], data["payload"], ts, data.get("actor", ""))
