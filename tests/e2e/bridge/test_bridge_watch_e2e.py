"""WatchVariables: initial values, host and tool updates, cancellation, session end, slow watchers."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster.bridge import values
from muster.bridge.client import BridgeClient


async def test_initial_values_come_first_then_updates(client: BridgeClient, session_id: str) -> None:
    """A watch first delivers the current values, then host updates (HOST; ELIXIR on the wire) and tool updates."""
    await client.set_variable(session_id, "x", 1)
    await client.set_variable(session_id, "y", "a")
    stream = client.watch(session_id, ["x", "y"])
    seen = [await anext(stream), await anext(stream)]
    await client.set_variable(session_id, "x", 2)
    seen.append(await anext(stream))
    await client.call(session_id, "remember", name="y", value="b")
    seen.append(await anext(stream))
    await stream.aclose()
    assert [(u.name, u.value, u.source, u.wire_source) for u in seen] == [
        ("x", 1, "INITIAL", "INITIAL"),
        ("y", "a", "INITIAL", "INITIAL"),
        ("x", 2, "HOST", "ELIXIR"),
        ("y", "b", "PYTHON", "PYTHON"),
    ]


async def test_watch_carries_update_metadata_and_timestamp(client: BridgeClient, session_id: str) -> None:
    """An update carries the writer's metadata, its source and a timestamp."""
    await client.set_variable(session_id, "x", 1)
    call = client.stub.WatchVariables(pb2.WatchVariablesRequest(session_id=session_id, variable_ids=["x"]))
    await call.read()
    await client.stub.SetVariable(
        pb2.SetVariableRequest(session_id=session_id, variable_id="x", value=values.encode(5), metadata={"by": "me"})
    )
    update = await call.read()
    call.cancel()
    assert (update.update_source, dict(update.update_metadata), update.timestamp.seconds > 0) == (
        "ELIXIR",
        {"by": "me"},
        True,
    )
    assert (update.variable_id, update.variable.name) == (update.variable.id, "x")


async def test_watch_all_sees_new_variables_and_deletions(client: BridgeClient, session_id: str) -> None:
    """Watching with no ids follows every variable, including ones created later and deletions."""
    await client.set_variable(session_id, "existing", 0)
    stream = client.watch(session_id)
    assert (await anext(stream)).source == "INITIAL"  # the watch is registered from here on
    await client.set_variable(session_id, "fresh", 1)
    created = await anext(stream)
    await client.stub.DeleteVariable(pb2.DeleteVariableRequest(session_id=session_id, variable_id="fresh"))
    deleted = await anext(stream)
    await stream.aclose()
    assert [(u.name, u.deleted) for u in (created, deleted)] == [("fresh", False), ("fresh", True)]


async def test_cancelled_watch_stops_and_session_goes_on(client: BridgeClient, session_id: str) -> None:
    """A client that cancels its watch gets CANCELLED; the session keeps working and can be watched again."""
    await client.set_variable(session_id, "x", 1)
    call = client.stub.WatchVariables(pb2.WatchVariablesRequest(session_id=session_id, variable_ids=["x"]))
    await call.read()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call.read()
    await client.set_variable(session_id, "x", 2)
    again = client.watch(session_id, ["x"])
    assert (await anext(again)).value == 2
    await again.aclose()


async def test_cleanup_ends_the_watch_cleanly(client: BridgeClient) -> None:
    """Cleaning up the session ends its watch streams with status OK."""
    session = f"test-{uuid.uuid4().hex[:10]}"
    await client.initialize_session(session)
    await client.set_variable(session, "x", 1)
    call = client.stub.WatchVariables(pb2.WatchVariablesRequest(session_id=session, variable_ids=["x"]))
    await call.read()
    await client.cleanup_session(session)
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_watching_an_unknown_variable_is_not_found(client: BridgeClient, session_id: str) -> None:
    """Watching a variable that does not exist ends the stream with NOT_FOUND."""
    call = client.stub.WatchVariables(pb2.WatchVariablesRequest(session_id=session_id, variable_ids=["ghost"]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_slow_watcher_is_ended_with_resource_exhausted(small_queue_target: str) -> None:
    """A watcher that falls more than --watch-queue-size updates behind is ended with RESOURCE_EXHAUSTED."""
    client = BridgeClient.connect(small_queue_target)
    session = f"test-{uuid.uuid4().hex[:10]}"
    try:
        await client.initialize_session(session)
        await client.set_variable(session, "v0", -1)
        call = client.stub.WatchVariables(pb2.WatchVariablesRequest(session_id=session))
        await call.read()  # the initial value: the watcher is registered from here on
        # One batch publishes 10 updates at once, more than the watcher's queue of 4 can hold.
        batch = {f"v{index}": values.encode(index) for index in range(10)}
        response = await client.stub.SetVariables(pb2.BatchSetVariablesRequest(session_id=session, updates=batch))
        assert response.success
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            while True:
                await call.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "fell 4 updates behind" in str(caught.value.details())
    finally:
        await client.aclose()
