"""The event log's readers: the hub that follows it, watch streams, sinks."""

from muster.events.hub import Event, EventHub, WatchFilter

__all__ = ["Event", "EventHub", "WatchFilter"]
