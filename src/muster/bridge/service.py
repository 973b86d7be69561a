"""The bridge's application service: sessions, variables and tools in plain Python.

The gRPC servicer (``server.py``) is a thin translation over this class; it
never decides anything itself. Tool failures are values (``ToolOutcome``), not
exceptions: a tool that raises is a normal answer with ``success=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from muster.bridge.adapter import Adapter, ToolInfo, bind_arguments, tools_of
from muster.bridge.context import SessionContext
from muster.bridge.session import Session, SessionStore, VariableEvent
from muster.bridge.values import TypedValue
from muster.bridge.variables import Variable
from muster.bridge.watch import WatchStream
from muster.errors import MusterError, ResourceExhausted

__all__ = ["BridgeService", "ToolOutcome"]

logger = logging.getLogger(__name__)

_DONE = object()  # end marker for sync generators driven from a thread


def _cancelled_from_outside(exc: BaseException) -> bool:
    """A CancelledError aimed at the task running the call, not one a tool raised of its own accord."""
    task = asyncio.current_task()
    return isinstance(exc, asyncio.CancelledError) and task is not None and task.cancelling() > 0


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What one tool call (or one streamed item) came to."""

    success: bool
    value: Any = None
    error_message: str = ""
    error_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def failed(cls, exc: BaseException) -> ToolOutcome:
        message = exc.message if isinstance(exc, MusterError) else str(exc)
        return cls(False, error_message=f"{type(exc).__name__}: {message}", error_type=type(exc).__name__)


