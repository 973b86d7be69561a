"""``BridgeClient``: the bridge protocol with Python values instead of ``Any`` messages.

A thin convenience over the generated stub (``client.stub`` is there for
everything else). gRPC failures become Muster's exceptions at this one
boundary; a tool that raised becomes ``ToolFailed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import orjson

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster._proto.snakepit.bridge import snakepit_bridge_pb2_grpc as pb2_grpc
from muster.bridge import values
from muster.errors import Invalid, MusterError, error_for_grpc_code, trailing_metadata_of

__all__ = ["BridgeClient", "MultiplexedWatch", "ToolFailed", "Update", "WatchEvent"]


class ToolFailed(MusterError):
    """The tool ran and raised; ``error_type`` is its exception class name."""

    code = "tool_failed"

    def __init__(self, message: str, *, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type


# The wire keeps snakepit's enum names (its hosts read them); a Python host is told who wrote in its words.
_SOURCE_WORDS = {"ELIXIR": "HOST"}


@dataclass(frozen=True, slots=True)
class Update:
    """One item of a watch stream, decoded.

    ``source`` is who wrote it: ``"HOST"`` (a client of the bridge, whatever its language; snakepit's
    wire name for it is ``ELIXIR``, kept in ``wire_source``), ``"PYTHON"`` (tool code), ``"INITIAL"``
    (the value when the watch began) or ``"DELETED"``.
    """

    name: str
    value: Any
    source: str
    deleted: bool
    wire_source: str = ""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One item of a multiplexed watch stream: a change for some watches, or their end.

    ``update`` is set unless ``ended``; an ended watch's ``error`` is ``None`` when its
    session ended (or the client cancelled it: ``cancelled``), otherwise why it could not start.
    """

    watch_ids: tuple[str, ...]
    update: Update | None
    ended: bool = False
    cancelled: bool = False
    error: MusterError | None = None


def _update(message: pb2.VariableUpdate) -> Update:
    return Update(
        name=message.variable.name,
        value=values.decode(message.variable.value).value,
        source=_SOURCE_WORDS.get(message.update_source, message.update_source),
        deleted=message.deleted,
        wire_source=message.update_source,
    )


def _watch_event(message: pb2.WatchEvent) -> WatchEvent:
    ids = tuple(message.watch_ids)
    if not message.ended:
        return WatchEvent(ids, _update(message.update))
    code = next((code for code in grpc.StatusCode if code.value[0] == message.status_code), grpc.StatusCode.UNKNOWN)
    if code is grpc.StatusCode.OK:
        return WatchEvent(ids, None, ended=True)
    if code is grpc.StatusCode.CANCELLED:
        return WatchEvent(ids, None, ended=True, cancelled=True)
    return WatchEvent(ids, None, ended=True, error=error_for_grpc_code(code, message.error_message))


class MultiplexedWatch:
    """Many watches over one ``WatchVariablesMultiplexed`` stream (``BridgeClient.watch_multiplexed``).

    Start and cancel watches with ``add`` / ``cancel``; iterate for the events. A change
    seen by several of these watches arrives once, naming all of them.
    """

    def __init__(self, call: Any) -> None:
        self._call = call

    async def add(self, watch_id: str, session_id: str, names: list[str] | None = None) -> None:
        """Start a watch: its current values come first, then every update."""
        watch = pb2.WatchVariablesRequest(session_id=session_id, variable_ids=names or [])
        await self._write(pb2.WatchControl(watch_id=watch_id, watch=watch))

    async def cancel(self, watch_id: str) -> None:
        await self._write(pb2.WatchControl(watch_id=watch_id, cancel=True))

    async def done_adding(self) -> None:
        """No more watches: the stream ends once the open ones have."""
        await self._call.done_writing()

    async def _write(self, control: pb2.WatchControl) -> None:
        try:
            await self._call.write(control)
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc

    async def __aiter__(self) -> AsyncIterator[WatchEvent]:
        try:
            async for message in self._call:
                yield _watch_event(message)
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc

    async def aclose(self) -> None:
        self._call.cancel()

    async def __aenter__(self) -> MultiplexedWatch:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()


def _refused(field: str, message: str) -> Invalid:
    """``Invalid`` from a response's error_message, which already starts with the field."""
    prefix = f"{field}: "
    return Invalid(field, message[len(prefix) :] if message.startswith(prefix) else message)


def _convert(exc: grpc.aio.AioRpcError) -> MusterError:
    return error_for_grpc_code(exc.code(), exc.details(), trailing_metadata_of(exc))


