"""Tools over the wire: sync, async, raising, streaming, and argument checking."""

from __future__ import annotations

from typing import Any

import pytest

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster.bridge import values
from muster.bridge.client import BridgeClient, ToolFailed


async def execute(client: BridgeClient, session_id: str, tool: str, **parameters: Any) -> Any:
    request = pb2.ExecuteToolRequest(
        session_id=session_id,
        tool_name=tool,
        parameters={name: values.encode(value) for name, value in parameters.items()},
    )
    return await client.stub.ExecuteTool(request)


async def test_sync_tool_returns_an_integer(client: BridgeClient, session_id: str) -> None:
    """A sync tool's integer result comes back as snakepit.integer, an int."""
    response = await execute(client, session_id, "add", a=2, b=40)
    assert (response.success, response.result.type_url, values.decode(response.result).value) == (
        True,
        "type.googleapis.com/snakepit.integer",
        42,
    )


async def test_defaults_apply(client: BridgeClient, session_id: str) -> None:
    """An omitted optional parameter takes its default."""
    assert await client.call(session_id, "add", a=1) == 2


async def test_sync_tool_runs_off_the_loop(client: BridgeClient, session_id: str) -> None:
    """A sync tool with list and float parameters runs and returns its list."""
    assert await client.call(session_id, "scale", values=[1, 2.5], factor=2) == [2.0, 5.0]


async def test_async_tool(client: BridgeClient, session_id: str) -> None:
    """A coroutine tool is awaited and its result returned."""
    assert await client.call(session_id, "slow_add", a=1, b=2, delay_s=0.001) == 3


async def test_echo_keeps_json_documents(client: BridgeClient, session_id: str) -> None:
    """Dicts, lists and null travel as snakepit.json and come back unchanged."""
    document = {"nested": [1, 2.5, None, {"ok": True}]}
    assert await client.call(session_id, "echo_async", value=document) == document


async def test_raising_tool_reports_type_and_message(client: BridgeClient, session_id: str) -> None:
    """A tool that raises answers success=false with "<ExceptionType>: <message>", not an RPC error."""
    response = await execute(client, session_id, "fail", message="no luck")
    assert (response.success, response.error_message, response.metadata["error_type"]) == (
        False,
        "ValueError: no luck",
        "ValueError",
    )


@pytest.mark.parametrize(
    ("tool", "parameters", "message"),
    [
        ("add", {"b": 1}, "Invalid: a: tool 'add' needs this required parameter"),
        ("add", {"a": "1"}, "Invalid: a: tool 'add' needs integer, got str '1'"),
        ("add", {"a": 1, "c": 2}, "Invalid: c: tool 'add' has no such parameter (has: a, b)"),
        ("nope", {}, "LookupError: unknown tool 'nope'"),
    ],
)
async def test_bad_calls_are_refused_clearly(
    client: BridgeClient, session_id: str, tool: str, parameters: dict[str, Any], message: str
) -> None:
    """Missing, mistyped or unknown parameters and unknown tools answer success=false with a clear message."""
    response = await execute(client, session_id, tool, **parameters)
    assert response.success is False
    assert response.error_message.startswith(message)


async def test_unknown_session_is_refused(client: BridgeClient) -> None:
    """Executing in a session that was never initialised answers success=false naming the session."""
    response = await execute(client, "never-initialised", "add", a=1)
    assert (response.success, response.metadata["error_type"]) == (False, "NotFound")


async def test_sync_generator_streams_chunks(client: BridgeClient, session_id: str) -> None:
    """A generator tool streams one chunk per item, then a final successful chunk."""
    request = pb2.ExecuteToolRequest(session_id=session_id, tool_name="count", parameters={"n": values.encode(3)})
    chunks = [chunk async for chunk in client.stub.ExecuteStreamingTool(request)]
    items = [values.decode(chunk.data).value for chunk in chunks if chunk.HasField("data")]
    assert (items, [c.chunk_id for c in chunks]) == ([0, 1, 2], ["0", "1", "2", "3"])
    assert (chunks[-1].is_final, chunks[-1].success) == (True, True)


async def test_async_generator_streams(client: BridgeClient, session_id: str) -> None:
    """An async generator tool streams its items in order."""
    assert [word async for word in client.stream(session_id, "tokens", text="to be or not")] == [
        "to",
        "be",
        "or",
        "not",
    ]


async def test_stream_that_raises_ends_with_a_failed_chunk(client: BridgeClient, session_id: str) -> None:
    """A streaming tool that raises part-way delivers what it yielded, then a failed final chunk."""
    received: list[str] = []
    with pytest.raises(ToolFailed) as caught:
        async for word in client.stream(session_id, "tokens", text="a b c d", fail_after=2):
            received.append(word)
    assert (received, caught.value.message, caught.value.error_type) == (
        ["a", "b"],
        "RuntimeError: stopped after 2 words",
        "RuntimeError",
    )


async def test_plain_tool_streams_one_chunk(client: BridgeClient, session_id: str) -> None:
    """ExecuteStreamingTool on a plain tool yields its result as the one item."""
    assert [item async for item in client.stream(session_id, "add", a=1, b=1)] == [2]


async def test_streaming_tool_through_execute_tool_is_gathered(client: BridgeClient, session_id: str) -> None:
    """ExecuteTool on a generator tool returns the items as a list."""
    assert await client.call(session_id, "count", n=4) == [0, 1, 2, 3]


async def test_tools_see_their_session(client: BridgeClient, session_id: str) -> None:
    """Tool code reads its own session id and variables through SessionContext."""
    await client.set_variable(session_id, "visible", 1)
    info = await client.call(session_id, "session_info")
    assert (info["session_id"], info["variables"]) == (session_id, ["visible"])


async def test_async_tool_reads_and_writes_variables(client: BridgeClient, session_id: str) -> None:
    """An async tool reads a variable the host set and writes back the new value."""
    await client.set_variable(session_id, "counter", 10)
    assert await client.call(session_id, "bump", name="counter", by=5) == 15
    assert await client.get_variable(session_id, "counter") == 15
