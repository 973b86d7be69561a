import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GraphServiceInput(_message.Message):
    __slots__ = ("service_id", "metadata_json", "criticality", "team")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    metadata_json: str
    criticality: str
    team: str
    def __init__(self, service_id: _Optional[str] = ..., metadata_json: _Optional[str] = ..., criticality: _Optional[str] = ..., team: _Optional[str] = ...) -> None: ...

class UpsertServicesRequest(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[GraphServiceInput]
    def __init__(self, services: _Optional[_Iterable[_Union[GraphServiceInput, _Mapping]]] = ...) -> None: ...

class DependencyInput(_message.Message):
    __slots__ = ("source_service_id", "target_service_id", "communication_mode", "criticality", "protocol", "timeout_ms", "retry_config_json", "discovery_source", "confidence_score")
    SOURCE_SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMUNICATION_MODE_FIELD_NUMBER: _ClassVar[int]
    CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_SCORE_FIELD_NUMBER: _ClassVar[int]
    source_service_id: str
    target_service_id: str
    communication_mode: str
    criticality: str
    protocol: str
    timeout_ms: int
    retry_config_json: str
    discovery_source: str
    confidence_score: float
    def __init__(self, source_service_id: _Optional[str] = ..., target_service_id: _Optional[str] = ..., communication_mode: _Optional[str] = ..., criticality: _Optional[str] = ..., protocol: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., retry_config_json: _Optional[str] = ..., discovery_source: _Optional[str] = ..., confidence_score: _Optional[float] = ...) -> None: ...

class UpsertDependenciesRequest(_message.Message):
    __slots__ = ("dependencies",)
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    dependencies: _containers.RepeatedCompositeFieldContainer[DependencyInput]
    def __init__(self, dependencies: _Optional[_Iterable[_Union[DependencyInput, _Mapping]]] = ...) -> None: ...

class UpsertReply(_message.Message):
    __slots__ = ("upserted", "discovered")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    DISCOVERED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    discovered: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, upserted: _Optional[int] = ..., discovered: _Optional[_Iterable[str]] = ...) -> None: ...

class GraphService(_message.Message):
    __slots__ = ("id", "service_id", "metadata_json", "criticality", "team", "discovered", "created_at", "updated_at", "owner")
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    DISCOVERED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    id: str
    service_id: str
    metadata_json: str
    criticality: str
    team: str
    discovered: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    owner: str
    def __init__(self, id: _Optional[str] = ..., service_id: _Optional[str] = ..., metadata_json: _Optional[str] = ..., criticality: _Optional[str] = ..., team: _Optional[str] = ..., discovered: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ...) -> None: ...

class GraphServiceRef(_message.Message):
    __slots__ = ("service_id",)
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    def __init__(self, service_id: _Optional[str] = ...) -> None: ...

