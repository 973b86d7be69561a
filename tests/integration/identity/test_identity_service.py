"""The identity service on real SQLite and PostgreSQL: tokens made, verified from memory, revoked, expired."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from muster.clock import FakeClock
from muster.errors import Conflict, NotFound, PermissionDenied, Unauthenticated
from muster.events.hub import EventHub
from muster.identity.caller import acting_as
from muster.identity.model import SYSTEM, Principal
from muster.identity.service import IdentityService
from muster.store.engine import Store

ROOT = Principal("root", frozenset({"admin"}))


async def _service(db_url: str, clock: Any = None) -> tuple[Store, EventHub, IdentityService]:
    store = Store(db_url, clock=clock)
    hub = EventHub(store, poll_interval=0.02)
    identity = IdentityService(store, hub, clock or store.clock)
    await identity.load()
    await hub.start()
    return store, hub, identity


async def _close(store: Store, hub: EventHub, identity: IdentityService) -> None:
    await identity.close()
    await hub.close()
    await store.close()


async def test_made_tokens_verify_and_revoked_ones_do_not(db_url: str) -> None:
    """A new token verifies as its principal; after revocation it is refused; its name stays taken."""
    store, hub, identity = await _service(db_url)
    try:
        issued = await identity.create("ci", ["catalog:write"], expires=None, by=ROOT)
        principal = await identity.verify(issued.secret)
        assert ("ci", frozenset({"catalog:write"})) == (principal.name, principal.scopes)
        assert "root" == issued.record.created_by
        with pytest.raises(Conflict):
            await identity.create("ci", ["catalog:read"], expires=None, by=ROOT)
        await identity.revoke("ci")
        await identity.revoke("ci")  # again: nothing changes
        with pytest.raises(Unauthenticated, match="revoked"):
            await identity.verify(issued.secret)
        with pytest.raises(NotFound):
            await identity.revoke("nobody")
        with pytest.raises(Unauthenticated):
            await identity.verify("mst_never-made")
    finally:
        await _close(store, hub, identity)


async def test_expiry_follows_the_servers_clock(db_url: str) -> None:
    """A token expires by the server's clock, and only an admin may make admin tokens."""
    clock = FakeClock()
    store, hub, identity = await _service(db_url, clock)
    try:
        issued = await identity.create("brief", ["leases:read"], expires="1h", by=ROOT)
        await identity.verify(issued.secret)
        clock.advance(3600)
        with pytest.raises(Unauthenticated, match="expired"):
            await identity.verify(issued.secret)
        with pytest.raises(PermissionDenied):
            await identity.create("sneaky", ["admin"], expires=None, by=Principal("op", frozenset({"catalog:write"})))
    finally:
        await _close(store, hub, identity)


async def test_another_process_learns_tokens_and_revocations_through_the_log(db_url: str) -> None:
    """A second process verifies a token made by the first at once, and refuses it once the log says revoked."""
    first = await _service(db_url)
    second = await _service(db_url)
    try:
        issued = await first[2].create("agent-1", ["graph:read"], expires=None, by=ROOT)
        assert "agent-1" == (await second[2].verify(issued.secret)).name  # a miss re-reads the table
        with acting_as(ROOT):
            await first[2].revoke("agent-1")
        for _ in range(200):
            try:
                await second[2].verify(issued.secret)
            except Unauthenticated:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the second process never heard of the revocation")
    finally:
        await _close(*second)
        await _close(*first)


async def test_bogus_tokens_share_table_reads(db_url: str) -> None:
    """Many unknown tokens at once cost a handful of reads of the token table, not one each."""
    store, hub, identity = await _service(db_url)
    loads = 0
    original = identity.load

    async def counting_load() -> None:
        nonlocal loads
        loads += 1
        await original()

    identity.load = counting_load  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(*(identity.verify(f"mst_bogus{i}") for i in range(200)), return_exceptions=True)
        assert all(isinstance(r, Unauthenticated) for r in results)
        assert loads <= 3
    finally:
        await _close(store, hub, identity)


async def test_first_admin_token_is_written_once_with_mode_0600(db_url: str, tmp_path: Path) -> None:
    """With no admin token, one is made and written 0600; with one, nothing is written again."""
    store, hub, identity = await _service(db_url)
    try:
        path = tmp_path / "data" / "admin.token"
        assert path == await identity.ensure_admin_token(path, by=SYSTEM)
        assert 0o600 == stat.S_IMODE(path.stat().st_mode)
        assert "admin" == (await identity.verify(path.read_text().strip())).name
        assert await identity.ensure_admin_token(tmp_path / "again", by=SYSTEM) is None
        await identity.revoke("admin")
        assert await identity.ensure_admin_token(tmp_path / "renewed", by=SYSTEM) is not None
        assert "admin-2" == (await identity.verify((tmp_path / "renewed").read_text().strip())).name
    finally:
        await _close(store, hub, identity)
