import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Service(_message.Message):
    __slots__ = ("service_id", "name", "type", "role", "url", "caps", "labels", "ctx_limit", "cost_hint_usd_per_1k", "heartbeat_interval_s", "ttl_s", "status", "registered_at", "last_heartbeat_ts", "p95_ms", "queue_depth", "load", "owner", "instance_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CTX_LIMIT_FIELD_NUMBER: _ClassVar[int]
    COST_HINT_USD_PER_1K_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    name: str
    type: str
    role: str
    url: str
    caps: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    ctx_limit: int
    cost_hint_usd_per_1k: float
    heartbeat_interval_s: int
    ttl_s: int
    status: str
    registered_at: _timestamp_pb2.Timestamp
    last_heartbeat_ts: _timestamp_pb2.Timestamp
    p95_ms: float
    queue_depth: int
    load: float
    owner: str
    instance_id: str
    def __init__(self, service_id: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., role: _Optional[str] = ..., url: _Optional[str] = ..., caps: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., ctx_limit: _Optional[int] = ..., cost_hint_usd_per_1k: _Optional[float] = ..., heartbeat_interval_s: _Optional[int] = ..., ttl_s: _Optional[int] = ..., status: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., p95_ms: _Optional[float] = ..., queue_depth: _Optional[int] = ..., load: _Optional[float] = ..., owner: _Optional[str] = ..., instance_id: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("name", "type", "role", "url", "caps", "labels", "ctx_limit", "cost_hint_usd_per_1k", "heartbeat_interval_s", "ttl_s", "instance_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CTX_LIMIT_FIELD_NUMBER: _ClassVar[int]
    COST_HINT_USD_PER_1K_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    role: str
    url: str
    caps: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    ctx_limit: int
    cost_hint_usd_per_1k: float
    heartbeat_interval_s: int
    ttl_s: int
    instance_id: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., role: _Optional[str] = ..., url: _Optional[str] = ..., caps: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., ctx_limit: _Optional[int] = ..., cost_hint_usd_per_1k: _Optional[float] = ..., heartbeat_interval_s: _Optional[int] = ..., ttl_s: _Optional[int] = ..., instance_id: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("service_id", "registered_at")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    registered_at: _timestamp_pb2.Timestamp
    def __init__(self, service_id: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("service_id", "status", "p95_ms", "queue_depth", "load")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    P95_MS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    status: str
    p95_ms: float
    queue_depth: int
    load: float
    def __init__(self, service_id: _Optional[str] = ..., status: _Optional[str] = ..., p95_ms: _Optional[float] = ..., queue_depth: _Optional[int] = ..., load: _Optional[float] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("service_id", "status", "received_at", "found", "error", "error_code", "error_field")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    status: str
    received_at: _timestamp_pb2.Timestamp
    found: bool
    error: str
    error_code: str
    error_field: str
    def __init__(self, service_id: _Optional[str] = ..., status: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., found: _Optional[bool] = ..., error: _Optional[str] = ..., error_code: _Optional[str] = ..., error_field: _Optional[str] = ...) -> None: ...

class HeartbeatBatch(_message.Message):
    __slots__ = ("beats",)
    BEATS_FIELD_NUMBER: _ClassVar[int]
    beats: _containers.RepeatedCompositeFieldContainer[HeartbeatRequest]
    def __init__(self, beats: _Optional[_Iterable[_Union[HeartbeatRequest, _Mapping]]] = ...) -> None: ...

class HeartbeatBatchReply(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[HeartbeatReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[HeartbeatReply, _Mapping]]] = ...) -> None: ...

class DiscoverRequest(_message.Message):
    __slots__ = ("name", "type", "role", "cap", "label", "status", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CAP_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    role: str
    cap: _containers.RepeatedScalarFieldContainer[str]
    label: _containers.RepeatedScalarFieldContainer[str]
    status: str
    limit: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., role: _Optional[str] = ..., cap: _Optional[_Iterable[str]] = ..., label: _Optional[_Iterable[str]] = ..., status: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DiscoverReply(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    def __init__(self, services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ...) -> None: ...

class PromoteRequest(_message.Message):
    __slots__ = ("service_id", "role")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    role: str
    def __init__(self, service_id: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("service_id",)
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    def __init__(self, service_id: _Optional[str] = ...) -> None: ...

class DeregisterReply(_message.Message):
    __slots__ = ("service_id", "deregistered")
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEREGISTERED_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    deregistered: bool
    def __init__(self, service_id: _Optional[str] = ..., deregistered: _Optional[bool] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ("status", "limit", "offset")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    status: str
    limit: int
    offset: int
    def __init__(self, status: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListServicesReply(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[Service]
    def __init__(self, services: _Optional[_Iterable[_Union[Service, _Mapping]]] = ...) -> None: ...

class GetServiceRequest(_message.Message):
    __slots__ = ("service_id",)
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    service_id: str
    def __init__(self, service_id: _Optional[str] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stats(_message.Message):
    __slots__ = ("total_services", "healthy_services", "degraded_services", "down_services", "last_check", "replicas", "self_preservation", "buses")
    TOTAL_SERVICES_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_SERVICES_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_SERVICES_FIELD_NUMBER: _ClassVar[int]
    DOWN_SERVICES_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECK_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SELF_PRESERVATION_FIELD_NUMBER: _ClassVar[int]
    BUSES_FIELD_NUMBER: _ClassVar[int]
    total_services: int
    healthy_services: int
    degraded_services: int
    down_services: int
    last_check: _timestamp_pb2.Timestamp
    replicas: int
    self_preservation: bool
    buses: _containers.RepeatedCompositeFieldContainer[BusSink]
    def __init__(self, total_services: _Optional[int] = ..., healthy_services: _Optional[int] = ..., degraded_services: _Optional[int] = ..., down_services: _Optional[int] = ..., last_check: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., replicas: _Optional[int] = ..., self_preservation: _Optional[bool] = ..., buses: _Optional[_Iterable[_Union[BusSink, _Mapping]]] = ...) -> None: ...

class BusSink(_message.Message):
    __slots__ = ("sink", "published_revision", "lag_revisions")
    SINK_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_REVISION_FIELD_NUMBER: _ClassVar[int]
    LAG_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    sink: str
    published_revision: int
    lag_revisions: int
    def __init__(self, sink: _Optional[str] = ..., published_revision: _Optional[int] = ..., lag_revisions: _Optional[int] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("limit", "since")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    limit: int
    since: _timestamp_pb2.Timestamp
    def __init__(self, limit: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("alert_id", "alert_type", "service_id", "service_name", "missed_beats", "last_seen", "action", "ts", "details_json", "actor")
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    MISSED_BEATS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    alert_id: int
    alert_type: str
    service_id: str
    service_name: str
    missed_beats: int
    last_seen: _timestamp_pb2.Timestamp
    action: str
    ts: _timestamp_pb2.Timestamp
    details_json: str
    actor: str
    def __init__(self, alert_id: _Optional[int] = ..., alert_type: _Optional[str] = ..., service_id: _Optional[str] = ..., service_name: _Optional[str] = ..., missed_beats: _Optional[int] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details_json: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class ListAlertsReply(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[Alert]
    def __init__(self, alerts: _Optional[_Iterable[_Union[Alert, _Mapping]]] = ...) -> None: ...
