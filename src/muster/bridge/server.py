"""The gRPC door: ``SnakepitBridge`` over ``BridgeService``, and the server around it.

Each RPC parses the request, calls the service and builds the response.
Operations whose response has ``success``/``error_message`` report refusals
there; the others map ``MusterError`` to its status code (NOT_FOUND,
INVALID_ARGUMENT, RESOURCE_EXHAUSTED) with Muster's error metadata. Nothing
here answers INTERNAL.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from muster._proto.snakepit.bridge import snakepit_bridge_pb2 as pb2
from muster._proto.snakepit.bridge import snakepit_bridge_pb2_grpc as pb2_grpc
from muster._tasks import cancel_and_wait
from muster.bridge import messages, values
from muster.bridge.service import BridgeService
from muster.bridge.session import VariableEvent
from muster.bridge.watch import StreamItem, WatchStream
from muster.errors import MusterError, Unavailable, grpc_trailing_metadata
from muster.grpc.guard import GuardedRegistration

__all__ = ["BridgeServer", "BridgeServicer"]

logger = logging.getLogger(__name__)

_RECENT_UPDATES = 256  # messages kept for fan-out: one update, many watchers


async def _abort(context: grpc.aio.ServicerContext, error: MusterError) -> None:
    await context.abort(error.grpc_code, error.message, trailing_metadata=grpc_trailing_metadata(error))


class BridgeServicer(pb2_grpc.SnakepitBridgeServicer):  # type: ignore[misc, unused-ignore]  # generated
    """Translates ``SnakepitBridge`` calls to ``BridgeService`` calls."""

    def __init__(self, service: BridgeService) -> None:
        self.service = service
        self._recent_updates: OrderedDict[int, tuple[VariableEvent, pb2.VariableUpdate]] = OrderedDict()

    async def Ping(self, request: pb2.PingRequest, context: grpc.aio.ServicerContext) -> pb2.PingResponse:
        message, now = self.service.ping(request.message)
        return pb2.PingResponse(message=message, server_time=messages.timestamp(now))

    async def InitializeSession(
        self, request: pb2.InitializeSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb2.InitializeSessionResponse:
        try:
            tools, variables = self.service.initialize_session(request.session_id, dict(request.metadata))
        except MusterError as exc:
            return pb2.InitializeSessionResponse(success=False, error_message=str(exc))
        return pb2.InitializeSessionResponse(
            success=True,
            available_tools={name: messages.tool_spec_to_proto(info) for name, info in tools.items()},
            initial_variables={variable.name: messages.variable_to_proto(variable) for variable in variables},
        )

    async def CleanupSession(
        self, request: pb2.CleanupSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb2.CleanupSessionResponse:
        return pb2.CleanupSessionResponse(success=self.service.cleanup_session(request.session_id))

    # --- variables ---------------------------------------------------------------------------

    async def GetVariable(
        self, request: pb2.GetVariableRequest, context: grpc.aio.ServicerContext
    ) -> pb2.GetVariableResponse:
        try:
            variable = self.service.store.get_variable(request.session_id, request.variable_id)
        except MusterError as exc:
            await _abort(context, exc)
            raise  # pragma: no cover - abort raises
        return pb2.GetVariableResponse(variable=messages.variable_to_proto(variable))

    async def SetVariable(
        self, request: pb2.SetVariableRequest, context: grpc.aio.ServicerContext
    ) -> pb2.SetVariableResponse:
        try:
            typed = values.decode(request.value, field=request.variable_id or "value")
            self.service.store.set_variable(
                request.session_id, request.variable_id, typed, metadata=dict(request.metadata)
            )
        except MusterError as exc:
            return pb2.SetVariableResponse(success=False, error_message=str(exc))
        return pb2.SetVariableResponse(success=True)

    async def GetVariables(
        self, request: pb2.BatchGetVariablesRequest, context: grpc.aio.ServicerContext
    ) -> pb2.BatchGetVariablesResponse:
        try:
            session = self.service.store.get(request.session_id)
        except MusterError as exc:
            await _abort(context, exc)
            raise  # pragma: no cover - abort raises
        found = {}
        for ref in request.variable_ids:
            variable = session.find(ref)
            if variable is not None:
                found[ref] = messages.variable_to_proto(variable, include_metadata=request.include_metadata)
        return pb2.BatchGetVariablesResponse(variables=found)

    async def SetVariables(
        self, request: pb2.BatchSetVariablesRequest, context: grpc.aio.ServicerContext
    ) -> pb2.BatchSetVariablesResponse:
        decoded, refused = messages.decode_all(request.updates)
        try:
            errors = self.service.store.set_variables(
                request.session_id,
                decoded,
                atomic=request.atomic,
                metadata=dict(request.metadata),
                refused=refused,
            )
        except MusterError as exc:
            return pb2.BatchSetVariablesResponse(success=False, errors={"": str(exc)})
        return pb2.BatchSetVariablesResponse(success=not errors, errors=errors)

    async def RegisterVariable(
        self, request: pb2.RegisterVariableRequest, context: grpc.aio.ServicerContext
    ) -> pb2.RegisterVariableResponse:
        try:
            typed = values.decode(request.initial_value, field=request.name or "initial_value")
            variable = self.service.store.register(
                request.session_id,
                request.name,
                request.type,
                typed.value,
                constraints_json=request.constraints_json,
                metadata=dict(request.metadata),
            )
        except MusterError as exc:
            return pb2.RegisterVariableResponse(success=False, error_message=str(exc))
        return pb2.RegisterVariableResponse(success=True, variable_id=variable.id)

    async def ListVariables(
        self, request: pb2.ListVariablesRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListVariablesResponse:
        try:
            listed = self.service.store.list_variables(request.session_id)
        except MusterError as exc:
            await _abort(context, exc)
            raise  # pragma: no cover - abort raises
        return pb2.ListVariablesResponse(variables=[messages.variable_to_proto(variable) for variable in listed])

    async def DeleteVariable(
        self, request: pb2.DeleteVariableRequest, context: grpc.aio.ServicerContext
    ) -> pb2.DeleteVariableResponse:
        try:
            self.service.store.delete_variable(request.session_id, request.variable_id)
        except MusterError as exc:
            return pb2.DeleteVariableResponse(success=False, error_message=str(exc))
        return pb2.DeleteVariableResponse(success=True)

    # --- tools -------------------------------------------------------------------------------

    async def ExecuteTool(
        self, request: pb2.ExecuteToolRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ExecuteToolResponse:
        decoded, refused = messages.decode_all(request.parameters)
        if refused:
            return pb2.ExecuteToolResponse(success=False, error_message="Invalid: " + next(iter(refused.values())))
        outcome = await self.service.execute_tool(request.session_id, request.tool_name, decoded)
        return messages.tool_response(outcome)

    async def ExecuteStreamingTool(
        self, request: pb2.ExecuteToolRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb2.ToolChunk]:
        decoded, refused = messages.decode_all(request.parameters)
        if refused:
            message = "Invalid: " + next(iter(refused.values()))
            yield pb2.ToolChunk(chunk_id="0", is_final=True, success=False, error_message=message)
            return
        count = 0
        async for outcome in self.service.stream_tool(request.session_id, request.tool_name, decoded):
            chunk = messages.tool_chunk(outcome, str(count))
            yield chunk
            if chunk.is_final:
                return
            count += 1
        yield pb2.ToolChunk(chunk_id=str(count), is_final=True, success=True)

    # --- watching ----------------------------------------------------------------------------

    async def WatchVariables(
        self, request: pb2.WatchVariablesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb2.VariableUpdate]:
        try:
            async for event in self.service.watch(request.session_id, list(request.variable_ids)):
                yield self._update_message(event)
        except MusterError as exc:
            await _abort(context, exc)

    async def WatchVariablesMultiplexed(
        self, request_iterator: AsyncIterable[pb2.WatchControl], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb2.WatchEvent]:
        stream = self.service.open_watch_stream()
        controls = asyncio.create_task(_follow_controls(request_iterator, stream), name="bridge-watch-controls")
        try:
            while (item := await stream.next_item()) is not None:
                yield self._watch_event(item)
        except MusterError as exc:
            await _abort(context, exc)
        finally:
            controls.cancel()
            self.service.close_watch_stream(stream)

    def _watch_event(self, item: StreamItem) -> pb2.WatchEvent:
        if not item.ended:
            assert item.event is not None
            return pb2.WatchEvent(watch_ids=item.watch_ids, update=self._update_message(item.event))
        if item.cancelled:
            code, message = grpc.StatusCode.CANCELLED, "cancelled by the client"
        elif item.error is not None:
            code, message = item.error.grpc_code, str(item.error)
        else:
            code, message = grpc.StatusCode.OK, ""
        return pb2.WatchEvent(watch_ids=item.watch_ids, ended=True, status_code=code.value[0], error_message=message)

    def _update_message(self, event: VariableEvent) -> pb2.VariableUpdate:
        """The message for an event, built once however many watchers receive it."""
        key = id(event)
        cached = self._recent_updates.get(key)
        if cached is not None and cached[0] is event:
            return cached[1]
        message = messages.update_to_proto(event)
        self._recent_updates[key] = (event, message)  # holding the event keeps its id from being reused
        if len(self._recent_updates) > _RECENT_UPDATES:
            self._recent_updates.popitem(last=False)
        return message


async def _follow_controls(controls: AsyncIterable[pb2.WatchControl], stream: WatchStream) -> None:
    """Start and cancel the stream's watches as the client asks; its half-close means no more."""
    try:
        async for control in controls:
            if control.cancel:
                stream.cancel(control.watch_id)
            else:
                stream.add(control.watch_id, control.watch.session_id, list(control.watch.variable_ids))
    except asyncio.CancelledError:
        raise
    except Exception:  # the call broke (client gone): end the stream rather than leave it half-read
        logger.debug("watch stream controls ended", exc_info=True)
        stream.close()
        return
    stream.adding_done()


