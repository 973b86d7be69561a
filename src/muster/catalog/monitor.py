"""The heartbeat monitor: sweeps the catalog and acts on missed beats.

Runs only in the leader process (see ``muster.store.leader``). Each sweep
flushes this process's buffered beats, reads every service from the store,
asks :func:`muster.catalog.model.verdicts` what to do at the server's current
time, and applies each verdict in the store under a guard: a service whose
last beat changed since it was read is left alone (it beat in the meantime).
Each action writes an alert row and a ``catalog.alert`` event; the JSONL file
sink follows those events.

Silence is judged at the flush horizon, not at the clock: a beat is acknowledged
when the process that took it has it in memory, and reaches the store at that
process's next flush. Every process that takes beats records how far it has
flushed (``beat_flushes``); a sweep judges at the lowest of those marks (never
later than now), so a replica whose flushes lag (a starved machine, a stalled
transaction) delays a verdict instead of causing a false down. A process that
has not flushed for one leader lease (killed, paused, cut off) no longer holds
the horizon back: the beats it acknowledged and never wrote are lost with it,
and a graceful stop removes its mark.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from muster._tasks import cancel_and_wait
from muster.catalog import store as q
from muster.catalog.model import ServiceRecord, Verdict, verdicts
from muster.catalog.preservation import Assessment, SelfPreservation
from muster.catalog.service import CatalogService
from muster.clock import isoformat
from muster.identity.caller import set_current
from muster.identity.model import SYSTEM
from muster.observability import MONITOR_SWEEPS
from muster.store.engine import Tx
from muster.store.leader import Leadership, LeadershipLost

__all__ = ["HeartbeatMonitor"]

log = structlog.get_logger("muster.monitor")

FLUSH_MARKS_KEPT = timedelta(hours=1)  # a process's mark outlives it this long, then a sweep removes it


class HeartbeatMonitor:
    def __init__(
        self,
        catalog: CatalogService,
        leadership: Leadership,
        *,
        interval: float,
        alerts_retained: int = 10_000,
        preservation: SelfPreservation | None = None,
    ) -> None:
        self.catalog = catalog
        self.leadership = leadership
        self.interval = interval
        self.alerts_retained = alerts_retained
        self.preservation = preservation
        self._task: asyncio.Task[None] | None = None
        # When this process began watching as the leader: silence before it is not counted.
        self.watched_since: datetime | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="muster-heartbeat-monitor")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        """Sweep every ``interval`` while this process leads (the lease is kept by ``Leadership``)."""
        set_current(SYSTEM)  # what the monitor changes, the server changed: events say "muster"
        watching_since: datetime | None = None
        store_was_away = False  # the last sweep failed: the silence since it is not judged
        while True:
            try:
                if self.leadership.held:
                    if self.leadership.acquired_at != watching_since:  # a takeover, or leading again after a lapse
                        watching_since = self.watched_since = self.leadership.acquired_at
                        log.info("monitor.watching", epoch=self.leadership.epoch, grace="one TTL from now")
                    elif store_was_away:
                        self.watched_since = self.catalog.clock.now()
                        log.info("monitor.watching", epoch=self.leadership.epoch, grace="one TTL from now",
                                 reason="the store is back")
                    store_was_away = False
                    await self.sweep()
            except LeadershipLost as exc:
                MONITOR_SWEEPS.labels(outcome="fenced").inc()
                log.warning("monitor.fenced", reason=str(exc))
            except Exception as exc:  # the store away, as a rule: the silence it hid is not judged either
                store_was_away = True
                MONITOR_SWEEPS.labels(outcome="failed").inc()
                log.warning("monitor.sweep_failed", error=repr(exc))
            await asyncio.sleep(self.interval)

    async def sweep(self) -> list[tuple[ServiceRecord, Verdict]]:
        """One pass over the catalog; returns what was acted on."""
        catalog = self.catalog
        await catalog.flush()
        now = catalog.clock.now()
        at = await self.horizon(now)  # silence is judged up to where every live process has flushed
        # Candidates come from memory (this process's index: every service, with
        # beats flushed by other processes up to a second old). Only they are
        # read back and judged again from the store, which is the truth and the
        # guard of every update below: a service whose newer beat this process
        # has not seen yet is left alone there.
        since, rules = self.watched_since, catalog.thresholds
        suspects = [r.service_id for r in catalog.index.by_id.values() if verdicts(r, at, rules, watched_since=since)]
        records: list[ServiceRecord] = []
        if suspects:
            async with catalog.store.read() as conn:
                records = await q.get_services(conn, suspects)
        due = [(r, v) for r in records for v in verdicts(r, at, rules, watched_since=since)]
        assessment = self._assess(now, records, due)
        if assessment is not None and assessment.protect:
            due = []  # more of the fleet silent at once than is believable: evict nobody
        impacts = {r.service_id: self._impact(r) for r, v in due if v.action == "marked_down"}

        async def op(tx: Tx) -> list[tuple[ServiceRecord, Verdict]]:
            await self.leadership.fence(tx)  # a leader that lost its lease writes nothing
            if assessment is not None and assessment.change is not None:
                tx.emit("catalog.self_preservation", "self_preservation", {
                    "state": assessment.change, "live_at_window_start": assessment.population,
                    "would_be_down": assessment.at_risk, "share": round(assessment.share, 4),
                })
                await q.put_state(tx.conn, "self_preservation", assessment.change, tx.insert)
            acted: list[tuple[ServiceRecord, Verdict]] = []
            for record, verdict in due:
                if await self._apply(tx, record, verdict, impacts.get(record.service_id)):
                    acted.append((record, verdict))
            await q.put_state(tx.conn, "last_check", isoformat(tx.now), tx.insert)
            await q.prune_flush_marks(tx.conn, before=tx.now - FLUSH_MARKS_KEPT)
            if acted:
                await q.prune_alerts(tx.conn, self.alerts_retained)
            return acted

        acted = await catalog.store.write(op)
        if self.preservation is not None:
            self.preservation.record(now, sum(v.action == "marked_down" for _, v in acted))
        if assessment is not None and assessment.change is not None:
            log.warning(f"monitor.self_preservation_{assessment.change}", would_be_down=assessment.at_risk,
                        live_at_window_start=assessment.population, share=round(assessment.share, 3))
        MONITOR_SWEEPS.labels(outcome="ok").inc()
        self._log(acted)
        return acted

    async def horizon(self, now: datetime) -> datetime:
        """The time up to which every process still flushing has written the beats it acknowledged."""
        active_since = now - timedelta(seconds=self.leadership.lease_s)
        async with self.catalog.store.read() as conn:
            horizon = await q.flush_horizon(conn, active_since=active_since)
        return now if horizon is None else min(now, horizon)

    def _assess(
        self, now: datetime, records: list[ServiceRecord], due: list[tuple[ServiceRecord, Verdict]]
    ) -> Assessment | None:
        if self.preservation is None:
            return None
        self.preservation.active = self.catalog.self_preservation  # as the event log says, whoever led
        live = sum(1 for r in self.catalog.index.by_id.values() if r.status != "down")
        window = max((r.ttl_s for r in records), default=0)
        marking = sum(v.action == "marked_down" for _, v in due)
        return self.preservation.assess(now, live=live, evicting=marking, window_s=window)

    @staticmethod
    def _log(acted: list[tuple[ServiceRecord, Verdict]]) -> None:
        for record, verdict in acted:
            log.info(
                "monitor.acted",
                service_id=record.service_id,
                service_name=record.name,
                action=verdict.action,
                missed_beats=verdict.missed_beats,
            )

    def _impact(self, record: ServiceRecord) -> list[str] | None:
        provider = self.catalog.impact_provider
        if provider is None:
            return None
        try:
            return provider(record.name)
        except Exception as exc:  # an impact lookup must never stop the monitor
            log.warning("monitor.impact_failed", service=record.name, error=repr(exc))
            return None

    @staticmethod
    async def _apply(tx: Tx, record: ServiceRecord, verdict: Verdict, impacted: list[str] | None) -> bool:
        if verdict.action == "marked_down":
            changed = await q.set_status(
                tx.conn,
                record.service_id,
                "down",
                unless_status="down",
                seen=record.last_heartbeat_ts,
                check_seen=True,
            )
            if not changed:
                return False
            tx.emit(
                "catalog.status_changed",
                record.service_id,
                {
                    "service_id": record.service_id,
                    "status": "down",
                    "last_heartbeat_ts": isoformat(record.last_heartbeat_ts),
                },
            )
        else:
            current = await q.get_service(tx.conn, record.service_id)
            if current is None or current.last_heartbeat_ts != record.last_heartbeat_ts:
                return False
            await q.delete_service(tx.conn, record.service_id)
            tx.emit(
                "catalog.deregistered",
                record.service_id,
                {"service_id": record.service_id, "reason": "missed_heartbeats"},
            )
        details = {"impacted_services": impacted} if impacted is not None else {}
        alert = await q.insert_alert(
            tx.conn,
            alert_type=verdict.alert_type,
            record=record,
            missed_beats=verdict.missed_beats,
            action=verdict.action,
            ts=tx.now,
            details=details,
            actor=tx.actor,
        )
        tx.emit("catalog.alert", record.service_id, alert.to_dict())
        return True
