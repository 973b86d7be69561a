"""Property: whatever the interleaving of operations and clock moves, leases stay exclusive and ids grow.

Reserves also come several at once (``reserve_together``), so the service coalesces them into one write
group, where duplicates of one symbol and overdue holders meet in a single transaction.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, or_, select

from muster.clock import FakeClock
from muster.errors import Conflict, Expired, FailedPrecondition, MusterError
from muster.events.hub import EventHub
from muster.leases.model import ClaimInput, ExtendInput, Lease, LookupInput, ReleaseInput, ReserveInput
from muster.leases.schema import leases
from muster.leases.service import LeasesService
from muster.store.engine import Store

T = TypeVar("T")
NAMES = st.sampled_from(["a", "b", "c"])
SHAS = st.sampled_from(["abcdef1", "1234567"])
KINDS = st.sampled_from(["function", "class"])


async def _gather(calls: list[Coroutine[Any, Any, Lease]]) -> list[Lease | BaseException]:
    return await asyncio.gather(*calls, return_exceptions=True)


class _Harness:
    """One store, hub and service on their own event loop, shared by every example."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(datetime(2026, 11, 22, tzinfo=UTC))
        self.store = Store(url, clock=self.clock)
        self.hub = EventHub(self.store)
        self.service = LeasesService(self.store, self.hub, self.clock)
        self.run(self.hub.start())
        self.repos = itertools.count()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self.hub.close())
        self.run(self.store.close())
        self.loop.close()


