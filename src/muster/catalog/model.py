"""Catalog domain: inputs, service records, the heartbeat-miss state machine, discovery.

Pure: values in, values out, time passed in. The heartbeat monitor's rule:

* a service is *late* once no heartbeat arrived for ``ttl_s``;
* from then on its missed beats are ``floor(silence / heartbeat_interval_s)``;
* at ``mark_down_after_misses`` (2) it is marked ``down``;
* at ``deregister_after_misses`` (3) it is deregistered;
* a heartbeat from a ``down`` service restores it.

With interval 60 s and TTL 90 s: late at 90 s (1 miss), down at 120 s,
deregistered at 180 s of silence.

Re-registration: a registration may carry a client-chosen ``instance_id``
(like Consul's service ID or Eureka's instanceId), unique per service name.
Registering again with the same name and ``instance_id`` updates that
instance in place (:func:`reregistered_record`) instead of adding a second
one; without an ``instance_id`` every registration is a new instance.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from muster.clock import isoformat
from muster.limits import MAX_CAPS, MAX_LABEL_VALUE_CHARS, MAX_LABELS
from muster.validation import NO_CONTROL_CHARS

__all__ = [
    "AlertRecord",
    "DeregisterInput",
    "DiscoverQuery",
    "HeartbeatInput",
    "MonitorThresholds",
    "PromoteInput",
    "RegisterInput",
    "ServiceRecord",
    "Verdict",
    "judge",
    "missed_beats",
    "registered_record",
    "reregistered_record",
    "verdicts",
]

ServiceType = Literal["model", "tool", "agent", "service"]
Role = Literal["production", "staging", "canary", "experimental"]
Status = Literal["ok", "degraded", "down"]
BeatStatus = Literal["ok", "degraded"]

MAX_DISCOVER_LIMIT = 1000

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")]
Cap = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]
# No control characters (NO_CONTROL_CHARS) in any text a service gives.
LabelValue = Annotated[str, StringConstraints(max_length=MAX_LABEL_VALUE_CHARS, pattern=NO_CONTROL_CHARS)]
ServiceId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_CONTROL_CHARS)]
# Long enough for "namespace/pod-name" (a Kubernetes pod name alone may be 253 characters) or host:port.
MAX_INSTANCE_ID_CHARS = 256
InstanceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_INSTANCE_ID_CHARS, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"),
]
# A discover filter ``key=value``: a label key, "=", a label value.
LabelFilter = Annotated[
    str,
    StringConstraints(min_length=3, max_length=101 + MAX_LABEL_VALUE_CHARS),
    Field(json_schema_extra={"pattern": "^[^=]+="}),
]
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^\s\x00-\x1f\x7f]+$", re.IGNORECASE)
# The integer columns are 32-bit on both engines.
MAX_INT32 = (1 << 31) - 1


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterInput(_Input):
    """``POST /register``: who a service is and where it lives."""

    name: Name
    type: ServiceType
    role: Role = "experimental"
    url: Annotated[
        str,
        StringConstraints(min_length=1, max_length=2048),
        Field(json_schema_extra={"pattern": r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\x00-\x1f\x7f]+$"}),
    ]
    caps: list[Cap] = Field(default_factory=list, max_length=MAX_CAPS)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)
    ctx_limit: int | None = Field(None, ge=1, le=MAX_INT32, strict=True)
    cost_hint_usd_per_1k: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False, strict=True)
    heartbeat_interval_s: int = Field(60, ge=1, le=86_400, strict=True)
    ttl_s: int = Field(90, ge=1, le=604_800, strict=True)
    instance_id: InstanceId | None = Field(
        None,
        description="A client-chosen id of this instance, unique per name. Registering again with the same "
        "name and instance_id updates that instance in place (same service_id, liveness reset); without one, "
        "every registration makes a new instance.",
    )

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not _URL.fullmatch(value):
            raise ValueError("must be an absolute URL such as http://host:port")
        return value

    @field_validator("caps")
    @classmethod
    def _unique_caps(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class HeartbeatInput(_Input):
    """``PUT /heartbeat``: I am alive, and this is how I feel."""

    service_id: ServiceId
    status: BeatStatus = "ok"
    p95_ms: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False, strict=True)
    queue_depth: int | None = Field(None, ge=0, le=MAX_INT32, strict=True)
    load: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False, strict=True)


class PromoteInput(_Input):
    """``POST /promote``: change a service's role (staging to production, and back)."""

    service_id: ServiceId
    role: Role


