"""``muster.v1.Events``: the event log as a gRPC server stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from muster._proto.muster.v1 import events_pb2 as pb
from muster._proto.muster.v1 import events_pb2_grpc as pb_grpc
from muster.errors import Invalid
from muster.events.hub import EventHub, WatchFilter
from muster.grpc.common import streaming, timestamp
from muster.limits import grpc_caller, holding

__all__ = ["EventsServicer"]


class EventsServicer(pb_grpc.EventsServicer):
    def __init__(self, hub: EventHub) -> None:
        self.hub = hub

    @streaming("Events/Watch")
    async def Watch(self, request: pb.WatchRequest, context: Any) -> AsyncIterator[pb.Event]:
        since = request.since if request.HasField("since") else None
        if since is not None and since < 0:
            raise Invalid("since", "must be >= 0")
        watch_filter = WatchFilter.requested(request.kind_prefix, request.subject_prefix)
        stream = self.hub.watch(since, watch_filter)
        if self.hub.slots is not None:
            stream = holding(self.hub.slots.acquire(grpc_caller(self.hub.slots, context)), stream)
        async for event in stream:
            yield pb.Event(
                revision=event.revision,
                kind=event.kind,
                subject=event.subject,
                payload_json=orjson.dumps(event.payload).decode(),
                ts=timestamp(event.ts),
                actor=event.actor,
            )
