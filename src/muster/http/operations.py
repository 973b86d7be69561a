"""Operational routes: liveness, readiness, metrics, and the event watch (SSE)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from muster.errors import MusterError
from muster.events.hub import MAX_KIND_PREFIX, MAX_SUBJECT_PREFIX, Event, WatchFilter
from muster.http.responses import JSON
from muster.limits import caller_name, holding
from muster.observability import GaugeCollector, render_metrics
from muster.runtime import Runtime

__all__ = ["router"]

_KEEPALIVE_S = 15.0


def router(runtime: Runtime) -> APIRouter:
    api = APIRouter(tags=["operations"])
    frames = _Frames()

    @api.get("/health", summary="Liveness: the process answers")
    async def health() -> Response:
        return JSON({"status": "ok", "service": "muster"})

    @api.get("/ready", summary="Readiness: store reachable and migrations applied (503 otherwise)")
    async def ready() -> Response:
        ok, reason = await runtime.readiness()
        return JSON({"status": "ready" if ok else "not_ready", "reason": reason}, status_code=200 if ok else 503)

    @api.get("/metrics", summary="Prometheus metrics of every Muster process")
    async def metrics() -> Response:
        counts = runtime.catalog.index.status_counts
        collector = GaugeCollector(
            "muster_services", "Registered services by status", "status",
            lambda: {s: float(counts().get(s, 0)) for s in ("ok", "degraded", "down")},
        )
        preserving = GaugeCollector(
            "muster_self_preservation", "1 while the monitor evicts nobody (self-preservation)", "state",
            lambda: {"active": float(runtime.catalog.self_preservation)},
        )
        collectors = [collector, preserving]
        if runtime.bus is not None and runtime.bus.sinks:
            await runtime.bus.status()  # the cursors, read from the store at most once a second
            collectors.append(GaugeCollector(
                "muster_bus_lag_revisions", "Events in the log after each bus sink's cursor", "sink",
                runtime.bus.lags,
            ))
        return Response(render_metrics(collectors), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.get("/watch", summary="Server-Sent Events: replay after `since`, then follow live")
    async def watch(
        request: Request,
        since: int | None = Query(None, ge=0, description="replay events after this revision"),
        kind: str = Query("", max_length=MAX_KIND_PREFIX, description="kind prefix, e.g. catalog."),
        subject: str = Query("", max_length=MAX_SUBJECT_PREFIX, description="subject prefix"),
        last_event_id: int | None = Header(None, ge=0, description="standard SSE resume header"),
    ) -> Response:
        start = last_event_id if last_event_id is not None else since
        stream: AsyncIterator[list[Event]] = runtime.hub.watch_batches(start, WatchFilter.requested(kind, subject))
        slots = runtime.hub.slots
        if slots is not None:
            address = request.client.host if request.client else None
            stream = holding(slots.acquire(caller_name(slots.auth, address)), stream)
        return StreamingResponse(
            _sse(stream, frames), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    return api


class _Frames:
    """SSE frames by revision, for one runtime's log: every watcher of a live event sends the same bytes,
    encoded once."""

    def __init__(self, kept: int = 4096) -> None:
        self.kept = kept
        self._frames: dict[int, bytes] = {}

    def __call__(self, event: Event) -> bytes:
        frame = self._frames.get(event.revision)
        if frame is None:
            frame = (f"id: {event.revision}\nevent: {event.kind}\ndata: ".encode()
                     + orjson.dumps(event.to_dict()) + b"\n\n")
            if len(self._frames) >= self.kept:
                del self._frames[next(iter(self._frames))]  # the oldest
            self._frames[event.revision] = frame
        return frame


async def _sse(stream: AsyncIterator[list[Event]], frame: _Frames) -> AsyncIterator[bytes]:
    """Format events as SSE frames (the events already queued go out in one write), with a comment line
    every 15 s to keep proxies open."""
    iterator = aiter(stream)
    yield b": muster watch\n\n"
    next_batch: asyncio.Task[list[Event]] | None = None
    try:
        while True:
            if next_batch is None:
                next_batch = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({next_batch}, timeout=_KEEPALIVE_S)
            if not done:
                yield b": keep-alive\n\n"
                continue
            try:
                batch = next_batch.result()
            except MusterError as exc:
                yield b"event: error\ndata: " + orjson.dumps(exc.to_dict()) + b"\n\n"
                return
            except StopAsyncIteration:
                return
            next_batch = None
            yield b"".join(frame(event) for event in batch)
    finally:
        if next_batch is not None:
            next_batch.cancel()
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]
