"""The Any convention: snakepit JSON values and the standard wrappers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from google.protobuf import any_pb2, wrappers_pb2
from hypothesis import given
from hypothesis import strategies as st

from muster.bridge import values
from muster.errors import Invalid


def test_type_url_and_payload_follow_snakepit() -> None:
    """An integer travels as type.googleapis.com/snakepit.integer with its JSON text."""
    packed = values.encode(42)
    assert (packed.type_url, packed.value) == ("type.googleapis.com/snakepit.integer", b"42")


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(1.5, "float"), (7, "integer"), ("hi", "string"), (True, "boolean"), ({"a": [1, None]}, "json"), (None, "json")],
)
def test_round_trip_keeps_type_and_value(value: Any, type_name: str) -> None:
    """Encoding then decoding gives back the value and the inferred type."""
    assert values.TypedValue(type_name, value) == values.decode(values.encode(value))


def test_integers_stay_integers() -> None:
    """A decoded integer is an int, not a float."""
    decoded = values.decode(values.encode(2**53 + 1))
    assert (int, 2**53 + 1) == (type(decoded.value), decoded.value)


@pytest.mark.parametrize(("number", "spelling"), [(math.inf, b'"Infinity"'), (-math.inf, b'"-Infinity"')])
def test_infinities_travel_as_strings(number: float, spelling: bytes) -> None:
    """Infinity and -Infinity are the JSON strings snakepit uses, and decode back to floats."""
    packed = values.encode(number)
    assert spelling == packed.value
    assert number == values.decode(packed).value


def test_nan_travels_as_string() -> None:
    """NaN is the JSON string "NaN" and decodes to a float NaN."""
    packed = values.encode(math.nan)
    assert packed.value == b'"NaN"'
    assert math.isnan(values.decode(packed).value)


def test_non_finite_numbers_inside_embeddings() -> None:
    """Non-finite numbers inside an embedding are spelled out and read back."""
    decoded = values.decode(values.encode([1.0, math.inf, -math.inf], "embedding")).value
    assert [1.0, math.inf, -math.inf] == decoded


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (wrappers_pb2.StringValue(value="s"), values.TypedValue("string", "s")),
        (wrappers_pb2.DoubleValue(value=2.5), values.TypedValue("float", 2.5)),
        (wrappers_pb2.Int64Value(value=-9), values.TypedValue("integer", -9)),
        (wrappers_pb2.BoolValue(value=True), values.TypedValue("boolean", True)),
    ],
)
def test_standard_wrappers_decode(message: Any, expected: values.TypedValue) -> None:
    """A value packed with Any.Pack from a standard wrapper decodes to its snakepit type."""
    packed = any_pb2.Any()
    packed.Pack(message)
    assert expected == values.decode(packed)


def test_unknown_type_url_is_refused_with_the_field() -> None:
    """An unsupported type_url is Invalid and names the field."""
    with pytest.raises(Invalid) as caught:
        values.decode(any_pb2.Any(type_url="type.googleapis.com/foo.Bar", value=b""), field="x")
    assert caught.value.field == "x"


def test_bad_json_is_refused() -> None:
    """A snakepit Any whose value is not JSON is Invalid, naming the type."""
    with pytest.raises(Invalid, match="not valid UTF-8 JSON"):
        values.decode(any_pb2.Any(type_url=values.type_url_for("integer"), value=b"{"))


def test_empty_any_is_refused() -> None:
    """An Any without a type_url is refused: a value is required."""
    with pytest.raises(Invalid, match="a value is required"):
        values.decode(any_pb2.Any())


def test_unserialisable_value_is_refused() -> None:
    """A value JSON cannot carry is Invalid rather than a crash."""
    with pytest.raises(Invalid, match="not JSON-serialisable"):
        values.encode(object())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=10,
)


@given(json_values)
def test_any_json_document_round_trips(value: Any) -> None:
    """Every JSON document survives encode/decode unchanged."""
    assert value == values.decode(values.encode(value)).value


@given(st.floats())
def test_every_float_round_trips(number: float) -> None:
    """Every float, including the non-finite ones, survives encode/decode."""
    decoded = values.decode(values.encode(number)).value
    assert (math.isnan(number) and math.isnan(decoded)) or number == decoded
