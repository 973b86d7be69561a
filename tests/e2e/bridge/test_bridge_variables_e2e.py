"""Variables over the wire: every type and constraint, id-or-name access, batches, sources."""

from __future__ import annotations

import json
import math
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster.bridge import values
from muster.bridge.client import BridgeClient
from muster.errors import ResourceExhausted

# (type, constraints, a valid value, a value that breaks the constraint, the rule named on refusal)
CASES: list[tuple[str, dict[str, Any], Any, Any, str]] = [
    ("float", {"min": 0.0, "max": 1.0}, 0.25, 1.5, "max is 1.0"),
    ("float", {"min": 0.0}, 0.0, -0.5, "min is 0.0"),
    ("integer", {"min": 1, "max": 5}, 5, 6, "max is 5"),
    ("integer", {"min": 1}, 1, 0, "min is 1"),
    ("string", {"min_length": 2}, "ab", "a", "min_length is 2"),
    ("string", {"max_length": 2}, "ab", "abc", "max_length is 2"),
    ("string", {"pattern": "^[a-z]+$"}, "abc", "ABC", "pattern"),
    ("string", {"enum": ["x", "y"]}, "x", "z", "enum allows"),
    ("boolean", {}, True, "yes", "type boolean"),
    ("choice", {"choices": ["fast", "slow"]}, "slow", "medium", "choices are"),
    ("module", {"allowed_modules": ["dspy.Predict", "dspy.ChainOfThought"]}, "dspy.Predict", "os.system", "allowed"),
    ("embedding", {"dimensions": 3}, [0.1, 0.2, 0.3], [0.1, 0.2], "dimensions is 3"),
    ("tensor", {"shape": [2, 2]}, {"shape": [2, 2], "data": [[1, 2], [3, 4]]}, {"shape": [4], "data": [1, 2, 3, 4]},
     "shape is [2, 2]"),
    ("tensor", {}, {"shape": [2], "data": [1, 2]}, {"shape": [2], "data": [1, 2, 3]}, "does not match shape"),
]  # fmt: skip


def _register(session_id: str, name: str, type_name: str, value: Any, constraints: dict[str, Any]) -> Any:
    return pb2.RegisterVariableRequest(
        session_id=session_id,
        name=name,
        type=type_name,
        initial_value=values.encode(value, type_name),
        constraints_json=json.dumps(constraints) if constraints else "",
    )


@pytest.mark.parametrize(("type_name", "constraints", "good", "bad", "rule"), CASES)
async def test_each_type_and_constraint(
    client: BridgeClient, session_id: str, type_name: str, constraints: dict[str, Any], good: Any, bad: Any, rule: str
) -> None:
    """A valid value is stored and read back; a breaking one is refused, naming the variable and the rule."""
    registered = await client.stub.RegisterVariable(_register(session_id, "v", type_name, good, constraints))
    assert (registered.success, registered.error_message) == (True, "")
    refused = await client.stub.SetVariable(
        pb2.SetVariableRequest(session_id=session_id, variable_id="v", value=values.encode(bad, type_name))
    )
    assert refused.success is False
    assert refused.error_message.startswith("v: ") and rule in refused.error_message
    stored = (await client.stub.GetVariable(pb2.GetVariableRequest(session_id=session_id, variable_id="v"))).variable
    assert (stored.type, json.loads(stored.constraints_json or "{}")) == (type_name, constraints)
    assert values.decode(stored.value).value == values.decode(values.encode(good, type_name)).value


async def test_register_refuses_a_bad_initial_value(client: BridgeClient, session_id: str) -> None:
    """Registering with a value that breaks the constraints fails and stores nothing."""
    response = await client.stub.RegisterVariable(_register(session_id, "t", "float", 3.0, {"max": 2.0}))
    assert (response.success, response.error_message) == (False, "t: max is 2.0, got 3.0")
    listed = await client.stub.ListVariables(pb2.ListVariablesRequest(session_id=session_id))
    assert list(listed.variables) == []


