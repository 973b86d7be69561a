"""WatchVariablesMultiplexed: many watches over one stream, each change sent once for all of them."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import grpc
import pytest

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster.bridge import values
from muster.bridge.client import BridgeClient, WatchEvent
from muster.errors import Conflict, NotFound, ResourceExhausted


def _values(event: WatchEvent) -> tuple[tuple[str, ...], object, str]:
    assert event.update is not None
    return event.watch_ids, event.update.value, event.update.source


async def test_one_change_reaches_every_watch_in_one_message(client: BridgeClient, session_id: str) -> None:
    """Three watches of one variable get their initial values, then each change once, naming all three."""
    await client.set_variable(session_id, "x", 1)
    async with client.watch_multiplexed() as watches:
        events = aiter(watches)
        for watch_id in ("w1", "w2", "w3"):
            await watches.add(watch_id, session_id, ["x"])
        initial = [_values(await anext(events)) for _ in range(3)]
        await client.set_variable(session_id, "x", 2)
        await client.call(session_id, "remember", name="x", value=3)
        changes = [_values(await anext(events)), _values(await anext(events))]
    assert initial == [(("w1",), 1, "INITIAL"), (("w2",), 1, "INITIAL"), (("w3",), 1, "INITIAL")]
    assert changes == [(("w1", "w2", "w3"), 2, "HOST"), (("w1", "w2", "w3"), 3, "PYTHON")]


async def test_watches_of_different_sessions_share_a_stream(client: BridgeClient) -> None:
    """One stream carries watches of two sessions; each change names only the watches that see it."""
    sessions = [f"test-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    for session in sessions:
        await client.initialize_session(session)
        await client.set_variable(session, "x", 0)
    try:
        async with client.watch_multiplexed() as watches:
            events = aiter(watches)
            await watches.add("first", sessions[0], ["x"])
            await watches.add("second", sessions[1], [])
            await anext(events), await anext(events)
            await client.set_variable(sessions[1], "x", 5)
            await client.set_variable(sessions[0], "x", 6)
            seen = [_values(await anext(events)), _values(await anext(events))]
        assert seen == [(("second",), 5, "HOST"), (("first",), 6, "HOST")]
    finally:
        for session in sessions:
            await client.cleanup_session(session)


async def test_bad_watches_end_alone_and_cancel_ends_one(client: BridgeClient, session_id: str) -> None:
    """An unknown variable or a duplicate id ends that watch with its error; a cancel ends one as cancelled."""
    await client.set_variable(session_id, "x", 1)
    async with client.watch_multiplexed() as watches:
        events = aiter(watches)
        await watches.add("good", session_id, ["x"])
        await watches.add("other", session_id, ["x"])
        await anext(events), await anext(events)
        await watches.add("ghost", session_id, ["nope"])
        await watches.add("good", session_id, ["x"])
        ghost, duplicate = await anext(events), await anext(events)
        await watches.cancel("other")
        cancelled = await anext(events)
        await client.set_variable(session_id, "x", 2)
        after = _values(await anext(events))
    assert [(ghost.watch_ids, type(ghost.error)), (duplicate.watch_ids, type(duplicate.error))] == [
        (("ghost",), NotFound),
        (("good",), Conflict),
    ]
    assert (cancelled.watch_ids, cancelled.ended, cancelled.cancelled) == (("other",), True, True)
    assert after == (("good",), 2, "HOST")


async def test_cleanup_ends_the_watches_and_half_close_ends_the_stream(client: BridgeClient) -> None:
    """Cleaning up the session ends its watches (no error); after done_adding the stream then ends OK."""
    session = f"test-{uuid.uuid4().hex[:10]}"
    await client.initialize_session(session)
    await client.set_variable(session, "x", 1)
    call = client.stub.WatchVariablesMultiplexed()
    watch = pb2.WatchVariablesRequest(session_id=session, variable_ids=["x"])
    await call.write(pb2.WatchControl(watch_id="a", watch=watch))
    await call.write(pb2.WatchControl(watch_id="b", watch=watch))
    await call.read(), await call.read()
    await call.done_writing()
    await client.cleanup_session(session)
    ended = await call.read()
    assert (list(ended.watch_ids), ended.ended, ended.status_code) == (["a", "b"], True, 0)
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_slow_multiplexed_stream_is_ended_with_resource_exhausted(small_queue_target: str) -> None:
    """A stream that falls more than --watch-queue-size messages behind ends with RESOURCE_EXHAUSTED."""
    client = BridgeClient.connect(small_queue_target)
    session = f"test-{uuid.uuid4().hex[:10]}"
    try:
        await client.initialize_session(session)
        await client.set_variable(session, "v0", -1)
        async with client.watch_multiplexed() as watches:
            events = aiter(watches)
            await watches.add("all", session)
            await anext(events)  # the initial value: the watch is registered from here on
            batch = {f"v{index}": values.encode(index) for index in range(10)}
            response = await client.stub.SetVariables(pb2.BatchSetVariablesRequest(session_id=session, updates=batch))
            assert response.success
            with pytest.raises(ResourceExhausted, match="fell 4 messages behind"):
                while True:
                    await anext(events)
    finally:
        await client.aclose()


async def test_worker_shutdown_ends_multiplexed_streams(worker_factory: Any) -> None:
    """SIGTERM ends an open multiplexed stream by itself: its watches end, then status OK (not cut at the grace)."""
    process, target = worker_factory("--stop-grace", "30")
    client = BridgeClient.connect(target)
    try:
        session = f"test-{uuid.uuid4().hex[:10]}"
        await client.initialize_session(session)
        await client.set_variable(session, "x", 1)
        call = client.stub.WatchVariablesMultiplexed()
        await call.write(pb2.WatchControl(watch_id="w", watch=pb2.WatchVariablesRequest(session_id=session)))
        await call.read()  # the initial value
        process.send_signal(signal.SIGTERM)
        ended = await call.read()
        assert (list(ended.watch_ids), ended.ended, ended.status_code) == (["w"], True, 0)
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        assert process.wait(timeout=60) == 0
    finally:
        await client.aclose()
