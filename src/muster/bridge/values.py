"""Values on the wire: ``google.protobuf.Any`` packed the snakepit way.

``type_url`` is ``type.googleapis.com/snakepit.<type>`` and ``value`` is the
UTF-8 JSON of the value. Non-finite floats travel as the JSON strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"``. Integers stay integers. The
standard wrapper messages (``StringValue``, ``DoubleValue``, ``Int64Value``,
``BoolValue`` and friends) are decoded too, for clients that use ``Any.Pack``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any as AnyValue
from typing import Final

import orjson
from google.protobuf import any_pb2, wrappers_pb2  # type: ignore[import-untyped, unused-ignore]

from muster.errors import Invalid

__all__ = [
    "JSON_TYPE",
    "TYPE_URL_PREFIX",
    "TypedValue",
    "decode",
    "encode",
    "infer_type",
    "type_url_for",
]

TYPE_URL_PREFIX: Final = "type.googleapis.com/snakepit."
JSON_TYPE: Final = "json"

_FLOAT_SPELLINGS: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FLOAT_TYPES: Final = frozenset({"float", "embedding", "tensor"})

# Standard wrapper messages → (snakepit type, message class).
_WRAPPERS: Final[dict[str, tuple[str, type[AnyValue]]]] = {
    "type.googleapis.com/google.protobuf.StringValue": ("string", wrappers_pb2.StringValue),
    "type.googleapis.com/google.protobuf.DoubleValue": ("float", wrappers_pb2.DoubleValue),
    "type.googleapis.com/google.protobuf.FloatValue": ("float", wrappers_pb2.FloatValue),
    "type.googleapis.com/google.protobuf.Int64Value": ("integer", wrappers_pb2.Int64Value),
    "type.googleapis.com/google.protobuf.Int32Value": ("integer", wrappers_pb2.Int32Value),
    "type.googleapis.com/google.protobuf.UInt64Value": ("integer", wrappers_pb2.UInt64Value),
    "type.googleapis.com/google.protobuf.UInt32Value": ("integer", wrappers_pb2.UInt32Value),
    "type.googleapis.com/google.protobuf.BoolValue": ("boolean", wrappers_pb2.BoolValue),
}


@dataclass(frozen=True, slots=True)
class TypedValue:
    """A decoded value and the type its ``type_url`` named."""

    type: str
    value: AnyValue


def type_url_for(type_name: str) -> str:
    return TYPE_URL_PREFIX + type_name


def infer_type(value: AnyValue) -> str:
    """The snakepit type a bare Python value travels as."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return JSON_TYPE


def _spell_floats(value: AnyValue) -> AnyValue:
    """Replace non-finite floats (anywhere in the value) by their JSON spellings."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, list | tuple):
        return [_spell_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: _spell_floats(item) for key, item in value.items()}
    return value


def _read_floats(value: AnyValue) -> AnyValue:
    """Turn the JSON spellings of non-finite floats back into floats (inside lists too)."""
    if isinstance(value, str):
        return _FLOAT_SPELLINGS.get(value, value)
    if isinstance(value, list):
        return [_read_floats(item) for item in value]
    if isinstance(value, dict):
        return {key: _read_floats(item) for key, item in value.items()}
    return value


# gRPC's own default is 4 MiB a message. Tensors and embeddings outgrow that quickly, and the replies
# of InitializeSession and ListVariables carry every variable of a session, so the worker and
# BridgeClient take 64 MiB each way unless told otherwise (--max-message-mb).
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024


def message_size_options(max_bytes: int) -> list[tuple[str, int]]:
    """gRPC channel and server options for messages up to ``max_bytes`` each way."""
    return [("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes)]

# Integers travel as JSON numbers that every side reads as a 64-bit integer.
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1


def encode(value: AnyValue, type_name: str | None = None) -> any_pb2.Any:
    """Pack ``value`` as ``type_name`` (inferred from the value when omitted).

    Raises ``Invalid`` when the value is not JSON-serialisable.
    """
    type_name = type_name or infer_type(value)
    if isinstance(value, float) and math.isfinite(value):
        payload = orjson.dumps(value)  # the common case, without the walk
    else:
        try:
            payload = orjson.dumps(_spell_floats(value), option=orjson.OPT_NON_STR_KEYS)
        except TypeError as exc:
            raise Invalid("value", f"{type(value).__name__} is not JSON-serialisable: {exc}") from exc
        except RecursionError as exc:  # a value that contains itself, or nests thousands deep
            raise Invalid("value", f"{type(value).__name__} nests too deep (or contains itself)") from exc
    return any_pb2.Any(type_url=TYPE_URL_PREFIX + type_name, value=payload)


def decode(packed: any_pb2.Any, *, field: str = "value") -> TypedValue:
    """Unpack a snakepit JSON Any or a standard wrapper into a Python value.

    ``field`` names the input in the ``Invalid`` raised for a malformed value.
    """
    type_url = packed.type_url
    if type_url.startswith(TYPE_URL_PREFIX):
        type_name = type_url[len(TYPE_URL_PREFIX) :]
        try:
            raw = orjson.loads(packed.value) if packed.value else None
        except orjson.JSONDecodeError as exc:
            raise Invalid(field, f"value of type {type_name!r} is not valid UTF-8 JSON: {exc}") from exc
        if type_name in _FLOAT_TYPES:
            try:
                raw = _read_floats(raw)
            except RecursionError as exc:
                raise Invalid(field, f"value of type {type_name!r} nests too deep") from exc
        return TypedValue(type_name, raw)
    wrapper = _WRAPPERS.get(type_url)
    if wrapper is not None:
        type_name, message_class = wrapper
        message = message_class()
        if not packed.Unpack(message):  # pragma: no cover - type_url checked above
            raise Invalid(field, f"cannot unpack {type_url}")
        return TypedValue(type_name, message.value)
    if not type_url:
        raise Invalid(field, "a value is required (the Any has no type_url)")
    raise Invalid(
        field,
        f"unsupported type_url {type_url!r}: use {TYPE_URL_PREFIX}<type> with a JSON value "
        "or a google.protobuf wrapper type",
    )