class DeregisterInput(_Input):
    """``POST /deregister``: remove a service now."""

    service_id: ServiceId


class DiscoverQuery(_Input):
    """``GET /discover``: every filter given must match; ``cap`` and ``label`` repeat."""

    name: Name | None = None
    type: ServiceType | None = None
    role: Role | None = None
    cap: list[Cap] = Field(default_factory=list, max_length=MAX_CAPS)
    label: list[LabelFilter] = Field(default_factory=list, max_length=MAX_LABELS)
    status: Status | None = None
    limit: int = Field(100, ge=1, le=MAX_DISCOVER_LIMIT)

    @field_validator("label")
    @classmethod
    def _key_value(cls, value: list[str]) -> list[str]:
        for item in value:
            key, sep, _ = item.partition("=")
            if not sep or not key:
                raise ValueError("each label filter must be key=value")
        return value

    def label_pairs(self) -> list[tuple[str, str]]:
        return [(k, v) for k, _, v in (item.partition("=") for item in self.label)]


@dataclass(slots=True)
class ServiceRecord:
    """One registered instance, as the catalog holds it."""

    service_id: str
    name: str
    type: str
    role: str
    url: str
    caps: list[str]
    labels: dict[str, str]
    ctx_limit: int | None
    cost_hint_usd_per_1k: float | None
    heartbeat_interval_s: int
    ttl_s: int
    status: str
    registered_at: datetime
    last_heartbeat_ts: datetime | None = None
    p95_ms: float | None = None
    queue_depth: int | None = None
    load: float | None = None
    # The principal that registered it: only it (or an admin) may beat, deregister or promote it.
    owner: str = "anonymous"
    # The client-chosen id it registered with (unique per name), or None: see ``reregistered_record``.
    instance_id: str | None = None
    caps_set: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        self.caps_set = frozenset(self.caps)

    @property
    def last_seen(self) -> datetime:
        return self.last_heartbeat_ts or self.registered_at

    def rank(self) -> tuple[float, float, str]:
        """Best first: lowest load, then lowest p95 (unknown counts as worst), then id."""
        return (
            self.load if self.load is not None else math.inf,
            self.p95_ms if self.p95_ms is not None else math.inf,
            self.service_id,
        )

    def matches(self, query: DiscoverQuery) -> bool:
        if query.name is not None and self.name != query.name:
            return False
        if query.type is not None and self.type != query.type:
            return False
        if query.role is not None and self.role != query.role:
            return False
        if query.status is None:
            if self.status == "down":
                return False
        elif self.status != query.status:
            return False
        if query.cap and not self.caps_set.issuperset(query.cap):
            return False
        return all(self.labels.get(k) == v for k, v in query.label_pairs())

    def to_dict(self) -> dict[str, Any]:
        return {
            "service_id": self.service_id,
            "name": self.name,
            "type": self.type,
            "role": self.role,
            "url": self.url,
            "caps": list(self.caps),
            "labels": dict(self.labels),
            "ctx_limit": self.ctx_limit,
            "cost_hint_usd_per_1k": self.cost_hint_usd_per_1k,
            "heartbeat_interval_s": self.heartbeat_interval_s,
            "ttl_s": self.ttl_s,
            "status": self.status,
            "registered_at": isoformat(self.registered_at),
            "last_heartbeat_ts": isoformat(self.last_heartbeat_ts),
            "p95_ms": self.p95_ms,
            "queue_depth": self.queue_depth,
            "load": self.load,
            "owner": self.owner,
            "instance_id": self.instance_id,
        }

    def with_beat(self, beat: HeartbeatInput, at: datetime) -> ServiceRecord:
        return replace(
            self,
            status=beat.status,
            last_heartbeat_ts=at,
            p95_ms=beat.p95_ms,
            queue_depth=beat.queue_depth,
            load=beat.load,
        )