class BridgeService:
    """One worker's sessions and its adapter's tools."""

    def __init__(
        self,
        adapter_class: type[Adapter],
        store: SessionStore,
        *,
        executor: ThreadPoolExecutor | None = None,
        context_cache_ttl_s: float = 1.0,
    ) -> None:
        self.adapter_class = adapter_class
        self.store = store
        self.tools: dict[str, ToolInfo] = tools_of(adapter_class)
        self._executor = executor
        self._context_cache_ttl_s = context_cache_ttl_s
        self._adapters: dict[str, Adapter] = {}
        self._watch_streams: set[WatchStream] = set()

    # --- sessions ----------------------------------------------------------------------------

    def ping(self, message: str) -> tuple[str, datetime]:
        return f"Pong: {message}", self.store.clock.now()

    def initialize_session(
        self, session_id: str, metadata: Mapping[str, str] | None = None
    ) -> tuple[dict[str, ToolInfo], list[Variable]]:
        """Create the session (or touch it); its tools and current variables."""
        session, _created = self.store.initialize(session_id, metadata)
        if session_id not in self._adapters:
            adapter = self.adapter_class()
            adapter.context = SessionContext(
                self.store, session, asyncio.get_running_loop(), cache_ttl_s=self._context_cache_ttl_s
            )
            self._adapters[session_id] = adapter
        return self.tools, self.store.list_variables(session_id)

    def cleanup_session(self, session_id: str) -> bool:
        self._adapters.pop(session_id, None)
        return self.store.cleanup(session_id)

    def expire_idle_sessions(self) -> list[str]:
        expired = self.store.expire_idle()
        for session_id in expired:
            self._adapters.pop(session_id, None)
        if expired:
            logger.info("expired idle sessions: %s", ", ".join(expired))
        return expired

    def close(self) -> None:
        """End every session (and so every watch stream)."""
        self._adapters.clear()
        self.store.clear()  # multiplexed streams queue their watches' ends first...
        for stream in list(self._watch_streams):  # ...then end once those are sent
            self.close_watch_stream(stream)

    # --- tools -------------------------------------------------------------------------------

    def _prepare(
        self, session_id: str, tool_name: str, parameters: Mapping[str, TypedValue]
    ) -> tuple[Session, ToolInfo, Any, dict[str, Any]]:
        session = self.store.get(session_id)  # NotFound for an unknown session; marks it active
        adapter = self._adapters.get(session_id)
        if adapter is None:  # the store knows it but we do not: initialise lazily
            self.initialize_session(session_id)
            adapter = self._adapters[session_id]
        info = self.tools.get(tool_name)
        if info is None:
            raise LookupError(f"unknown tool {tool_name!r}; this worker has: {', '.join(sorted(self.tools))}")
        arguments = bind_arguments(info, {name: typed.value for name, typed in parameters.items()})
        return session, info, getattr(adapter, info.method_name), arguments

    async def execute_tool(self, session_id: str, tool_name: str, parameters: Mapping[str, TypedValue]) -> ToolOutcome:
        """Run a tool; a streaming tool's items are gathered into a list."""
        try:
            session, info, method, arguments = self._prepare(session_id, tool_name, parameters)
        except Exception as exc:  # unknown session or tool, bad arguments: an answer too
            return ToolOutcome.failed(exc)
        with self.store.in_call(session):
            try:
                if info.is_streaming:
                    items = [item async for item in self._iterate(info, method, arguments)]
                    return ToolOutcome(True, items)
                if info.is_async:
                    return ToolOutcome(True, await method(**arguments))
                loop = asyncio.get_running_loop()
                call = functools.partial(method, **arguments)
                return ToolOutcome(True, await loop.run_in_executor(self._executor, call))
            except BaseException as exc:  # a tool's failure is an answer (SystemExit included), never a broken call
                if _cancelled_from_outside(exc):
                    raise  # the call itself is being cancelled (client gone, shutdown)
                return ToolOutcome.failed(exc)

    async def stream_tool(
        self, session_id: str, tool_name: str, parameters: Mapping[str, TypedValue]
    ) -> AsyncIterator[ToolOutcome]:
        """One outcome per item the tool yields; the last one failed if the tool raised."""
        try:
            session, info, method, arguments = self._prepare(session_id, tool_name, parameters)
        except Exception as exc:  # reported as the stream's final outcome
            yield ToolOutcome.failed(exc)
            return
        if not info.is_streaming:
            yield await self.execute_tool(session_id, tool_name, parameters)
            return
        with self.store.in_call(session):
            try:
                async for item in self._iterate(info, method, arguments):
                    yield ToolOutcome(True, item)
            except BaseException as exc:  # the tool raised part-way: what it yielded is already sent
                if _cancelled_from_outside(exc):
                    raise
                yield ToolOutcome.failed(exc)

    async def _iterate(self, info: ToolInfo, method: Any, arguments: dict[str, Any]) -> AsyncIterator[Any]:
        if info.is_async:
            async for item in method(**arguments):
                yield item
            return
        generator: Generator[Any, None, None] = method(**arguments)
        loop = asyncio.get_running_loop()
        try:
            while (item := await loop.run_in_executor(self._executor, next, generator, _DONE)) is not _DONE:
                yield item
        finally:
            with contextlib.suppress(ValueError):  # still running in a thread after a cancel
                generator.close()

    # --- watching ----------------------------------------------------------------------------

    async def watch(self, session_id: str, refs: list[str]) -> AsyncIterator[VariableEvent]:
        """Initial values, then updates, until the session ends; ``ResourceExhausted`` if too slow."""
        watcher = self.store.watch(session_id, refs)
        try:
            while True:
                event = await watcher.queue.get()
                if watcher.overflowed:
                    raise ResourceExhausted(
                        f"watcher fell {watcher.limit} updates behind on session {session_id!r}; "
                        "read faster or watch fewer variables, then watch again"
                    )
                if event is None:
                    return
                yield event
        finally:
            self.store.unwatch(watcher)

    def open_watch_stream(self) -> WatchStream:
        """A multiplexed stream of watches over this worker's sessions; ``close_watch_stream`` it when done."""
        stream = WatchStream(self.store, limit=self.store.watch_queue_size)
        self._watch_streams.add(stream)
        return stream

    def close_watch_stream(self, stream: WatchStream) -> None:
        self._watch_streams.discard(stream)
        stream.close()