class TokenGate:
    """A bridge worker bound beyond loopback: every call must carry ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def admit_for(self, _method: str) -> Any:
        return self._admit

    async def _admit(self, context: Any) -> None:
        from muster.identity.doors import bearer_of

        presented = bearer_of(context)
        if presented is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "this bridge worker needs a token: send "
                                "'authorization: Bearer <token>' metadata")
        elif not hmac.compare_digest(presented.strip().encode("utf-8", "replace"), self._expected):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown token")


class BridgeServer:
    """A grpc.aio server for one ``BridgeService``, with the idle-session sweeper.

    Create it inside the running event loop (grpc.aio objects bind to it).
    """

    def __init__(
        self,
        service: BridgeService,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_concurrent_rpcs: int = 1000,
        max_message_bytes: int = values.DEFAULT_MAX_MESSAGE_BYTES,
        sweep_interval_s: float | None = None,
        token: str | None = None,
    ) -> None:
        self.service = service
        self.host = host
        self.requested_port = port
        self.port = 0
        self._sweep_interval_s = sweep_interval_s or max(0.05, min(30.0, service.store.idle_ttl_s / 4))
        # Beyond max_concurrent_rpcs calls in flight, gRPC answers RESOURCE_EXHAUSTED: this bounds
        # the tool thread pool's queue too.
        options = [("grpc.so_reuseport", 0), *values.message_size_options(max_message_bytes)]
        self._server = grpc.aio.server(options=options, maximum_concurrent_rpcs=max_concurrent_rpcs)
        # Undecodable requests are refused as INVALID_ARGUMENT; with a token, every call must carry it.
        # Wrapped at registration, not by an interceptor: the bridge's calls are short and many.
        registration = GuardedRegistration(self._server, TokenGate(token).admit_for if token else lambda _m: None)
        pb2_grpc.add_SnakepitBridgeServicer_to_server(BridgeServicer(service), registration)
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"

    async def start(self) -> int:
        """Bind and start serving; the bound port (useful with port 0)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        try:
            self.port = self._server.add_insecure_port(f"{host}:{self.requested_port}")
        except RuntimeError as exc:
            raise Unavailable(f"cannot bind {host}:{self.requested_port}: {exc}") from exc
        if self.port == 0:
            raise Unavailable(f"cannot bind {host}:{self.requested_port}")
        await self._server.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="bridge-session-sweeper")
        return self.port

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            self.service.expire_idle_sessions()

    async def stop(self, grace_s: float = 5.0) -> None:
        """End watch streams and sessions, let calls in flight finish for ``grace_s``, then stop."""
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
        self.service.close()
        await self._server.stop(grace_s)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


TOOL_THREAD_PREFIX = "bridge-tool"


def make_executor(max_workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=TOOL_THREAD_PREFIX)
