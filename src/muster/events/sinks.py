"""Sinks that follow the event log: the heartbeat alert JSONL files.

Every server writes the whole alert log into its own ``<data-dir>/events/``: each
``catalog.alert`` event becomes one JSON line of
``heartbeat_alerts_YYYYMMDD.jsonl`` (the alert's UTC date), whichever replica's
monitor raised it, so an operator reads one complete file on any replica, before
and after any number of leader changes. The sink follows the shared event log from
a cursor kept in the database under the directory's own id (``events/.sink-id``):
a restart resumes where it stopped, and a new replica starts from the oldest event
still kept. Servers that share one data dir (SQLite replicas on one machine) share
its file too: one of them writes it at a time, holding ``events/.writer.lock``.

Delivery is at least once: the lines are fsynced before the cursor moves, so a crash
between the two repeats at most one batch (each line carries its ``alert_id``). If the
sink was away longer than the event log's retention, the pruned stretch is skipped
with a warning (the alerts themselves stay in the catalog's alert table).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
from pathlib import Path

import orjson
import structlog

from muster._tasks import cancel_and_wait
from muster.catalog import store as q
from muster.events.hub import EventHub, WatchFilter
from muster.store.engine import Tx

__all__ = ["AlertFileSink"]

log = structlog.get_logger("muster.sinks")
# Before each directory had its own cursor, the one leader's sink kept this one.
_SHARED_CURSOR_KEY = "sink.alert_jsonl"
_FIELDS = ("alert_type", "service_id", "service_name", "missed_beats", "last_seen", "action", "ts")


class AlertFileSink:
    """Writes every alert of the event log, once, into ``directory``."""

    def __init__(self, hub: EventHub, directory: Path, *, interval: float = 0.5) -> None:
        self.hub = hub
        self.directory = directory
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._lock_fd: int | None = None
        self._cursor_key: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="muster-alert-sink")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the lock goes with it
            self._lock_fd = None

    @property
    def writing(self) -> bool:
        """This process writes the directory (no other process sharing it does)."""
        return self._lock_fd is not None

    def _take_directory(self) -> bool:
        if self._lock_fd is not None:
            return True
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        log.info("sink.writing", directory=str(self.directory))
        return True

    async def _run(self) -> None:
        while True:
            try:
                if self._take_directory():  # else another server on this data dir writes it
                    await self.drain()
            except Exception as exc:
                log.warning("sink.failed", error=repr(exc))
            await asyncio.sleep(self.interval)

    async def _cursor(self) -> tuple[str, int]:
        """This directory's cursor key and position (a new directory's first cursor: see below)."""
        store = self.hub.store
        if self._cursor_key is None:
            id_path = self.directory / ".sink-id"
            self.directory.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                fd = os.open(id_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, uuid.uuid4().hex.encode())
                os.fsync(fd)
                os.close(fd)
            self._cursor_key = f"{_SHARED_CURSOR_KEY}:{id_path.read_text().strip()}"
        async with store.read() as conn:
            position = await q.get_state(conn, self._cursor_key)
            if position is None and any(self.directory.glob("heartbeat_alerts_*.jsonl")):
                # A directory written before cursors were per directory: it holds what the old cursor says.
                position = await q.get_state(conn, _SHARED_CURSOR_KEY)
        return self._cursor_key, int(position or 0)

    async def drain(self) -> int:
        """Write every alert event after the cursor; return how many lines were written."""
        store = self.hub.store
        key, cursor = await self._cursor()
        head = self.hub.position
        if head <= cursor:
            return 0
        oldest = await self.hub.oldest()
        if oldest is not None and oldest > cursor + 1:  # away longer than the retention (or a new replica)
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
                os.fsync(handle.fileno())  # on disk before the cursor says so

        async def op(tx: Tx) -> None:
            await q.put_state(tx.conn, key, last, tx.insert)

        await store.write(op)
        return sum(len(chunk) for chunk in lines.values())
