"""Graph domain: inputs, records, and the cycle alert life cycle.

Pure: values in, values out. The graph algorithms (traversal, strongly
connected components, cycle normalisation, impact, findings) live beside this
module in :mod:`muster.graph.algorithms`.

Vocabulary. A *dependency* is an edge ``source → target``: the source calls or
needs the target. *Downstream* of a service is what it depends on; *upstream*
is what depends on it. An edge is *live* unless it was marked stale.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from muster.clock import isoformat
from muster.errors import FailedPrecondition, NotFound
from muster.limits import MAX_BATCH_ITEMS
from muster.validation import NO_CONTROL_CHARS

__all__ = [
    "ALERT_TRANSITIONS",
    "CRITICALITY_RANK",
    "MAX_BULK_ITEMS",
    "MAX_LIST_LIMIT",
    "MAX_OFFSET",
    "AlertStatus",
    "AlertUpdateInput",
    "CycleAlertRecord",
    "DependencyInput",
    "DependencyRecord",
    "Direction",
    "GraphServiceRecord",
    "ImpactQuery",
    "ListServicesQuery",
    "ServiceInput",
    "TraverseQuery",
    "UpsertDependenciesInput",
    "UpsertServicesInput",
    "check_transition",
    "new_id",
    "require_existable",
    "service_id_can_exist",
]

ServiceCriticality = Literal["critical", "high", "medium", "low"]
EdgeCriticality = Literal["hard", "soft", "degraded"]
CommunicationMode = Literal["sync", "async"]
DiscoverySource = Literal["manual", "otel_service_graph", "kubernetes", "service_mesh"]
AlertStatus = Literal["open", "acknowledged", "resolved"]
Direction = Literal["downstream", "upstream", "both"]

MAX_BULK_ITEMS: Final = MAX_BATCH_ITEMS
MAX_DEPTH: Final = 10
MAX_JSON_BYTES: Final = 16_384
MAX_LIST_LIMIT: Final = 1_000

# How strongly an edge carries a failure: a hard dependency fails with its target,
# a degraded one keeps running with less, a soft one barely notices.
CRITICALITY_RANK: Final[dict[str, int]] = {"hard": 3, "degraded": 2, "soft": 1}

# A service id travels in URL paths, so no "/" (a catalog name with "/" never matches one).
SERVICE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
MAX_SERVICE_ID: Final = 200
ServiceId = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_SERVICE_ID, pattern=SERVICE_ID_PATTERN)
]
# Free text (team, protocol, who acknowledged): no control characters (NO_CONTROL_CHARS).
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL_CHARS)]
MAX_OFFSET: Final = 1 << 31
# Notes may span lines: tab and line breaks pass, NUL and the other control characters do not.
_NOTES = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$"
Notes = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=_NOTES)]


def service_id_can_exist(service_id: str) -> bool:
    """Whether ``service_id`` is a valid id at all: one that is not cannot name a stored service."""
    return 0 < len(service_id) <= MAX_SERVICE_ID and _SERVICE_ID.fullmatch(service_id) is not None


def require_existable(service_id: str) -> None:
    """NotFound for an id no service can have (a NUL, a slash, too long), without asking the database."""
    if not service_id_can_exist(service_id):
        raise NotFound(f"graph service {service_id!r} does not exist", field="service_id")


_SERVICE_ID = re.compile(SERVICE_ID_PATTERN)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def _rule(message: str) -> PydanticCustomError:
    """A validation failure whose message is the rule itself (no "Value error," prefix)."""
    return PydanticCustomError("graph_rule", message)


def _bounded_json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """At most MAX_JSON_BYTES of JSON that both engines store as given (and both doors accept alike)."""
    if value is None:
        return value
    try:
        payload = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # an integer beyond 64 bits, nesting past 255 levels
        raise _rule(f"must be JSON that fits: {exc}") from exc
    if len(payload) > MAX_JSON_BYTES:
        raise _rule(f"must serialise to at most {MAX_JSON_BYTES} bytes of JSON")
    if b"\\u0000" in payload:
        raise _rule("must not contain the NUL character (\\u0000)")
    if b"null" in payload and _has_non_finite(value):  # orjson writes NaN and Infinity as null
        raise _rule("must not contain NaN or Infinity (JSON has neither)")
    return value


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceInput(_Input):
    """One service of ``PUT /graph/services``: its whole description (a PUT replaces it)."""

    service_id: ServiceId
    metadata: dict[str, Any] = Field(default_factory=dict)
    criticality: ServiceCriticality = "medium"
    team: Text | None = None

    _metadata_size = field_validator("metadata")(_bounded_json)


class DependencyInput(_Input):
    """One edge of ``PUT /graph/dependencies``: ``source_service_id`` depends on ``target_service_id``."""

    source_service_id: ServiceId
    target_service_id: ServiceId
    communication_mode: CommunicationMode = "sync"
    criticality: EdgeCriticality = "hard"
    protocol: Annotated[str, StringConstraints(min_length=1, max_length=50, pattern=NO_CONTROL_CHARS)] | None = None
    timeout_ms: int | None = Field(None, gt=0, le=86_400_000, strict=True)
    retry_config: dict[str, Any] | None = None
    discovery_source: DiscoverySource = "manual"
    confidence_score: float = Field(1.0, ge=0.0, le=1.0, allow_inf_nan=False, strict=True)

    _retry_size = field_validator("retry_config")(_bounded_json)

    @model_validator(mode="after")
    def _no_self_loop(self) -> DependencyInput:
        if self.source_service_id == self.target_service_id:
            raise _rule("a service cannot depend on itself (source_service_id equals target_service_id)")
        return self

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source_service_id, self.target_service_id, self.discovery_source)


class UpsertServicesInput(_Input):
    services: list[ServiceInput] = Field(min_length=1, max_length=MAX_BULK_ITEMS)

    @field_validator("services")
    @classmethod
    def _unique(cls, value: list[ServiceInput]) -> list[ServiceInput]:
        seen: dict[str, int] = {}
        for position, item in enumerate(value):
            if item.service_id in seen:
                raise _rule(
                    f"service_id {item.service_id!r} appears at [{seen[item.service_id]}] and [{position}]"
                )
            seen[item.service_id] = position
        return value


class UpsertDependenciesInput(_Input):
    dependencies: list[DependencyInput] = Field(min_length=1, max_length=MAX_BULK_ITEMS)

    @field_validator("dependencies")
    @classmethod
    def _unique(cls, value: list[DependencyInput]) -> list[DependencyInput]:
        seen: dict[tuple[str, str, str], int] = {}
        for position, item in enumerate(value):
            key = item.key
            if key in seen:
                raise _rule(f"edge {key[0]} -> {key[1]} ({key[2]}) appears at [{seen[key]}] and [{position}]")
            seen[key] = position
        return value


class ListServicesQuery(_Input):
    team: Text | None = None
    criticality: ServiceCriticality | None = None
    limit: int = Field(100, ge=1, le=MAX_LIST_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


class TraverseQuery(_Input):
    """``GET /graph/services/{id}/traverse``. ``both`` = union of the upstream and downstream traversals."""

    service_id: ServiceId
    direction: Direction = "downstream"
    depth: int = Field(3, ge=1, le=MAX_DEPTH)
    include_stale: bool = False


class ImpactQuery(_Input):
    service_id: ServiceId


class AlertUpdateInput(_Input):
    """``PATCH /graph/alerts/{id}``: acknowledge (who) or resolve (with notes)."""

    status: Literal["acknowledged", "resolved"]
    acknowledged_by: Text | None = None
    resolution_notes: Notes | None = None

    @model_validator(mode="after")
    def _who_acknowledged(self) -> AlertUpdateInput:
        if self.status == "acknowledged" and self.acknowledged_by is None:
            raise _rule("acknowledged_by is required to acknowledge an alert")
        return self


# open → acknowledged → resolved, and open → resolved. Resolved is final.
ALERT_TRANSITIONS: Final[frozenset[tuple[str, str]]] = frozenset(
    {("open", "acknowledged"), ("open", "resolved"), ("acknowledged", "resolved")}
)


def check_transition(current: str, new: str) -> None:
    """Raise ``FailedPrecondition`` unless ``current → new`` is an allowed alert transition."""
    if (current, new) not in ALERT_TRANSITIONS:
        allowed = sorted(to for frm, to in ALERT_TRANSITIONS if frm == current)
        hint = f"allowed: {', '.join(allowed)}" if allowed else "resolved is final"
        raise FailedPrecondition(f"alert is {current}; cannot move to {new} ({hint})", field="status")


# -- records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphServiceRecord:
    id: str
    service_id: str
    metadata: dict[str, Any]
    criticality: str
    team: str | None
    discovered: bool
    created_at: datetime
    updated_at: datetime
    # The principal that first declared it: only it (or an admin) may delete it.
    owner: str = "anonymous"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "service_id": self.service_id,
            "metadata": self.metadata,
            "criticality": self.criticality,
            "team": self.team,
            "discovered": self.discovered,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "owner": self.owner,
        }


@dataclass(frozen=True, slots=True)
class DependencyRecord:
    id: str
    source_service_id: str
    target_service_id: str
    communication_mode: str
    criticality: str
    protocol: str | None
    timeout_ms: int | None
    retry_config: dict[str, Any] | None
    discovery_source: str
    confidence_score: float
    last_observed_at: datetime
    is_stale: bool
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source_service_id": self.source_service_id,
            "target_service_id": self.target_service_id,
            "communication_mode": self.communication_mode,
            "criticality": self.criticality,
            "protocol": self.protocol,
            "timeout_ms": self.timeout_ms,
            "retry_config": self.retry_config,
            "discovery_source": self.discovery_source,
            "confidence_score": self.confidence_score,
            "last_observed_at": isoformat(self.last_observed_at),
            "is_stale": self.is_stale,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class CycleAlertRecord:
    id: str
    members: list[str]
    cycle_path: list[str]
    status: str
    acknowledged_by: str | None
    resolution_notes: str | None
    detected_at: datetime
    updated_at: datetime
    resolved_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "members": self.members,
            "cycle_path": self.cycle_path,
            "status": self.status,
            "acknowledged_by": self.acknowledged_by,
            "resolution_notes": self.resolution_notes,
            "detected_at": isoformat(self.detected_at),
            "updated_at": isoformat(self.updated_at),
            "resolved_at": isoformat(self.resolved_at),
        }