@dataclass(frozen=True, slots=True)
class AlertRecord:
    alert_id: int
    alert_type: str
    service_id: str
    service_name: str
    missed_beats: int
    last_seen: datetime | None
    action: str
    ts: datetime
    details: dict[str, Any]
    actor: str = "muster"

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "alert_id": self.alert_id,
            "alert_type": self.alert_type,
            "service_id": self.service_id,
            "service_name": self.service_name,
            "missed_beats": self.missed_beats,
            "last_seen": isoformat(self.last_seen),
            "action": self.action,
            "ts": isoformat(self.ts),
            "actor": self.actor,
        }
        body.update(self.details)
        return body


@dataclass(frozen=True, slots=True)
class MonitorThresholds:
    mark_down_after_misses: int = 2
    deregister_after_misses: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.mark_down_after_misses <= self.deregister_after_misses:
            raise ValueError("need 1 <= mark_down_after_misses <= deregister_after_misses")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the monitor does to one service: ``marked_down`` or ``deregistered``."""

    action: Literal["marked_down", "deregistered"]
    missed_beats: int

    @property
    def alert_type(self) -> str:
        return "service_down" if self.action == "marked_down" else "service_deregistered"


def registered_record(data: RegisterInput, *, service_id: str, owner: str, now: datetime) -> ServiceRecord:
    """The instance a first registration makes: ``ok``, not beaten yet, owned by who registered it."""
    return ServiceRecord(
        service_id=service_id,
        name=data.name,
        type=data.type,
        role=data.role,
        url=data.url,
        caps=list(data.caps),
        labels=dict(data.labels),
        ctx_limit=data.ctx_limit,
        cost_hint_usd_per_1k=data.cost_hint_usd_per_1k,
        heartbeat_interval_s=data.heartbeat_interval_s,
        ttl_s=data.ttl_s,
        status="ok",
        registered_at=now,
        owner=owner,
        instance_id=data.instance_id,
    )


def reregistered_record(previous: ServiceRecord, data: RegisterInput, now: datetime) -> ServiceRecord:
    """``previous`` registered again with its name and ``instance_id``: the same instance, updated in place.

    Everything the registration states replaces what was there (url, type, role, caps, labels, hints,
    intervals). Liveness starts over: ``ok``, last beat ``now``, no metrics (the old ones described the
    process that went away). The ``service_id``, ``owner`` and ``registered_at`` (the first registration)
    stay.
    """
    if data.instance_id is None or (previous.name, previous.instance_id) != (data.name, data.instance_id):
        raise ValueError("a re-registration needs the instance's own name and instance_id")
    fresh = registered_record(data, service_id=previous.service_id, owner=previous.owner, now=previous.registered_at)
    fresh.last_heartbeat_ts = now
    return fresh


def missed_beats(silence_s: float, heartbeat_interval_s: float, ttl_s: float) -> int:
    """Beats missed after ``silence_s`` without a heartbeat (0 until the TTL has passed)."""
    if silence_s < ttl_s:
        return 0
    return math.floor(silence_s / heartbeat_interval_s)


def judge(
    record: ServiceRecord, now: datetime, thresholds: MonitorThresholds, *, watched_since: datetime | None = None
) -> Verdict | None:
    """The monitor's decision for one service at ``now``, or ``None`` to leave it be.

    ``watched_since``: when this monitor began watching (its start, or its taking over from another
    leader). Silence before it is nobody's observation, so it is not counted: every service gets one
    full TTL from that moment before a miss counts, as after a restart nothing was listening.
    """
    seen = record.last_seen if watched_since is None else max(record.last_seen, watched_since)
    silence = (now - seen).total_seconds()
    misses = missed_beats(silence, record.heartbeat_interval_s, record.ttl_s)
    if misses >= thresholds.deregister_after_misses:
        return Verdict("deregistered", misses)
    if misses >= thresholds.mark_down_after_misses and record.status != "down":
        return Verdict("marked_down", misses)
    return None


def verdicts(
    record: ServiceRecord, now: datetime, thresholds: MonitorThresholds, *, watched_since: datetime | None = None
) -> list[Verdict]:
    """Every action due for one service, in order. A service found past both thresholds at once
    (a TTL of three intervals or more, or a long pause) is marked down before it is deregistered,
    so whoever acts on ``service_down`` always hears it."""
    verdict = judge(record, now, thresholds, watched_since=watched_since)
    if verdict is None:
        return []
    if verdict.action == "deregistered" and record.status != "down":
        return [Verdict("marked_down", verdict.missed_beats), verdict]
    return [verdict]
