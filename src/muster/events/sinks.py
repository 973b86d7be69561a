"""Sinks that follow the event log: the heartbeat alert JSONL files.

The leader appends each ``catalog.alert`` event as one JSON line to
``<data-dir>/events/heartbeat_alerts_YYYYMMDD.jsonl`` (the alert's UTC date)
and records how far it got in ``monitor_state``, so a restart resumes where
it stopped. Delivery is at-least-once: a crash between the write and the
cursor update repeats at most one batch. If the leader was away longer than
the event log's retention, the pruned stretch is skipped with a warning (the
alerts themselves stay in the catalog's alert table).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import structlog

from muster._tasks import cancel_and_wait
from muster.catalog import store as q
from muster.events.hub import EventHub, WatchFilter
from muster.store.engine import Tx
from muster.store.leader import Leadership

__all__ = ["AlertFileSink"]

log = structlog.get_logger("muster.sinks")
_CURSOR_KEY = "sink.alert_jsonl"
_FIELDS = ("alert_type", "service_id", "service_name", "missed_beats", "last_seen", "action", "ts")


class AlertFileSink:
    def __init__(
        self, hub: EventHub, directory: Path, *, interval: float = 0.5, leadership: Leadership | None = None
    ) -> None:
        self.hub = hub
        self.directory = directory
        self.interval = interval
        self.leadership = leadership  # when given, write only while this process leads
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="muster-alert-sink")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                # A process that lost leadership (its lock's connection died) stops writing: the new
                # leader's sink carries on from the shared cursor, and two writers would repeat lines.
                if self.leadership is None or self.leadership.held:
                    await self.drain()
            except Exception as exc:
                log.warning("sink.failed", error=repr(exc))
            await asyncio.sleep(self.interval)

    async def drain(self) -> int:
        """Write every alert event after the cursor; return how many lines were written."""
        store = self.hub.store
        async with store.read() as conn:
            cursor = int(await q.get_state(conn, _CURSOR_KEY) or 0)
        head = self.hub.position
        if head <= cursor:
            return 0
        oldest = await self.hub.oldest()
        if oldest is not None and oldest > cursor + 1:  # the leader was away longer than the retention
            log.warning("sink.events_pruned", after_revision=cursor, oldest_kept=oldest)
            cursor = oldest - 1
        lines: dict[str, list[bytes]] = {}
        async for event in self.hub.history(cursor, head, WatchFilter(kind_prefix="catalog.alert")):
            alert = event.payload
            record = {key: alert.get(key) for key in _FIELDS}
            # The seed's fields first, then the rest, alert_id included: a line repeated after a crash
            # (at-least-once) is recognised by it.
            record.update({k: v for k, v in alert.items() if k not in record})
            day = str(alert["ts"])[:10].replace("-", "")
            lines.setdefault(day, []).append(orjson.dumps(record) + b"\n")
        last = head  # everything up to the head has been looked at, alerts or not
        self.directory.mkdir(parents=True, exist_ok=True)
        for day, chunk in lines.items():
            with (self.directory / f"heartbeat_alerts_{day}.jsonl").open("ab") as handle:
                handle.write(b"".join(chunk))
                handle.flush()

        async def op(tx: Tx) -> None:
            await q.put_state(tx.conn, _CURSOR_KEY, last, tx.insert)

        await store.write(op)
        return sum(len(chunk) for chunk in lines.values())
