from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReserveRequest(_message.Message):
    __slots__ = ("repo", "branch", "fq_name", "kind", "file_path", "plan_id", "ttl_sec")
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    FQ_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SEC_FIELD_NUMBER: _ClassVar[int]
    repo: str
    branch: str
    fq_name: str
    kind: str
    file_path: str
    plan_id: str
    ttl_sec: int
    def __init__(self, repo: _Optional[str] = ..., branch: _Optional[str] = ..., fq_name: _Optional[str] = ..., kind: _Optional[str] = ..., file_path: _Optional[str] = ..., plan_id: _Optional[str] = ..., ttl_sec: _Optional[int] = ...) -> None: ...

class ReserveReply(_message.Message):
    __slots__ = ("lease_id", "status", "expires_at", "lease")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    status: str
    expires_at: str
    lease: Lease
    def __init__(self, lease_id: _Optional[int] = ..., status: _Optional[str] = ..., expires_at: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class ClaimRequest(_message.Message):
    __slots__ = ("lease_id", "commit_sha")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SHA_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    commit_sha: str
    def __init__(self, lease_id: _Optional[int] = ..., commit_sha: _Optional[str] = ...) -> None: ...

class ClaimReply(_message.Message):
    __slots__ = ("status", "lease")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    status: str
    lease: Lease
    def __init__(self, status: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("repo", "branch", "fq_name")
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    FQ_NAME_FIELD_NUMBER: _ClassVar[int]
    repo: str
    branch: str
    fq_name: str
    def __init__(self, repo: _Optional[str] = ..., branch: _Optional[str] = ..., fq_name: _Optional[str] = ...) -> None: ...

class LookupReply(_message.Message):
    __slots__ = ("status", "file_path", "commit_sha", "lease")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SHA_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    status: str
    file_path: str
    commit_sha: str
    lease: Lease
    def __init__(self, status: _Optional[str] = ..., file_path: _Optional[str] = ..., commit_sha: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "repo", "branch", "fq_name", "kind", "file_path", "plan_id", "status", "commit_sha", "reserved_at", "expires_at", "updated_at", "owner")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    FQ_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SHA_FIELD_NUMBER: _ClassVar[int]
    RESERVED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    repo: str
    branch: str
    fq_name: str
    kind: str
    file_path: str
    plan_id: str
    status: str
    commit_sha: str
    reserved_at: str
    expires_at: str
    updated_at: str
    owner: str
    def __init__(self, lease_id: _Optional[int] = ..., repo: _Optional[str] = ..., branch: _Optional[str] = ..., fq_name: _Optional[str] = ..., kind: _Optional[str] = ..., file_path: _Optional[str] = ..., plan_id: _Optional[str] = ..., status: _Optional[str] = ..., commit_sha: _Optional[str] = ..., reserved_at: _Optional[str] = ..., expires_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    def __init__(self, lease_id: _Optional[int] = ...) -> None: ...

class ReleaseReply(_message.Message):
    __slots__ = ("status", "lease")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    status: str
    lease: Lease
    def __init__(self, status: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("lease_id", "ttl_sec")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SEC_FIELD_NUMBER: _ClassVar[int]
    lease_id: int
    ttl_sec: int
    def __init__(self, lease_id: _Optional[int] = ..., ttl_sec: _Optional[int] = ...) -> None: ...

class ExtendReply(_message.Message):
    __slots__ = ("status", "expires_at", "lease")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    status: str
    expires_at: str
    lease: Lease
    def __init__(self, status: _Optional[str] = ..., expires_at: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("repo", "branch", "since")
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    repo: str
    branch: str
    since: int
    def __init__(self, repo: _Optional[str] = ..., branch: _Optional[str] = ..., since: _Optional[int] = ...) -> None: ...

class LeaseEvent(_message.Message):
    __slots__ = ("revision", "kind", "lease", "ts", "actor")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    revision: int
    kind: str
    lease: Lease
    ts: str
    actor: str
    def __init__(self, revision: _Optional[int] = ..., kind: _Optional[str] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., ts: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class PlanSymbol(_message.Message):
    __slots__ = ("repo", "branch", "fq_name", "kind", "file_path")
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    FQ_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FILE_PATH_FIELD_NUMBER: _ClassVar[int]
    repo: str
    branch: str
    fq_name: str
    kind: str
    file_path: str
    def __init__(self, repo: _Optional[str] = ..., branch: _Optional[str] = ..., fq_name: _Optional[str] = ..., kind: _Optional[str] = ..., file_path: _Optional[str] = ...) -> None: ...

class ReservePlanRequest(_message.Message):
    __slots__ = ("plan_id", "symbols", "ttl_sec")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    TTL_SEC_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    symbols: _containers.RepeatedCompositeFieldContainer[PlanSymbol]
    ttl_sec: int
    def __init__(self, plan_id: _Optional[str] = ..., symbols: _Optional[_Iterable[_Union[PlanSymbol, _Mapping]]] = ..., ttl_sec: _Optional[int] = ...) -> None: ...

class PlanReply(_message.Message):
    __slots__ = ("plan_id", "leases")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    def __init__(self, plan_id: _Optional[str] = ..., leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class ReleasePlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class ReleasePlanReply(_message.Message):
    __slots__ = ("plan_id", "released", "leases")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    released: int
    leases: _containers.RepeatedCompositeFieldContainer[Lease]
    def __init__(self, plan_id: _Optional[str] = ..., released: _Optional[int] = ..., leases: _Optional[_Iterable[_Union[Lease, _Mapping]]] = ...) -> None: ...
