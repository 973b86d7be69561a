import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("since", "kind_prefix", "subject_prefix")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    KIND_PREFIX_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    since: int
    kind_prefix: str
    subject_prefix: str
    def __init__(self, since: _Optional[int] = ..., kind_prefix: _Optional[str] = ..., subject_prefix: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("revision", "kind", "subject", "payload_json", "ts", "actor")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_JSON_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    revision: int
    kind: str
    subject: str
    payload_json: str
    ts: _timestamp_pb2.Timestamp
    actor: str
    def __init__(self, revision: _Optional[int] = ..., kind: _Optional[str] = ..., subject: _Optional[str] = ..., payload_json: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...
