"""The seed's Stage-0 cases over the wire, with the generated stub as any client would use it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable

import grpc
import pytest

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster.bridge.client import BridgeClient

WorkerFactory = Callable[..., tuple[subprocess.Popen[bytes], str]]


async def test_ping_answers_pong_with_server_time(client: BridgeClient) -> None:
    """Ping answers "Pong: <message>" and sets server_time."""
    response = await client.stub.Ping(pb2.PingRequest(message="hello from elixir"))
    assert response.message == "Pong: hello from elixir"
    assert response.HasField("server_time") and response.server_time.seconds > 0


async def test_initialise_is_idempotent(client: BridgeClient, session_id: str) -> None:
    """Initialising an existing session succeeds again with no error and keeps its variables."""
    await client.set_variable(session_id, "kept", 1)
    response = await client.stub.InitializeSession(pb2.InitializeSessionRequest(session_id=session_id))
    assert (response.success, response.error_message) == (True, "")
    assert list(response.initial_variables) == ["kept"]


async def test_initialise_lists_the_adapters_tools(client: BridgeClient, session_id: str) -> None:
    """InitializeSession returns each tool's spec, with parameter types, required flags and defaults."""
    response = await client.stub.InitializeSession(pb2.InitializeSessionRequest(session_id=session_id))
    add = response.available_tools["add"]
    parameters = [(p.name, p.type, p.required, p.HasField("default_value")) for p in add.parameters]
    assert (add.description, parameters) == (
        "Add two integers.",
        [("a", "integer", True, False), ("b", "integer", False, True)],
    )
    assert add.parameters[1].default_value.value == b"1"
    assert response.available_tools["tokens"].metadata["streaming"] == "true"


async def test_cleanup_is_true_then_false(client: BridgeClient) -> None:
    """CleanupSession answers success=true for a live session, then false once it is gone."""
    session = f"test-{uuid.uuid4().hex[:10]}"
    init = await client.stub.InitializeSession(pb2.InitializeSessionRequest(session_id=session))
    first = await client.stub.CleanupSession(pb2.CleanupSessionRequest(session_id=session))
    second = await client.stub.CleanupSession(pb2.CleanupSessionRequest(session_id=session))
    assert (init.success, first.success, second.success) == (True, True, False)


async def test_empty_session_id_is_refused(client: BridgeClient) -> None:
    """An empty session id is refused with success=false and a message naming the field."""
    response = await client.stub.InitializeSession(pb2.InitializeSessionRequest(session_id=""))
    assert (response.success, response.error_message) == (False, "session_id: must not be empty")


async def test_unknown_session_is_not_found(client: BridgeClient) -> None:
    """Reading from a session that does not exist answers NOT_FOUND, not INTERNAL."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.stub.GetVariable(pb2.GetVariableRequest(session_id="nope", variable_id="x"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "session 'nope' not found" in str(caught.value.details())


async def test_idle_sessions_expire(worker_factory: WorkerFactory) -> None:
    """A session left idle for longer than --session-ttl is expired: cleaning it up then answers false."""
    _, target = worker_factory("--session-ttl", "0.1")
    bridge = BridgeClient.connect(target)
    try:
        # Touching a session keeps it alive, so probe with CleanupSession after an idle spell well past
        # the TTL (the sweeper runs every TTL/4); a fresh session per attempt keeps each probe honest.
        outcomes = []
        for attempt in range(5):
            await bridge.initialize_session(f"short-lived-{attempt}")
            await asyncio.sleep(0.4)
            outcomes.append(await bridge.cleanup_session(f"short-lived-{attempt}"))
            if not outcomes[-1]:
                break
        assert outcomes[-1] is False
    finally:
        await bridge.aclose()