async def test_get_by_id_or_name(client: BridgeClient, session_id: str) -> None:
    """GetVariable accepts the variable's id as well as its name."""
    registered = await client.stub.RegisterVariable(_register(session_id, "temperature", "float", 0.7, {}))
    by_id = await client.stub.GetVariable(
        pb2.GetVariableRequest(session_id=session_id, variable_id=registered.variable_id)
    )
    by_name = await client.stub.GetVariable(pb2.GetVariableRequest(session_id=session_id, variable_id="temperature"))
    assert by_id.variable == by_name.variable
    assert (by_id.variable.id, by_id.variable.name) == (registered.variable_id, "temperature")


async def test_set_unknown_variable_creates_it_from_the_type_url(client: BridgeClient, session_id: str) -> None:
    """SetVariable on an unknown name creates it with the value's type; source ELIXIR and a timestamp are set."""
    response = await client.stub.SetVariable(
        pb2.SetVariableRequest(session_id=session_id, variable_id="count", value=values.encode(41))
    )
    assert response.success
    variable = (
        await client.stub.GetVariable(pb2.GetVariableRequest(session_id=session_id, variable_id="count"))
    ).variable
    assert (variable.type, variable.value.value, variable.source) == ("integer", b"41", pb2.Variable.ELIXIR)
    assert variable.last_updated_at.seconds > 0


async def test_non_finite_floats_round_trip(client: BridgeClient, session_id: str) -> None:
    """NaN and infinities survive a round trip through a float variable."""
    for number in (math.inf, -math.inf, math.nan):
        await client.set_variable(session_id, "f", number, type_name="float")
        stored = await client.get_variable(session_id, "f")
        assert (math.isnan(number) and math.isnan(stored)) or stored == number


@pytest.mark.parametrize(
    ("message", "expected_type", "expected"),
    [
        (wrappers_pb2.StringValue(value="hi"), "string", "hi"),
        (wrappers_pb2.DoubleValue(value=0.5), "float", 0.5),
        (wrappers_pb2.Int64Value(value=7), "integer", 7),
        (wrappers_pb2.BoolValue(value=True), "boolean", True),
    ],
)
async def test_standard_wrappers_are_accepted(
    client: BridgeClient, session_id: str, message: Any, expected_type: str, expected: Any
) -> None:
    """A value packed from a google.protobuf wrapper creates a variable of the matching type."""
    packed = any_pb2.Any()
    packed.Pack(message)
    await client.stub.SetVariable(pb2.SetVariableRequest(session_id=session_id, variable_id="w", value=packed))
    variable = (await client.stub.GetVariable(pb2.GetVariableRequest(session_id=session_id, variable_id="w"))).variable
    assert (variable.type, values.decode(variable.value).value) == (expected_type, expected)


