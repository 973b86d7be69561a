"""Ownership and actors in the service layer, on real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from muster.catalog.model import DeregisterInput, HeartbeatInput, RegisterInput
from muster.errors import PermissionDenied
from muster.events.hub import WatchFilter
from muster.identity.caller import acting_as
from muster.identity.model import Principal
from muster.leases.model import ReleaseInput, ReserveInput

ALICE = Principal("alice", frozenset({"catalog:write", "leases:write", "graph:write"}))
BOB = Principal("bob", frozenset({"catalog:write", "leases:write", "graph:write"}))


async def _events(runtime: Any, prefix: str) -> list[Any]:
    found = []
    head = await runtime.hub.head()
    async for event in runtime.hub.history(0, head, WatchFilter(kind_prefix=prefix)):
        found.append(event)
    return found


async def test_coalesced_reserves_keep_each_callers_owner(runtime: Any) -> None:
    """Reserves from two principals that share one transaction each record their own owner and actor."""
    leases = runtime.contexts["leases"]

    async def reserve(principal: Principal, name: str) -> Any:
        with acting_as(principal):
            return await leases.reserve(ReserveInput(repo="r", branch="main", fq_name=name, kind="function"))

    granted = await asyncio.gather(*(reserve(ALICE if i % 2 else BOB, f"s{i}") for i in range(40)))
    assert all(lease.owner == ("alice" if i % 2 else "bob") for i, lease in enumerate(granted))
    events = await _events(runtime, "leases.reserved")
    assert {e.payload["lease"]["fq_name"]: e.actor for e in events} == {
        f"s{i}": "alice" if i % 2 else "bob" for i in range(40)
    }
    with acting_as(BOB), pytest.raises(PermissionDenied):
        await leases.release(ReleaseInput(lease_id=granted[1].lease_id))


async def test_services_belong_to_who_registered_them(runtime: Any) -> None:
    """The registration's owner and event actor are the caller; another principal may not beat or remove it."""
    catalog = runtime.catalog
    with acting_as(ALICE):
        sid = (await catalog.register(RegisterInput(name="a", type="agent", url="http://127.0.0.1:1"))).service_id
    assert "alice" == (await catalog.get(sid)).owner
    with acting_as(BOB):
        with pytest.raises(PermissionDenied):
            await catalog.heartbeat(HeartbeatInput(service_id=sid))
        with pytest.raises(PermissionDenied):
            await catalog.deregister(DeregisterInput(service_id=sid))
    with acting_as(ALICE):
        await catalog.heartbeat(HeartbeatInput(service_id=sid, status="degraded"))  # a status change: an event
        await catalog.deregister(DeregisterInput(service_id=sid))
    actors = [(e.kind, e.actor) for e in await _events(runtime, "catalog.") if e.subject == sid]
    assert [("catalog.registered", "alice"), ("catalog.status_changed", "alice"),
            ("catalog.deregistered", "alice")] == actors
