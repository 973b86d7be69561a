"""Protobuf messages of the bridge from its domain objects, and back: what the servicer sends and reads."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime

from google.protobuf import any_pb2, timestamp_pb2  # type: ignore[import-untyped, unused-ignore]

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster.bridge import values
from muster.bridge.adapter import ToolInfo
from muster.bridge.service import ToolOutcome
from muster.bridge.session import VariableEvent
from muster.bridge.variables import Variable
from muster.errors import Invalid

__all__ = [
    "decode_all",
    "timestamp",
    "tool_chunk",
    "tool_response",
    "tool_spec_to_proto",
    "update_to_proto",
    "variable_to_proto",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    """``Timestamp.FromDatetime`` in integer arithmetic: exact, and a third of its cost (~1 µs, not ~3)."""
    since = (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)) - _EPOCH
    return timestamp_pb2.Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def variable_to_proto(variable: Variable, *, include_metadata: bool = True) -> pb2.Variable:
    return pb2.Variable(
        id=variable.id,
        name=variable.name,
        type=variable.type,
        value=values.encode(variable.value, variable.type),
        constraints_json=variable.constraints_json,
        metadata=dict(variable.metadata) if include_metadata else None,
        source=variable.source.name,
        last_updated_at=timestamp(variable.last_updated_at),
    )


def tool_spec_to_proto(info: ToolInfo) -> pb2.ToolSpec:
    parameters = []
    for parameter in info.parameters:
        spec = pb2.ParameterSpec(
            name=parameter.name,
            type=parameter.type,
            description=parameter.description,
            required=parameter.required,
        )
        if not parameter.required:
            with contextlib.suppress(Invalid):  # a default JSON cannot carry is left unset
                spec.default_value.CopyFrom(values.encode(parameter.default))
        parameters.append(spec)
    return pb2.ToolSpec(
        name=info.name, description=info.description, parameters=parameters, metadata=dict(info.metadata)
    )


def update_to_proto(event: VariableEvent) -> pb2.VariableUpdate:
    return pb2.VariableUpdate(
        variable_id=event.variable.id,
        variable=variable_to_proto(event.variable),
        update_source=event.update_source,
        update_metadata=dict(event.metadata),
        timestamp=timestamp(event.timestamp),
        deleted=event.deleted,
    )


def decode_all(packed: Mapping[str, any_pb2.Any]) -> tuple[dict[str, values.TypedValue], dict[str, str]]:
    decoded: dict[str, values.TypedValue] = {}
    refused: dict[str, str] = {}
    for key, value in packed.items():
        try:
            decoded[key] = values.decode(value, field=key)
        except Invalid as exc:
            refused[key] = str(exc)
    return decoded, refused


def tool_response(outcome: ToolOutcome) -> pb2.ExecuteToolResponse:
    if not outcome.success:
        return pb2.ExecuteToolResponse(
            success=False, error_message=outcome.error_message, metadata={"error_type": outcome.error_type}
        )
    try:
        result = values.encode(outcome.value)
    except Invalid as exc:
        return pb2.ExecuteToolResponse(
            success=False, error_message=f"Invalid: result {exc.rule}", metadata={"error_type": "Invalid"}
        )
    return pb2.ExecuteToolResponse(success=True, result=result)


def tool_chunk(outcome: ToolOutcome, chunk_id: str) -> pb2.ToolChunk:
    """A data chunk, or a final failed chunk when the outcome (or its encoding) failed."""
    if outcome.success:
        try:
            return pb2.ToolChunk(chunk_id=chunk_id, data=values.encode(outcome.value))
        except Invalid as exc:
            outcome = ToolOutcome(False, error_message=f"Invalid: item {exc.rule}", error_type="Invalid")
    return pb2.ToolChunk(
        chunk_id=chunk_id,
        is_final=True,
        success=False,
        error_message=outcome.error_message,
        metadata={"error_type": outcome.error_type},
    )