async def test_unknown_variable_is_not_found(client: BridgeClient, session_id: str) -> None:
    """GetVariable of a name that does not exist answers NOT_FOUND."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.GetVariable(pb2.GetVariableRequest(session_id=session_id, variable_id="ghost"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def _batch(session_id: str, atomic: bool, **updates: Any) -> Any:
    return pb2.BatchSetVariablesRequest(
        session_id=session_id,
        updates={name: values.encode(value) for name, value in updates.items()},
        metadata={"reason": "test"},
        atomic=atomic,
    )


async def test_atomic_batch_is_all_or_nothing(client: BridgeClient, session_id: str) -> None:
    """An atomic batch with one bad update applies none and reports the bad one."""
    await client.register_variable(session_id, "a", "integer", 0, constraints={"max": 10})
    await client.register_variable(session_id, "b", "integer", 0)
    response = await client.stub.SetVariables(_batch(session_id, True, a=99, b=1))
    assert (response.success, list(response.errors)) == (False, ["a"])
    assert "a: max is 10" in response.errors["a"]
    assert (await client.get_variable(session_id, "a"), await client.get_variable(session_id, "b")) == (0, 0)
    ok = await client.stub.SetVariables(_batch(session_id, True, a=5, b=6))
    assert (ok.success, await client.get_variable(session_id, "a")) == (True, 5)


async def test_non_atomic_batch_applies_what_is_valid(client: BridgeClient, session_id: str) -> None:
    """A non-atomic batch applies the valid updates and reports the others in errors."""
    await client.register_variable(session_id, "a", "integer", 0, constraints={"max": 10})
    await client.register_variable(session_id, "b", "integer", 0)
    response = await client.stub.SetVariables(_batch(session_id, False, a=99, b=1))
    assert (response.success, list(response.errors)) == (False, ["a"])
    assert (await client.get_variable(session_id, "a"), await client.get_variable(session_id, "b")) == (0, 1)


async def test_batch_get_returns_known_variables(client: BridgeClient, session_id: str) -> None:
    """GetVariables answers the variables it knows, keyed as asked, with metadata only on request."""
    await client.stub.SetVariable(
        pb2.SetVariableRequest(session_id=session_id, variable_id="x", value=values.encode(1), metadata={"k": "v"})
    )
    bare = await client.stub.GetVariables(
        pb2.BatchGetVariablesRequest(session_id=session_id, variable_ids=["x", "missing"])
    )
    full = await client.stub.GetVariables(
        pb2.BatchGetVariablesRequest(session_id=session_id, variable_ids=["x"], include_metadata=True)
    )
    assert (list(bare.variables), dict(bare.variables["x"].metadata), dict(full.variables["x"].metadata)) == (
        ["x"],
        {},
        {"k": "v"},
    )


async def test_list_and_delete(client: BridgeClient, session_id: str) -> None:
    """ListVariables shows every variable by name; DeleteVariable removes one, then answers false."""
    for name in ("b", "a"):
        await client.set_variable(session_id, name, 1)
    listed = await client.stub.ListVariables(pb2.ListVariablesRequest(session_id=session_id))
    first = await client.stub.DeleteVariable(pb2.DeleteVariableRequest(session_id=session_id, variable_id="a"))
    second = await client.stub.DeleteVariable(pb2.DeleteVariableRequest(session_id=session_id, variable_id="a"))
    after = await client.stub.ListVariables(pb2.ListVariablesRequest(session_id=session_id))
    assert [v.name for v in listed.variables] == ["a", "b"]
    assert (first.success, second.success, [v.name for v in after.variables]) == (True, False, ["b"])
    assert "variable 'a' not found" in second.error_message


async def test_tool_writes_are_marked_python(client: BridgeClient, session_id: str) -> None:
    """A variable written by tool code has source PYTHON."""
    await client.call(session_id, "remember", name="from_tool", value="hello")
    variable = (
        await client.stub.GetVariable(pb2.GetVariableRequest(session_id=session_id, variable_id="from_tool"))
    ).variable
    assert (variable.source, values.decode(variable.value).value) == (pb2.Variable.PYTHON, "hello")


async def test_values_past_grpcs_4_mib_default_travel_and_the_session_still_lists(
    client: BridgeClient, session_id: str, worker_factory: Any
) -> None:
    """A 6 MiB value is set and read back; a session holding 11 MiB still initialises; 4 MiB workers refuse it."""
    big, bigger = "x" * (5 << 20), "y" * (6 << 20)
    await client.set_variable(session_id, "big", big)
    await client.set_variable(session_id, "bigger", bigger)
    assert await client.get_variable(session_id, "bigger") == bigger
    listed = await client.initialize_session(session_id)
    assert sorted(v.name for v in listed.initial_variables.values()) == ["big", "bigger"]
    _, small_target = worker_factory("--max-message-mb", "4")
    small = BridgeClient.connect(small_target)
    try:
        await small.initialize_session("s")
        with pytest.raises(ResourceExhausted):
            await small.set_variable("s", "bigger", bigger)
    finally:
        await small.aclose()