class BridgeClient:
    """Calls on one channel to one bridge worker."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.stub = pb2_grpc.SnakepitBridgeStub(channel)

    @classmethod
    def connect(cls, target: str, *, max_message_bytes: int = values.DEFAULT_MAX_MESSAGE_BYTES) -> BridgeClient:
        """A client for ``host:port`` (create it inside the running event loop).

        It takes messages up to ``max_message_bytes`` each way, as the worker does by default.
        """
        return cls(grpc.aio.insecure_channel(target, options=values.message_size_options(max_message_bytes)))

    async def aclose(self) -> None:
        await self.channel.close()

    async def ping(self, message: str = "") -> str:
        try:
            response = await self.stub.Ping(pb2.PingRequest(message=message))
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        return str(response.message)

    async def initialize_session(
        self, session_id: str, metadata: Mapping[str, str] | None = None
    ) -> pb2.InitializeSessionResponse:
        try:
            response: pb2.InitializeSessionResponse = await self.stub.InitializeSession(
                pb2.InitializeSessionRequest(session_id=session_id, metadata=dict(metadata or {}))
            )
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        if not response.success:
            raise _refused("session_id", response.error_message)
        return response

    async def cleanup_session(self, session_id: str) -> bool:
        try:
            response = await self.stub.CleanupSession(pb2.CleanupSessionRequest(session_id=session_id))
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        return bool(response.success)

    async def call(self, session_id: str, tool: str, /, **parameters: Any) -> Any:
        """Run a tool and return its decoded result; ``ToolFailed`` if it raised."""
        request = pb2.ExecuteToolRequest(
            session_id=session_id,
            tool_name=tool,
            parameters={name: values.encode(value) for name, value in parameters.items()},
        )
        try:
            response = await self.stub.ExecuteTool(request)
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        if not response.success:
            raise ToolFailed(response.error_message, error_type=response.metadata.get("error_type", ""))
        return values.decode(response.result).value if response.HasField("result") else None

    async def stream(self, session_id: str, tool: str, /, **parameters: Any) -> AsyncIterator[Any]:
        """The items a streaming tool yields; ``ToolFailed`` if it raised part-way."""
        request = pb2.ExecuteToolRequest(
            session_id=session_id,
            tool_name=tool,
            parameters={name: values.encode(value) for name, value in parameters.items()},
        )
        try:
            async for chunk in self.stub.ExecuteStreamingTool(request):
                if chunk.HasField("data"):
                    yield values.decode(chunk.data).value
                if chunk.is_final:
                    if not chunk.success:
                        raise ToolFailed(chunk.error_message, error_type=chunk.metadata.get("error_type", ""))
                    return
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc

    async def register_variable(
        self,
        session_id: str,
        name: str,
        type_name: str,
        value: Any,
        *,
        constraints: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Declare a typed variable; its id. ``Invalid`` names the rule a refusal broke."""
        request = pb2.RegisterVariableRequest(
            session_id=session_id,
            name=name,
            type=type_name,
            initial_value=values.encode(value, type_name),
            constraints_json=orjson.dumps(dict(constraints)).decode() if constraints else "",
            metadata=dict(metadata or {}),
        )
        try:
            response = await self.stub.RegisterVariable(request)
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        if not response.success:
            raise _refused(name, response.error_message)
        return str(response.variable_id)

    async def get_variable(self, session_id: str, name: str) -> Any:
        try:
            response = await self.stub.GetVariable(pb2.GetVariableRequest(session_id=session_id, variable_id=name))
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        return values.decode(response.variable.value).value

    async def set_variable(self, session_id: str, name: str, value: Any, *, type_name: str | None = None) -> None:
        request = pb2.SetVariableRequest(session_id=session_id, variable_id=name, value=values.encode(value, type_name))
        try:
            response = await self.stub.SetVariable(request)
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        if not response.success:
            raise _refused(name, response.error_message)

    async def watch(self, session_id: str, names: list[str] | None = None) -> AsyncIterator[Update]:
        """Initial values, then every update, until the session ends or the caller stops iterating."""
        call = self.stub.WatchVariables(pb2.WatchVariablesRequest(session_id=session_id, variable_ids=names or []))
        try:
            async for update in call:
                yield _update(update)
        except grpc.aio.AioRpcError as exc:
            raise _convert(exc) from exc
        finally:
            call.cancel()

    def watch_multiplexed(self) -> MultiplexedWatch:
        """One stream for many watches (``async with client.watch_multiplexed() as watches: ...``)."""
        return MultiplexedWatch(self.stub.WatchVariablesMultiplexed())
