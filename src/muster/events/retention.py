"""Event log retention: the leader deletes events older than the retention period.

The log is the source of every process's in-memory indexes only while they
follow it; the tables hold the current state. Old events are therefore kept
for watchers that resume (``since``) and for audit, up to a configured age,
and then pruned from the oldest end in batches, so one prune never holds the
write lock for long. The newest event is never pruned: revisions are numbered
after the head, and keeping it keeps them growing. Pruning is housekeeping of
the log itself and appends no event.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from sqlalchemy import delete, func, select

from muster._tasks import cancel_and_wait
from muster.identity.caller import set_current
from muster.identity.model import SYSTEM
from muster.store.engine import Store, Tx
from muster.store.leader import Leadership
from muster.store.schema import events

__all__ = ["EventPruner", "prune_events"]

log = structlog.get_logger("muster.events")
_BATCH = 5_000


async def prune_events(store: Store, retention: timedelta, *, batch: int = _BATCH) -> int:
    """Delete the events older than ``retention`` (by the server's clock), oldest first; how many went."""
    total = 0
    while True:

        async def op(tx: Tx) -> int:
            cutoff = tx.now - retention
            head = (await tx.conn.execute(select(func.max(events.c.revision)))).scalar()
            if head is None:
                return 0
            oldest = (
                await tx.conn.execute(
                    select(events.c.revision, events.c.ts)
                    .where(events.c.revision < head)
                    .order_by(events.c.revision)
                    .limit(batch)
                )
            ).all()
            # Up to the first event that is young enough: older ones never follow it
            # by more than clock skew between processes, which only delays their turn.
            boundary = None
            for revision, ts in oldest:
                if ts >= cutoff:
                    break
                boundary = revision
            if boundary is None:
                return 0
            result = await tx.conn.execute(delete(events).where(events.c.revision <= boundary))
            return int(result.rowcount or 0)

        pruned = await store.write(op)
        total += pruned
        if pruned < batch:
            return total


class EventPruner:
    """Runs ``prune_events`` every ``interval`` seconds in whichever process holds leadership."""

    def __init__(self, store: Store, leadership: Leadership, *, retention_hours: float, interval: float) -> None:
        self.store = store
        self.leadership = leadership
        self.retention = timedelta(hours=retention_hours)
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.retention > timedelta(0):
            self._task = asyncio.create_task(self._run(), name="muster-event-pruner")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)

    async def _run(self) -> None:
        set_current(SYSTEM)
        while True:
            await asyncio.sleep(self.interval)
            if not self.leadership.held:
                continue
            try:
                pruned = await prune_events(self.store, self.retention)
            except Exception as exc:  # the store may be briefly unreachable: next round
                log.warning("events.prune_failed", error=repr(exc))
                continue
            if pruned:
                log.info("events.pruned", count=pruned, retention_hours=self.retention.total_seconds() / 3600)
