"""The symbol registry's application service: the one implementation behind HTTP and gRPC.

Writes (reserve, claim, release, extend, plans) are transactions that commit
with their events before they are acknowledged; every decision about expiry
uses the transaction's time (the server's clock). Lookups are answered from
an in-memory index of the newest lease per symbol, kept current by the event
log; a symbol the index does not know is read from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select

from muster._tasks import cancel_and_wait
from muster.clock import Clock, isoformat
from muster.errors import Conflict, Invalid, NotFound
from muster.events.hub import Event, EventHub, WatchFilter
from muster.identity import caller
from muster.identity.caller import set_current
from muster.identity.model import SYSTEM, require_owner
from muster.leases import model
from muster.leases import store as q
from muster.leases.metrics import LOOKUP_LATENCY_MS, reserves_with_status
from muster.leases.model import (
    ClaimInput,
    ExtendInput,
    Lease,
    LookupInput,
    PlanSymbol,
    ReleaseInput,
    ReserveInput,
    ReservePlanInput,
    Transition,
)
from muster.leases.schema import leases
from muster.store.engine import Store, Tx

__all__ = ["MAX_PLAN_LEASES", "LeasesService", "PlanRelease"]

log = structlog.get_logger("muster.leases")

# A plan lists at most this many leases (re-reservations included).
MAX_PLAN_LEASES = 5_000
_SWEEP_BATCH = 500
# Reserves coalesced into one transaction at most (bounded by SQLite's bind-parameter limit too).
_MAX_BATCH = 256

Key = tuple[str, str, str]
Request = tuple[PlanSymbol, str | None, int, str]  # symbol, plan_id, ttl_sec, owner


def _new_reservation(
    symbol: PlanSymbol, plan_id: str | None, ttl_sec: int, owner: str, now: datetime
) -> q.NewReservation:
    return q.NewReservation(
        symbol.repo,
        symbol.branch,
        symbol.fq_name,
        symbol.kind,
        symbol.file_path or "",
        plan_id,
        now,
        now + timedelta(seconds=ttl_sec),
        owner,
    )


def _reserved_lease(lease_id: int, row: q.NewReservation) -> Lease:
    return Lease(
        lease_id=lease_id,
        repo=row.repo,
        branch=row.branch,
        fq_name=row.fq_name,
        kind=row.kind,
        file_path=row.file_path,
        plan_id=row.plan_id,
        status="reserved",
        commit_sha=None,
        reserved_at=row.reserved_at,
        expires_at=row.expires_at,
        updated_at=row.reserved_at,
        owner=row.owner,
    )


@dataclass(frozen=True, slots=True)
class PlanRelease:
    plan_id: str
    released: int
    leases: list[Lease]

    def to_dict(self) -> dict[str, Any]:
        return {"plan_id": self.plan_id, "released": self.released, "leases": [x.to_dict() for x in self.leases]}


def _held(key: Key, holder: Lease | None) -> str:
    symbol = "/".join(key)
    if holder is None:
        return f"{symbol} is held by a lease that ended a moment ago; retry"
    until = f"reserved until {isoformat(holder.expires_at)}" if holder.status == "reserved" else holder.status
    return f"{symbol} is held by lease {holder.lease_id} ({until})"


class LeasesService:
    def __init__(self, store: Store, hub: EventHub, clock: Clock, *, sweep_interval: float = 1.0) -> None:
        self.store = store
        self.hub = hub
        self.clock = clock
        self.sweep_interval = sweep_interval
        self._latest: dict[Key, Lease] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._pending: list[tuple[ReserveInput, asyncio.Future[Lease], str]] = []  # input, caller, owner
        self._batcher: asyncio.Task[None] | None = None
        hub.add_applier(self._apply)

    # -- life cycle -------------------------------------------------------------------

    async def load(self) -> None:
        """Fill the index from the store (before the hub starts following the log)."""
        async with self.store.read() as conn:
            for lease in await q.load_latest(conn):
                self._remember(lease)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="muster-leases-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            await cancel_and_wait(self._sweeper)
            self._sweeper = None
        if self._batcher is not None:
            with contextlib.suppress(Exception):
                await self._batcher

    def _apply(self, event: Event) -> None:
        if event.kind.startswith("leases."):
            self._remember(model.lease_from_dict(event.payload["lease"]))

    def _remember(self, lease: Lease) -> None:
        current = self._latest.get(lease.key)
        if current is None or lease.lease_id >= current.lease_id:
            self._latest[lease.key] = lease

    # -- reserving ----------------------------------------------------------------------

    async def reserve(self, data: ReserveInput) -> Lease:
        """Hold the symbol for ``data.ttl_sec`` seconds; ``Conflict`` if a live lease holds it.

        Concurrent calls are coalesced: every reserve waiting when the previous
        batch commits goes into the next transaction (one multi-row insert,
        one commit). Each caller still gets its own outcome, and only after
        the commit.
        """
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._pending.append((data, future, caller.current().name))
        if self._batcher is None or self._batcher.done():
            self._batcher = asyncio.create_task(self._drain(), name="muster-leases-reserve-batch")
        try:
            lease = await future
        except Conflict:
            reserves_with_status("conflict").inc()
            raise
        reserves_with_status("reserved").inc()
        return lease

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            requests: list[Request] = [(data, data.plan_id, data.ttl_sec, owner) for data, _, owner in batch]

            async def op(tx: Tx, requests: list[Request] = requests) -> list[Lease | Conflict]:
                return await self._reserve_many(tx, requests)

            try:
                outcomes = await self.store.write(op)
            except Exception as exc:  # the whole transaction failed (store unavailable): tell everyone
                for _, future, _owner in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future, _owner), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller went away; the outcome stands
                    continue
                if isinstance(outcome, Conflict):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def _reserve_many(self, tx: Tx, requests: list[Request]) -> list[Lease | Conflict]:
        """Reserve each requested symbol that is free (by ``tx.now``); a ``Conflict`` for each that is not."""
        rows = [_new_reservation(symbol, plan_id, ttl, owner, tx.now) for symbol, plan_id, ttl, owner in requests]
        keys = [row.key for row in rows]
        granted = await q.insert_reservations(tx, rows)
        missed = [key for key in dict.fromkeys(keys) if key not in granted]
        if missed:  # held, or held by a reservation that is overdue: flip those to expired, insert again
            expired = await q.expire_symbols(tx, missed)
            for lease in expired:
                tx.emit("leases.expired", lease.subject, {"lease": lease.to_dict()})
            freed = {lease.key for lease in expired}
            retry: dict[Key, q.NewReservation] = {}
            for row in rows:  # a symbol asked for twice: the first request wins, as in the first insert
                if row.key in freed:
                    retry.setdefault(row.key, row)
            if retry:
                granted.update(await q.insert_reservations(tx, list(retry.values())))
        holders = await q.live_for_symbols(tx.conn, [k for k in missed if k not in granted]) if missed else {}
        outcomes: list[Lease | Conflict] = []
        claimed: set[Key] = set()
        for key, row in zip(keys, rows, strict=True):
            lease_id = granted.get(key)
            if lease_id is None or key in claimed:  # held, or listed twice (the first one won)
                holder = holders.get(key)
                if holder is None and lease_id is not None:
                    holder = _reserved_lease(lease_id, rows[keys.index(key)])
                outcomes.append(Conflict(_held(key, holder), field="fq_name"))
                continue
            claimed.add(key)
            outcomes.append(_reserved_lease(lease_id, row))
        for lease in sorted((o for o in outcomes if isinstance(o, Lease)), key=lambda lease: lease.lease_id):
            tx.emit("leases.reserved", lease.subject, {"lease": lease.to_dict()}, actor=lease.owner)
        return outcomes

    async def reserve_plan(self, data: ReservePlanInput) -> list[Lease]:
        """Reserve every symbol of the plan in one transaction, or none (``Conflict`` names the held ones)."""
        owner = caller.current().name
        requests: list[Request] = [(symbol, data.plan_id, data.ttl_sec, owner) for symbol in data.symbols]

        async def op(tx: Tx) -> list[Lease]:
            outcomes = await self._reserve_many(tx, requests)
            held = [o.message for o in outcomes if isinstance(o, Conflict)]
            if held:  # raising rolls the whole transaction (or savepoint) back: nothing is reserved
                more = f" and {len(held) - 5} more" if len(held) > 5 else ""
                raise Conflict(f"plan {data.plan_id} not reserved: " + "; ".join(held[:5]) + more, field="symbols")
            return [o for o in outcomes if isinstance(o, Lease)]

        try:
            granted = await self.store.write(op)
        except Conflict:
            reserves_with_status("conflict").inc(len(data.symbols))
            raise
        reserves_with_status("reserved").inc(len(granted))
        return granted

    # -- one lease's transitions ----------------------------------------------------------

    async def claim(self, data: ClaimInput) -> Lease:
        """The commit landed: the reservation becomes ``active`` (idempotent for one sha)."""
        return await self._transition(data.lease_id, lambda lease, now: model.claim(lease, data.commit_sha, now))

    async def release(self, data: ReleaseInput) -> Lease:
        """Give the symbol back (idempotent): reserved → released, active → deprecated."""
        return await self._transition(data.lease_id, model.release)

    async def extend(self, data: ExtendInput) -> Lease:
        """Move a live reservation's deadline to now + ``ttl_sec``."""
        return await self._transition(data.lease_id, lambda lease, now: model.extend(lease, data.ttl_sec, now))

    async def _transition(self, lease_id: int, change: Callable[[Lease, Any], Transition]) -> Lease:
        principal = caller.current()  # the op runs in the store's writer task: read the caller here

        async def op(tx: Tx) -> Lease:
            lease = await q.get_lease(tx, lease_id)
            if lease is None:
                raise NotFound(f"lease {lease_id} does not exist", field="lease_id")
            require_owner(principal, lease.owner, f"lease {lease_id}")
            step = change(lease, tx.now)
            if step.event is not None:
                await q.save(tx, step.lease)
                tx.emit(step.event, lease.subject, {"lease": step.lease.to_dict()})
            return step.lease.as_of(tx.now)

        return await self.store.write(op)

    # -- reading ----------------------------------------------------------------------------

    async def lookup(self, query: LookupInput) -> Lease:
        """The symbol's newest lease as of now (an overdue reservation reads ``expired``).

        ``NotFound`` if the symbol was never reserved.
        """
        started = time.perf_counter()
        try:
            lease = self._latest.get(query.key)
            if lease is None:
                lease = await self._read_through(query.key)
            return lease.as_of(self.clock.now())
        finally:
            LOOKUP_LATENCY_MS.observe((time.perf_counter() - started) * 1000.0)

    async def _read_through(self, key: Key) -> Lease:
        """Not in this process's index (reserved elsewhere a moment ago?): ask the store."""
        async with self.store.read() as conn:
            lease = await q.latest_for_symbol(conn, key)
        if lease is None:
            raise NotFound(f"symbol {'/'.join(key)} has never been reserved", field="fq_name")
        return lease

    async def get_plan(self, plan_id: str) -> list[Lease]:
        """Every lease taken under ``plan_id``, oldest first, as of now."""
        async with self.store.read() as conn:
            found = await q.plan_leases(conn, plan_id, limit=MAX_PLAN_LEASES)
        if not found:
            raise NotFound(f"plan {plan_id} has no leases", field="plan_id")
        now = self.clock.now()
        return [lease.as_of(now) for lease in found]

    async def release_plan(self, plan_id: str) -> PlanRelease:
        """Release every reservation of the plan in one transaction; claimed (active) symbols stay active.

        Every reservation, however many the plan holds; the reply lists the plan's first
        ``MAX_PLAN_LEASES`` leases after the call, as :meth:`get_plan` does.
        """
        principal = caller.current()

        async def op(tx: Tx) -> PlanRelease:
            released, ended = 0, 1
            while ended:  # each round ends what it read (released, or expired if overdue): the next reads on
                ended = 0
                for lease in await q.plan_leases(
                    tx.conn, plan_id, limit=MAX_PLAN_LEASES, for_update=True, status="reserved"
                ):
                    require_owner(principal, lease.owner, f"plan {plan_id} (lease {lease.lease_id})")
                    step = model.release(lease, tx.now)
                    if step.event is not None:
                        await q.save(tx, step.lease)
                        tx.emit(step.event, lease.subject, {"lease": step.lease.to_dict()})
                        released += step.event == "leases.released"
                        ended += 1
            after = await q.plan_leases(tx.conn, plan_id, limit=MAX_PLAN_LEASES)
            if not after:
                raise NotFound(f"plan {plan_id} has no leases", field="plan_id")
            return PlanRelease(plan_id, released, [lease.as_of(tx.now) for lease in after])

        return await self.store.write(op)

    def watch(self, *, repo: str = "", branch: str = "", since: int | None = None) -> AsyncIterator[Event]:
        """Lease events of one repo (or repo/branch; everything if ``repo`` is empty): replay, then live."""
        if branch and not repo:
            raise Invalid("repo", "must be given when branch is")
        if since is not None and since < 0:
            raise Invalid("since", "must be >= 0")
        watch_filter = WatchFilter(kind_prefix="leases.", subject_prefix=model.subject_prefix(repo, branch))
        return self.hub.watch(since, watch_filter)

    # -- expiry in the background ------------------------------------------------------------

    async def sweep_expired(self) -> int:
        """Record every expiry that has happened by the clock (as ``leases.expired`` events).

        Correctness never waits for this: reserve, claim, extend and lookup all
        judge expiry by the clock themselves. The sweep only makes expiries
        visible to watchers promptly. Safe to run in every process at once.
        """
        now = self.clock.now()
        async with self.store.read() as conn:
            due = (
                await conn.execute(
                    select(leases.c.lease_id)
                    .where(leases.c.status == "reserved", leases.c.expires_at <= now)
                    .limit(1)
                )
            ).first()
        if due is None:
            return 0
        total = 0
        while True:

            async def op(tx: Tx) -> int:
                flipped = await q.sweep_expired(tx, batch=_SWEEP_BATCH)
                for lease in flipped:
                    tx.emit("leases.expired", lease.subject, {"lease": lease.to_dict()})
                return len(flipped)

            count = await self.store.write(op)
            total += count
            if count < _SWEEP_BATCH:
                return total

    async def _sweep_loop(self) -> None:
        set_current(SYSTEM)
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep_expired()
            except Exception as exc:  # the store may be briefly unreachable: try again next time
                log.warning("leases.sweep_failed", error=repr(exc))