class ListGraphServicesRequest(_message.Message):
    __slots__ = ("team", "criticality", "limit", "offset")
    TEAM_FIELD_NUMBER: _ClassVar[int]
    CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    team: str
    criticality: str
    limit: int
    offset: int
    def __init__(self, team: _Optional[str] = ..., criticality: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListGraphServicesReply(_message.Message):
    __slots__ = ("services", "total")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[GraphService]
    total: int
    def __init__(self, services: _Optional[_Iterable[_Union[GraphService, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class DeleteGraphServiceReply(_message.Message):
    __slots__ = ("service_id", "deleted")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    deleted: bool
    def __init__(self, service_id: _Optional[str] = ..., deleted: _Optional[bool] = ...) -> None: ...

class Dependency(_message.Message):
    __slots__ = ("id", "source_service_id", "target_service_id", "communication_mode", "criticality", "protocol", "timeout_ms", "retry_config_json", "discovery_source", "confidence_score", "last_observed_at", "is_stale", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMUNICATION_MODE_FIELD_NUMBER: _ClassVar[int]
    CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_SCORE_FIELD_NUMBER: _ClassVar[int]
    LAST_OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    IS_STALE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    source_service_id: str
    target_service_id: str
    communication_mode: str
    criticality: str
    protocol: str
    timeout_ms: int
    retry_config_json: str
    discovery_source: str
    confidence_score: float
    last_observed_at: _timestamp_pb2.Timestamp
    is_stale: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., source_service_id: _Optional[str] = ..., target_service_id: _Optional[str] = ..., communication_mode: _Optional[str] = ..., criticality: _Optional[str] = ..., protocol: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., retry_config_json: _Optional[str] = ..., discovery_source: _Optional[str] = ..., confidence_score: _Optional[float] = ..., last_observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., is_stale: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EdgesRequest(_message.Message):
    __slots__ = ("service_id", "include_stale")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STALE_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    include_stale: bool
    def __init__(self, service_id: _Optional[str] = ..., include_stale: _Optional[bool] = ...) -> None: ...

class EdgesReply(_message.Message):
    __slots__ = ("service_id", "edges")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    edges: _containers.RepeatedCompositeFieldContainer[Dependency]
    def __init__(self, service_id: _Optional[str] = ..., edges: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ...) -> None: ...

class TraverseRequest(_message.Message):
    __slots__ = ("service_id", "direction", "depth", "include_stale")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STALE_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    direction: str
    depth: int
    include_stale: bool
    def __init__(self, service_id: _Optional[str] = ..., direction: _Optional[str] = ..., depth: _Optional[int] = ..., include_stale: _Optional[bool] = ...) -> None: ...

class ReachedService(_message.Message):
    __slots__ = ("service_id", "distance", "direction")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    distance: int
    direction: str
    def __init__(self, service_id: _Optional[str] = ..., distance: _Optional[int] = ..., direction: _Optional[str] = ...) -> None: ...

class EdgeRef(_message.Message):
    __slots__ = ("source", "target", "criticality")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    criticality: str
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., criticality: _Optional[str] = ...) -> None: ...

class TraverseReply(_message.Message):
    __slots__ = ("service_id", "direction", "depth", "services", "edges")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    direction: str
    depth: int
    services: _containers.RepeatedCompositeFieldContainer[ReachedService]
    edges: _containers.RepeatedCompositeFieldContainer[EdgeRef]
    def __init__(self, service_id: _Optional[str] = ..., direction: _Optional[str] = ..., depth: _Optional[int] = ..., services: _Optional[_Iterable[_Union[ReachedService, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[EdgeRef, _Mapping]]] = ...) -> None: ...

class ImpactedService(_message.Message):
    __slots__ = ("service_id", "distance", "path_criticality")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    PATH_CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    distance: int
    path_criticality: str
    def __init__(self, service_id: _Optional[str] = ..., distance: _Optional[int] = ..., path_criticality: _Optional[str] = ...) -> None: ...

class ImpactReply(_message.Message):
    __slots__ = ("service_id", "total", "by_path_criticality", "impacted")
    class ByPathCriticalityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    BY_PATH_CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    IMPACTED_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    total: int
    by_path_criticality: _containers.ScalarMap[str, int]
    impacted: _containers.RepeatedCompositeFieldContainer[ImpactedService]
    def __init__(self, service_id: _Optional[str] = ..., total: _Optional[int] = ..., by_path_criticality: _Optional[_Mapping[str, int]] = ..., impacted: _Optional[_Iterable[_Union[ImpactedService, _Mapping]]] = ...) -> None: ...

class CycleAlert(_message.Message):
    __slots__ = ("id", "members", "cycle_path", "status", "acknowledged_by", "resolution_notes", "detected_at", "updated_at", "resolved_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    CYCLE_PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTES_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    members: _containers.RepeatedScalarFieldContainer[str]
    cycle_path: _containers.RepeatedScalarFieldContainer[str]
    status: str
    acknowledged_by: str
    resolution_notes: str
    detected_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    resolved_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., members: _Optional[_Iterable[str]] = ..., cycle_path: _Optional[_Iterable[str]] = ..., status: _Optional[str] = ..., acknowledged_by: _Optional[str] = ..., resolution_notes: _Optional[str] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resolved_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DetectCyclesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DetectCyclesReply(_message.Message):
    __slots__ = ("components", "opened", "unchanged", "resolved")
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    components: int
    opened: _containers.RepeatedCompositeFieldContainer[CycleAlert]
    unchanged: _containers.RepeatedCompositeFieldContainer[CycleAlert]
    resolved: _containers.RepeatedCompositeFieldContainer[CycleAlert]
    def __init__(self, components: _Optional[int] = ..., opened: _Optional[_Iterable[_Union[CycleAlert, _Mapping]]] = ..., unchanged: _Optional[_Iterable[_Union[CycleAlert, _Mapping]]] = ..., resolved: _Optional[_Iterable[_Union[CycleAlert, _Mapping]]] = ...) -> None: ...

class ListCycleAlertsRequest(_message.Message):
    __slots__ = ("status", "limit", "offset")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    status: str
    limit: int
    offset: int
    def __init__(self, status: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListCycleAlertsReply(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[CycleAlert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[CycleAlert, _Mapping]]] = ...) -> None: ...

class UpdateAlertRequest(_message.Message):
    __slots__ = ("id", "status", "acknowledged_by", "resolution_notes")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_NOTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    acknowledged_by: str
    resolution_notes: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., acknowledged_by: _Optional[str] = ..., resolution_notes: _Optional[str] = ...) -> None: ...

class MarkStaleRequest(_message.Message):
    __slots__ = ("older_than_hours",)
    OLDER_THAN_HOURS_FIELD_NUMBER: _ClassVar[int]
    older_than_hours: float
    def __init__(self, older_than_hours: _Optional[float] = ...) -> None: ...

class MarkStaleReply(_message.Message):
    __slots__ = ("marked_stale", "older_than_hours")
    MARKED_STALE_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_HOURS_FIELD_NUMBER: _ClassVar[int]
    marked_stale: int
    older_than_hours: float
    def __init__(self, marked_stale: _Optional[int] = ..., older_than_hours: _Optional[float] = ...) -> None: ...

class ListFindingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Finding(_message.Message):
    __slots__ = ("kind", "service_id", "service_criticality", "depends_on", "dependency_criticality", "edge_criticality", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    EDGE_CRITICALITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    service_id: str
    service_criticality: str
    depends_on: str
    dependency_criticality: str
    edge_criticality: str
    message: str
    def __init__(self, kind: _Optional[str] = ..., service_id: _Optional[str] = ..., service_criticality: _Optional[str] = ..., depends_on: _Optional[str] = ..., dependency_criticality: _Optional[str] = ..., edge_criticality: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListFindingsReply(_message.Message):
    __slots__ = ("findings",)
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    def __init__(self, findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ...) -> None: ...
