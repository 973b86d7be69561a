"""The catalog's application service: the one implementation behind HTTP and gRPC.

Registrations, promotions, deregistrations and status changes are durable
writes that commit with their event before they are acknowledged. Heartbeats
that change nothing but soft state (last beat, p95, queue depth, load) are
acknowledged from memory and written in one batch every
``heartbeat_flush_interval`` (0.5 s by default): that is what lets one
process take tens of thousands of beats a second. A beat that changes a
status (``ok``/``degraded``, or a ``down`` service coming back) is written at
once.

A registration with an ``instance_id`` is an upsert keyed by (name,
instance_id): the first one inserts, the next ones update that instance in
place (same ``service_id``) and reset its liveness, in one transaction; the
database's unique index decides between concurrent writers (see
:mod:`muster.catalog.registration`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from muster._tasks import cancel_and_wait
from muster.catalog import registration
from muster.catalog import store as q
from muster.catalog.index import CatalogIndex
from muster.catalog.model import (
    AlertRecord,
    DeregisterInput,
    DiscoverQuery,
    HeartbeatInput,
    MonitorThresholds,
    PromoteInput,
    RegisterInput,
    ServiceRecord,
)
from muster.clock import Clock, isoformat, parse_isoformat
from muster.errors import Invalid, NotFound, PermissionDenied, Unavailable
from muster.events.hub import EventHub
from muster.identity import caller
from muster.identity.model import require_owner
from muster.store.engine import Store, Tx
from muster.store.presence import count_replicas

__all__ = ["BeatAck", "CatalogService", "Registered", "SinkStatus", "Stats"]

log = structlog.get_logger("muster.catalog")


@dataclass(frozen=True, slots=True)
class Registered:
    service_id: str
    registered_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"service_id": self.service_id, "registered_at": isoformat(self.registered_at)}


@dataclass(frozen=True, slots=True)
class BeatAck:
    service_id: str
    status: str
    received_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"service_id": self.service_id, "status": self.status, "received_at": isoformat(self.received_at)}


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """What ``/stats`` and ``muster status`` say of one bus sink (muster.events.bus)."""

    sink: str
    published_revision: int  # the cursor: every event up to it was acknowledged by the bus
    lag_revisions: int  # events in the log after the cursor, as this process has followed the log

    def to_dict(self) -> dict[str, Any]:
        return {"sink": self.sink, "published_revision": self.published_revision, "lag_revisions": self.lag_revisions}


@dataclass(frozen=True, slots=True)
class Stats:
    total_services: int
    healthy_services: int
    degraded_services: int
    down_services: int
    last_check: datetime | None
    # ``muster serve`` processes sharing this store (a server's two door processes count once).
    replicas: int = 0
    # The monitor evicts nobody: too much of the fleet fell silent at once (muster.catalog.preservation).
    self_preservation: bool = False
    # Each configured bus sink: how far it has published and how far behind the log it is (muster.events.bus).
    buses: list[SinkStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_services": self.total_services,
            "healthy_services": self.healthy_services,
            "degraded_services": self.degraded_services,
            "down_services": self.down_services,
            "last_check": isoformat(self.last_check),
            "replicas": self.replicas,
            "self_preservation": self.self_preservation,
            "buses": [bus.to_dict() for bus in self.buses],
        }


ImpactProvider = Callable[[str], list[str]]


class CatalogService:
    def __init__(
        self,
        store: Store,
        hub: EventHub,
        clock: Clock,
        *,
        thresholds: MonitorThresholds | None = None,
        flush_interval: float = 0.5,
    ) -> None:
        self.store = store
        self.hub = hub
        self.clock = clock
        self.thresholds = thresholds or MonitorThresholds()
        self.index = CatalogIndex()
        self.self_preservation = False  # the monitor evicts nobody (catalog.self_preservation events)
        self.flush_interval = flush_interval
        self.impact_provider: ImpactProvider | None = None
        # The bus sinks' status (set by the composition root when buses are configured).
        self.bus_status: Callable[[], Awaitable[list[SinkStatus]]] | None = None
        self._pending_beats: dict[str, dict[str, Any]] = {}
        self.writer_id = uuid.uuid4().hex[:12]  # this process's flush mark (beat_flushes)
        self._status_in_flight: dict[str, list[str]] = {}  # service -> statuses being written, oldest first
        self._refreshed_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        hub.add_applier(self._apply)

    # -- life cycle -----------------------------------------------------------

    async def load(self) -> None:
        """Fill the index from the store (call before the hub starts following)."""
        async with self.store.read() as conn:
            records = await q.load_services(conn)
            self.self_preservation = await q.get_state(conn, "self_preservation") == "entered"
        for record in records:
            self.index.put(record)
        self._refreshed_at = self.clock.now()

    def start(self) -> None:
        self._task = asyncio.create_task(self._soft_state_loop(), name="muster-catalog-soft-state")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        with contextlib.suppress(Exception):
            await self.flush()

            async def retire(tx: Tx) -> None:  # nothing is left unflushed: hold nobody's judgement back
                await q.delete_flush_mark(tx.conn, self.writer_id)

            await self.store.write(retire)

    def _apply(self, event: Any) -> None:
        if event.kind == "catalog.self_preservation":
            self.self_preservation = event.payload["state"] == "entered"
        elif event.kind.startswith("catalog."):
            self.index.apply(event)

    # -- operations -------------------------------------------------------------

    async def register(self, data: RegisterInput) -> Registered:
        """A new instance; with an ``instance_id`` already known for this name, that instance updated in place.

        Re-registering another principal's instance is ``PermissionDenied`` (its
        owner or an admin may). See :mod:`muster.catalog.registration`.
        """
        if data.instance_id is None:
            record = await self.store.write(registration.new_instance(data))
        else:
            record = await self.store.write(registration.upsert_instance(data, caller.current()))
            # Beats of the instance's previous life, not yet flushed, must not overwrite its fresh liveness.
            self._pending_beats.pop(record.service_id, None)
        return Registered(record.service_id, record.registered_at)

    async def heartbeat(self, beat: HeartbeatInput) -> BeatAck:
        now = self.clock.now()
        record = self.index.get(beat.service_id) or await self._read_through(beat.service_id)
        require_owner(caller.current(), record.owner, f"service {record.service_id}")
        # A status beat of this service still being written decides what "current" is: the index
        # only learns it at commit, and a beat right behind it must not be judged on the old status.
        in_flight = self._status_in_flight.get(beat.service_id)
        status = in_flight[-1] if in_flight else record.status
        if status == "down" or status != beat.status:
            return await self._status_beat(record, beat, now, recovering=status == "down")
        record.last_heartbeat_ts = now
        record.p95_ms, record.queue_depth, record.load = beat.p95_ms, beat.queue_depth, beat.load
        self._pending_beats[beat.service_id] = {
            "sid": beat.service_id,
            "ts": now,
            "p95": beat.p95_ms,
            "queue": beat.queue_depth,
            "ld": beat.load,
        }
        return BeatAck(beat.service_id, beat.status, now)

    async def _read_through(self, service_id: str, *, beating: bool = True) -> ServiceRecord:
        """Not in this process's index yet (registered elsewhere a moment ago?): ask the store.

        The advice to register again belongs to heartbeats (a 404 there means: register); a read or a
        deregistration of an unknown id just says there is no such service.
        """
        async with self.store.read() as conn:
            record = await q.get_service(conn, service_id)
        if record is None:
            message = f"service {service_id} is not registered (register again)" if beating else (
                f"no such service: {service_id}"
            )
            raise NotFound(message, field="service_id")
        await self.hub.advance_to(await self.hub.head())
        return self.index.get(service_id) or record

    async def _status_beat(
        self, record: ServiceRecord, beat: HeartbeatInput, now: datetime, *, recovering: bool
    ) -> BeatAck:
        values = {
            "last_heartbeat_ts": now,
            "p95_ms": beat.p95_ms,
            "queue_depth": beat.queue_depth,
            "load": beat.load,
        }

        async def op(tx: Tx) -> bool:
            changed = await q.set_status(
                tx.conn,
                beat.service_id,
                beat.status,
                only_if_status="down" if recovering else None,
                beat=values,
            )
            if not changed:
                current = await q.get_service(tx.conn, beat.service_id)
                if current is None:
                    raise NotFound(f"service {beat.service_id} is not registered (register again)", field="service_id")
                return False
            tx.emit(
                "catalog.status_changed",
                beat.service_id,
                {"service_id": beat.service_id, "status": beat.status, "last_heartbeat_ts": isoformat(now)},
            )
            if recovering:
                alert = await q.insert_alert(
                    tx.conn,
                    alert_type="service_recovered",
                    record=record,
                    missed_beats=0,
                    action="restored",
                    ts=tx.now,
                    details={},
                    actor=tx.actor,
                )
                tx.emit("catalog.alert", beat.service_id, alert.to_dict())
            return True

        in_flight = self._status_in_flight.setdefault(beat.service_id, [])
        in_flight.append(beat.status)
        try:
            await self.store.write(op)
        finally:
            in_flight.remove(beat.status)
            if not in_flight:
                self._status_in_flight.pop(beat.service_id, None)
        current = self.index.get(beat.service_id)
        if current is not None:
            current.last_heartbeat_ts = now
            current.p95_ms, current.queue_depth, current.load = beat.p95_ms, beat.queue_depth, beat.load
        return BeatAck(beat.service_id, beat.status, now)

    def discover(self, query: DiscoverQuery) -> list[ServiceRecord]:
        return self.index.discover(query)

    async def promote(self, data: PromoteInput) -> ServiceRecord:
        principal = caller.current()
        record = await self.get(data.service_id)
        require_owner(principal, record.owner, f"service {data.service_id}")
        if data.role == "production" and record.role != "production" and not principal.is_admin:
            raise PermissionDenied("promotion to production needs a token with the admin scope", field="role")

        async def op(tx: Tx) -> None:
            if not await q.set_role(tx.conn, data.service_id, data.role):
                raise NotFound(f"service {data.service_id} is not registered", field="service_id")
            tx.emit("catalog.promoted", data.service_id, {"service_id": data.service_id, "role": data.role})

        await self.store.write(op)
        return await self.get(data.service_id)

    async def deregister(self, data: DeregisterInput, *, reason: str = "requested") -> ServiceRecord:
        principal = caller.current()
        known = self.index.get(data.service_id)
        if known is None:  # registered on another replica a moment ago? (NotFound if nowhere)
            known = await self._read_through(data.service_id, beating=False)
        require_owner(principal, known.owner, f"service {data.service_id}")

        async def op(tx: Tx) -> ServiceRecord:
            record = await q.delete_service(tx.conn, data.service_id)
            if record is None:
                raise NotFound(f"service {data.service_id} is not registered", field="service_id")
            tx.emit("catalog.deregistered", data.service_id, {"service_id": data.service_id, "reason": reason})
            return record

        record = await self.store.write(op)
        self._pending_beats.pop(data.service_id, None)
        return record

    def list_services(self, *, status: str | None = None, limit: int = 1000, offset: int = 0) -> list[ServiceRecord]:
        records = sorted(self.index.by_id.values(), key=lambda r: (r.name, r.service_id))
        if status is not None:
            records = [r for r in records if r.status == status]
        return records[offset : offset + limit]

    async def get(self, service_id: str) -> ServiceRecord:
        record = self.index.get(service_id)
        if record is None:
            record = await self._read_through(service_id, beating=False)
        return record

    async def stats(self) -> Stats:
        counts = self.index.status_counts()
        async with self.store.read() as conn:
            last_check = await q.get_state(conn, "last_check")
        replicas = await count_replicas(self.store)
        return Stats(
            total_services=len(self.index),
            healthy_services=counts.get("ok", 0),
            degraded_services=counts.get("degraded", 0),
            down_services=counts.get("down", 0),
            last_check=parse_isoformat(last_check),
            replicas=replicas,
            self_preservation=self.self_preservation,
            buses=await self.bus_status() if self.bus_status is not None else [],
        )

    async def alerts(self, *, limit: int = 100, since: datetime | None = None) -> list[AlertRecord]:
        if since is not None:
            try:  # 0001-01-01T00:00:00+01:00 is a valid time that UTC cannot hold
                since = since.astimezone(UTC)
            except (OverflowError, ValueError):
                raise Invalid("since", "must be a time between 0001-01-01 and 9999-12-31 UTC") from None
        async with self.store.read() as conn:
            return await q.list_alerts(conn, limit=limit, since=since)

    # -- heartbeat soft state -------------------------------------------------------

    async def flush(self) -> int:
        """Write buffered heartbeats (the latest per service) in one transaction, with this process's
        flush mark: every beat it acknowledged before the flush began is in the store (see
        ``HeartbeatMonitor``). The mark is written even with no beats, so an idle process holds
        nobody's judgement back."""
        through = self.clock.now()
        # In service-id order: two processes flushing the same services lock their rows in one order,
        # so their flushes never deadlock (PostgreSQL would fail one of them after a second).
        beats = [self._pending_beats[sid] for sid in sorted(self._pending_beats)]
        self._pending_beats = {}

        async def op(tx: Tx) -> None:
            await q.flush_beats(tx.conn, beats)
            await q.mark_flushed(tx, self.writer_id, through)

        try:
            await self.store.write(op)
        except Unavailable:
            for beat in beats:  # the store is away: keep them for the next flush unless a newer beat arrived
                self._pending_beats.setdefault(beat["sid"], beat)
            raise
        except Exception:
            # The store refused the rows themselves: retrying them would fail every flush (and every
            # sweep, which flushes first) from now on. Drop them; the next beats carry fresh values.
            log.warning("catalog.beats_dropped", beats=len(beats), exc_info=True)
            raise
        return len(beats)

    async def refresh_soft_state(self) -> None:
        """Pick up heartbeat metrics that other processes wrote to the store.

        A row another process flushes carries beat times at most one flush
        interval (plus commit latency) older than the moment it lands, so rows
        landed since the previous refresh all have beat times after that
        refresh's time minus this margin: that window is all that is read. When
        beats stop, the window moves on with the clock and reads nothing.
        """
        now = self.clock.now()
        margin = timedelta(seconds=self.flush_interval + 0.5)
        since = (self._refreshed_at - margin) if self._refreshed_at else now - timedelta(days=3650)
        async with self.store.read() as conn:
            rows = await q.soft_state_since(conn, since)
        self._refreshed_at = now
        for position, row in enumerate(rows, 1):
            record = self.index.get(row.service_id)
            if record is not None and row.last_heartbeat_ts is not None and (
                record.last_heartbeat_ts is None or row.last_heartbeat_ts > record.last_heartbeat_ts
            ):
                record.last_heartbeat_ts = row.last_heartbeat_ts
                record.p95_ms, record.queue_depth, record.load = row.p95_ms, row.queue_depth, row.load
            if position % 500 == 0:
                await asyncio.sleep(0)  # a big refresh must not hold up requests

    async def _soft_state_loop(self) -> None:
        refresh_every = max(1.0, self.flush_interval)
        next_refresh = 0.0
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
                now = asyncio.get_running_loop().time()
                if now >= next_refresh:
                    next_refresh = now + refresh_every
                    await self.refresh_soft_state()
            except Exception as exc:  # keep beating through a store hiccup; beats are re-sent
                log.warning("catalog.flush_failed", error=repr(exc))
