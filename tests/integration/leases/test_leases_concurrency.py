"""Uniqueness under real concurrency: many tasks, many connections, two server processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from muster.clock import SystemClock
from muster.errors import Conflict
from muster.events.hub import EventHub
from muster.leases.model import ReserveInput, ReservePlanInput
from muster.leases.schema import leases
from muster.leases.service import LeasesService
from muster.store.engine import Store
from muster.validation import parse

Symbol = Callable[..., ReserveInput]
# SQLite: 8 stores = 8 writer connections contending through BEGIN IMMEDIATE. PostgreSQL: 2 stores
# whose pools open up to 30 connections each (the shared test server allows 100 clients in all).
CONNECTIONS = 8


@pytest.fixture
async def services(db_url: str, engine_name: str) -> AsyncIterator[list[LeasesService]]:
    """Eight services over separate stores (SQLite writer connections, or PostgreSQL pools), one database."""
    clock = SystemClock()
    pools = [Store(db_url, clock=clock) for _ in range(8 if engine_name == "sqlite" else 2)]
    stores = [pools[i % len(pools)] for i in range(CONNECTIONS)]
    built = [LeasesService(store, EventHub(store), clock) for store in stores]
    try:
        yield built
    finally:
        for store in pools:
            await store.close()


async def _outcomes(calls: list[Any]) -> tuple[list[Any], list[BaseException]]:
    results = await asyncio.gather(*calls, return_exceptions=True)
    granted = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    return granted, failed


async def _live_rows(service: LeasesService) -> int:
    async with service.store.read() as conn:
        query = select(func.count()).select_from(leases).where(leases.c.status.in_(("reserved", "active")))
        return int((await conn.execute(query)).scalar_one())


async def test_hundred_concurrent_reserves_of_one_symbol_grant_exactly_one(
    services: list[LeasesService], symbol: Symbol
) -> None:
    """100 concurrent reserves over many connections: exactly one lease, 99 Conflict, one live row."""
    calls = [services[i % CONNECTIONS].reserve(symbol()) for i in range(100)]
    granted, failed = await _outcomes(calls)
    assert (len(granted), len(failed)) == (1, 99)
    assert all(isinstance(exc, Conflict) for exc in failed)
    assert await _live_rows(services[0]) == 1


async def test_concurrent_overlapping_plans_never_double_grant(services: list[LeasesService], symbol: Symbol) -> None:
    """Plans racing over shared symbols (in different orders) each win whole or not at all, without deadlock."""
    names = [f"s{i}" for i in range(6)]

    def plan(n: int) -> ReservePlanInput:
        chosen = names[n % 3 : n % 3 + 3] if n % 2 else list(reversed(names[n % 3 : n % 3 + 3]))
        items = [symbol(name).model_dump(exclude={"plan_id", "ttl_sec"}) for name in chosen]
        return parse(ReservePlanInput, {"plan_id": f"P{n}", "symbols": items})

    granted, failed = await _outcomes([services[n % CONNECTIONS].reserve_plan(plan(n)) for n in range(24)])
    assert all(isinstance(exc, Conflict) for exc in failed)
    held = [lease.fq_name for granted_plan in granted for lease in granted_plan]
    assert len(held) == len(set(held))
    assert await _live_rows(services[0]) == len(held)


async def test_hundred_symbols_under_contention_have_one_holder_each(
    services: list[LeasesService], symbol: Symbol
) -> None:
    """400 concurrent reserves of 20 symbols over many connections: exactly one grant per symbol."""
    calls = [services[i % CONNECTIONS].reserve(symbol(f"hot{i % 20}")) for i in range(400)]
    granted, failed = await _outcomes(calls)
    assert all(isinstance(exc, Conflict) for exc in failed)
    assert sorted(f"hot{i}" for i in range(20)) == sorted(lease.fq_name for lease in granted)
    assert len({lease.lease_id for lease in granted}) == 20


@pytest.mark.postgres
async def test_two_servers_on_one_postgresql_grant_one_of_hundred_http_reserves(
    server_factory: Any, pg_server_url: str
) -> None:
    """Two `muster serve` processes on one PostgreSQL, 50 concurrent HTTP reserves each: exactly one 200.

    Then the symbol passes back and forth between the processes (release on one, reserve on the
    other; once by expiry): every new lease id is higher than the last, whichever process drew it.
    """
    first = server_factory(database_url=pg_server_url)
    second = server_factory(database_url=pg_server_url)
    body = {"repo": "demo", "branch": "main", "fq_name": "demo.func", "kind": "function", "file_path": "demo.py"}
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        calls = [client.post(f"{server.http_url}/reserve", json=body) for server in (first, second) for _ in range(50)]
        replies = await asyncio.gather(*calls)
        statuses = sorted(reply.status_code for reply in replies)
        assert statuses == [200] + [409] * 99
        winner = next(reply.json() for reply in replies if reply.status_code == 200)
        lookups = [
            await client.get(f"{server.http_url}/lookup", params={k: body[k] for k in ("repo", "branch", "fq_name")})
            for server in (first, second)
        ]
        assert {winner["lease_id"]} == {reply.json()["lease_id"] for reply in lookups}
        ids = [winner["lease_id"]]
        for step in range(6):
            holder, taker = (first, second) if step % 2 == 0 else (second, first)
            released = await client.post(f"{holder.http_url}/release", json={"lease_id": ids[-1]})
            assert released.json()["status"] == "released"
            ids.append((await client.post(f"{taker.http_url}/reserve", json={**body, "ttl_sec": 1})).json()["lease_id"])
        await asyncio.sleep(1.2)  # the last reservation expires; the other process takes the symbol at once
        expired_taker = first if len(ids) % 2 == 0 else second
        ids.append((await client.post(f"{expired_taker.http_url}/reserve", json=body)).json()["lease_id"])
    assert ids == sorted(set(ids)) and len(ids) == 8
