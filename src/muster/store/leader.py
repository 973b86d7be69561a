"""Leadership: exactly one process runs the heartbeat monitor and the event pruner, under a lease.

The lease is a row of the ``leadership`` table, the same on SQLite and PostgreSQL: its holder, an
``epoch`` and an expiry. The holder renews it every ``lease_s / 4`` seconds; any other process may
take it once it has expired, which raises the epoch by one. So a leader that dies, hangs (SIGSTOP),
loses its network or cannot reach the database is replaced within ``lease_s`` plus one attempt
(``lease_s * 1.25``), whatever ``--monitor-interval`` is.

A leader that wakes up after its lease was taken must not act on what it decided before it slept.
Every write the leader makes goes through :meth:`Leadership.fence` in its own transaction: an
``UPDATE`` of the lease row that matches only this holder at this epoch. The database decides, not
the process: once another process took over (a new epoch), the fenced transaction matches nothing and
is refused, so a stale leader can neither mark a service down nor write an alert. The row lock the
``UPDATE`` takes also orders the fenced write against a concurrent takeover.

Time: expiries are written with the store's clock (server-side time). Clocks that disagree between
hosts can only shorten or lengthen a lease, never let two epochs write: the epoch is the guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update

from muster._tasks import cancel_and_wait
from muster.store.engine import Store, Tx
from muster.store.schema import leadership as table

__all__ = ["DEFAULT_LEASE_S", "Leadership", "LeadershipLost"]

log = structlog.get_logger("muster.leader")

DEFAULT_LEASE_S = 4.0


class LeadershipLost(Exception):
    """A fenced write was refused: another process holds the lease at a newer epoch."""


@dataclass(frozen=True, slots=True)
class _Lease:
    holder: str
    epoch: int
    expires_at: datetime


class Leadership:
    """This process's claim on the ``name`` lease (one per role: ``monitor``)."""

    def __init__(
        self,
        store: Store,
        *,
        name: str = "monitor",
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.store = store
        self.name = name
        self.lease_s = lease_s
        self.holder = uuid.uuid4().hex[:12]
        self.epoch: int | None = None
        # When this process last took the lease, or held it again after a lapse (the store's clock): a new
        # leader's watch begins there.
        self.acquired_at: datetime | None = None
        self._valid_until = 0.0  # time.monotonic(): past it, this process does not act as leader
        self.interrupted = False  # a renewal failed while held: the next one that succeeds is a resume
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """This process holds the lease and renewed it less than ``lease_s`` ago."""
        return self.epoch is not None and time.monotonic() < self._valid_until

    @property
    def renew_interval(self) -> float:
        return self.lease_s / 4

    def start(self) -> None:
        """Keep trying for the lease, and renewing it once held, in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"muster-leadership-{self.name}")

    async def _run(self) -> None:
        while True:
            try:
                await self.try_acquire()
            except Exception as exc:  # the store is away: the lease lapses by itself
                log.warning("leader.renew_failed", lease=self.name, error=exc.__class__.__name__)
                self.interrupted = self.epoch is not None  # held on, but nobody watched meanwhile
            await asyncio.sleep(self.renew_interval)

    async def try_acquire(self) -> bool:
        """Renew the lease if this process holds it, take it if it has expired; True while held."""
        started = time.monotonic()
        # It could not renew for a whole lease, or a renewal failed (the store was away): the watch begins anew.
        lapsed = not self.held or self.interrupted
        async with self.store.read() as conn:
            row = (await conn.execute(select(table.c.holder, table.c.epoch, table.c.expires_at).where(
                table.c.name == self.name
            ))).first()
        current = _Lease(*row) if row is not None else None
        mine = current is not None and current.holder == self.holder and current.epoch == self.epoch
        if current is not None and not mine and current.expires_at > self.store.clock.now():
            self._lost()
            return False
        epoch = await self.store.write(lambda tx: self._claim(tx, current, mine))
        if epoch is None:
            self._lost()
            return False
        if epoch != self.epoch or lapsed:
            # Taken, or held again after the store was away: a new watch begins.
            event = "leader.acquired" if epoch != self.epoch else "leader.resumed"
            self.epoch = epoch
            self.acquired_at = self.store.clock.now()
            log.info(event, lease=self.name, epoch=epoch, holder=self.holder, lease_s=self.lease_s)
        self._valid_until = started + self.lease_s
        self.interrupted = False
        return True

    async def _claim(self, tx: Tx, seen: _Lease | None, mine: bool) -> int | None:
        expires = tx.now + timedelta(seconds=self.lease_s)
        if seen is None:
            inserted = await tx.conn.execute(
                tx.insert(table)
                .values(name=self.name, holder=self.holder, epoch=1, expires_at=expires, acquired_at=tx.now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            return 1 if inserted.rowcount == 1 else None
        if mine:  # renew: only while nobody took it over
            renewed = await tx.conn.execute(
                update(table)
                .where(table.c.name == self.name, table.c.holder == self.holder, table.c.epoch == seen.epoch)
                .values(expires_at=expires)
            )
            return seen.epoch if renewed.rowcount == 1 else None
        taken = await tx.conn.execute(  # take over an expired lease: exactly one taker wins the epoch
            update(table)
            .where(table.c.name == self.name, table.c.epoch == seen.epoch, table.c.expires_at <= tx.now)
            .values(holder=self.holder, epoch=seen.epoch + 1, expires_at=expires, acquired_at=tx.now)
        )
        return seen.epoch + 1 if taken.rowcount == 1 else None

    async def fence(self, tx: Tx) -> None:
        """Refuse this transaction unless this process still holds the lease at its epoch."""
        if self.epoch is None:
            raise LeadershipLost(f"this process does not hold the {self.name} lease")
        fenced = await tx.conn.execute(
            update(table)
            .where(table.c.name == self.name, table.c.holder == self.holder, table.c.epoch == self.epoch)
            .values(expires_at=tx.now + timedelta(seconds=self.lease_s))
        )
        if fenced.rowcount != 1:
            self._lost()
            raise LeadershipLost(f"the {self.name} lease was taken over; this process no longer leads")

    def _lost(self) -> None:
        if self.epoch is not None:
            log.warning("leader.lost", lease=self.name, epoch=self.epoch, holder=self.holder)
        self.epoch = None
        self.acquired_at = None
        self._valid_until = 0.0

    async def release(self) -> None:
        """Stop leading and let another process take over at once (a graceful stop)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
        epoch, self.epoch = self.epoch, None
        self._valid_until = 0.0
        if epoch is None:
            return

        async def expire(tx: Tx) -> Any:
            return await tx.conn.execute(
                update(table)
                .where(table.c.name == self.name, table.c.holder == self.holder, table.c.epoch == epoch)
                .values(expires_at=tx.now)
            )

        with contextlib.suppress(Exception):  # the store is away: the lease expires by itself
            await self.store.write(expire)
            log.info("leader.released", lease=self.name, epoch=epoch)