def machine_for(harness: _Harness) -> type[RuleBasedStateMachine]:
    class Leases(RuleBasedStateMachine):
        """A reference model beside the real service: same answers, one live lease per symbol."""

        @initialize()
        def fresh_repo(self) -> None:
            self.repo = f"repo{next(harness.repos)}"
            self.expected: dict[str, Lease] = {}  # the newest lease per name, per the model
            self.highest_id = 0

        def _now(self) -> datetime:
            return harness.clock.now()

        def _newest(self, name: str) -> Lease | None:
            return self.expected.get(name)

        @rule(name=NAMES, ttl=st.integers(1, 30))
        def reserve(self, name: str, ttl: int) -> None:
            current = self._newest(name)
            data = ReserveInput(repo=self.repo, branch="main", fq_name=name, kind="function", ttl_sec=ttl)
            try:
                lease = harness.run(harness.service.reserve(data))
            except Conflict:
                assert current is not None and current.is_live(self._now())
                return
            assert current is None or not current.is_live(self._now())
            assert lease.lease_id > self.highest_id
            self.highest_id = lease.lease_id
            self.expected[name] = lease

        @rule(requests=st.lists(st.tuples(NAMES, st.integers(1, 30), KINDS), min_size=2, max_size=6))
        def reserve_together(self, requests: list[tuple[str, int, str]]) -> None:
            """Concurrent reserves, coalesced into one write group: per symbol the first free request wins."""
            now = self._now()
            was_live = {name: (c := self._newest(name)) is not None and c.is_live(now) for name, _, _ in requests}
            calls = [
                harness.service.reserve(
                    ReserveInput(repo=self.repo, branch="main", fq_name=name, kind=kind, ttl_sec=ttl)
                )
                for name, ttl, kind in requests
            ]
            outcomes = harness.run(_gather(calls))
            winners: dict[str, Lease] = {}
            for (name, ttl, kind), outcome in zip(requests, outcomes, strict=True):
                if isinstance(outcome, Conflict):
                    continue
                assert isinstance(outcome, Lease), outcome
                assert name not in winners and not was_live[name]  # one grant per symbol, only if free
                assert (outcome.kind, outcome.expires_at) == (kind, self._now() + timedelta(seconds=ttl))
                winners[name] = outcome
            assert set(winners) == {name for name, live in was_live.items() if not live}
            for lease in sorted(winners.values(), key=lambda lease: lease.lease_id):
                assert lease.lease_id > self.highest_id
                self.highest_id = lease.lease_id
                self.expected[lease.fq_name] = lease

        @rule(name=NAMES, sha=SHAS)
        def claim(self, name: str, sha: str) -> None:
            current = self._newest(name)
            if current is None:
                return
            status = current.status_at(self._now())
            try:
                lease = harness.run(harness.service.claim(ClaimInput(lease_id=current.lease_id, commit_sha=sha)))
            except Expired:
                assert status == "expired"
                return
            except Conflict:
                assert status == "active" and current.commit_sha != sha
                return
            except FailedPrecondition:
                assert status in ("released", "deprecated")
                return
            assert status == "reserved" or (status == "active" and current.commit_sha == sha)
            assert (lease.status, lease.commit_sha) == ("active", sha)
            self.expected[name] = lease

        @rule(name=NAMES)
        def release(self, name: str) -> None:
            current = self._newest(name)
            if current is None:
                return
            status = current.status_at(self._now())
            lease = harness.run(harness.service.release(ReleaseInput(lease_id=current.lease_id)))
            after = {"reserved": "released", "active": "deprecated"}.get(status, status)
            assert lease.status == after
            self.expected[name] = lease

        @rule(name=NAMES, ttl=st.integers(1, 30))
        def extend(self, name: str, ttl: int) -> None:
            current = self._newest(name)
            if current is None:
                return
            try:
                lease = harness.run(harness.service.extend(ExtendInput(lease_id=current.lease_id, ttl_sec=ttl)))
            except MusterError:
                assert current.status_at(self._now()) != "reserved"
                return
            assert lease.expires_at == self._now() + timedelta(seconds=ttl)
            self.expected[name] = lease

        @rule(seconds=st.integers(0, 20))
        def tick(self, seconds: int) -> None:
            harness.clock.advance(seconds)

        @rule()
        def sweep(self) -> None:
            harness.run(harness.service.sweep_expired())

        @invariant()
        def at_most_one_live_lease_per_symbol(self) -> None:
            now = self._now()
            live = or_(leases.c.status == "active", (leases.c.status == "reserved") & (leases.c.expires_at > now))

            async def count() -> list[Any]:
                query = (
                    select(leases.c.fq_name, func.count())
                    .where(leases.c.repo == self.repo, live)
                    .group_by(leases.c.fq_name)
                )
                async with harness.store.read() as conn:
                    return list((await conn.execute(query)).all())

            assert all(n == 1 for _, n in harness.run(count()))

        @invariant()
        def stored_rows_agree_with_the_model(self) -> None:
            """What the database holds for each newest lease is what its holder was told."""
            if not self.expected:
                return

            async def rows() -> dict[int, tuple[str, Any]]:
                ids = [lease.lease_id for lease in self.expected.values()]
                query = select(leases.c.lease_id, leases.c.kind, leases.c.expires_at).where(leases.c.lease_id.in_(ids))
                async with harness.store.read() as conn:
                    return {row.lease_id: (row.kind, row.expires_at) for row in await conn.execute(query)}

            stored = harness.run(rows())
            for lease in self.expected.values():
                kind, expires_at = stored[lease.lease_id]
                if expires_at is not None and expires_at.tzinfo is None:
                    expires_at = expires_at.replace(tzinfo=UTC)  # SQLite keeps naive UTC
                assert (kind, expires_at) == (lease.kind, lease.expires_at)

        @invariant()
        def lookup_agrees_with_the_model(self) -> None:
            for name, lease in self.expected.items():
                query = LookupInput(repo=self.repo, branch="main", fq_name=name)
                found = harness.run(harness.service.lookup(query))
                assert (found.lease_id, found.status, found.kind, found.expires_at) == (
                    lease.lease_id, lease.status_at(self._now()), lease.kind, lease.expires_at
                )

    return Leases


def _run(url: str) -> None:
    harness = _Harness(url)
    try:
        run_state_machine_as_test(
            machine_for(harness),
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        harness.close()


async def test_no_two_live_leases_and_ids_strictly_increase(db_url: str) -> None:
    """Random reserve/claim/release/extend/sweep/clock sequences keep one live lease per symbol and growing ids."""
    await asyncio.to_thread(_run, db_url)
