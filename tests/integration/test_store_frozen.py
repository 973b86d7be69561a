"""PostgreSQL frozen behind a TCP proxy that stops forwarding: bounded 503s, reads from memory, recovery."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from muster.catalog.model import DiscoverQuery, RegisterInput
from muster.errors import Unavailable
from tests.conftest import fresh_database, settings_for
from tests.faults import FreezingProxy

pytestmark = pytest.mark.postgres


@pytest.fixture
async def frozen_runtime(tmp_path: Path) -> AsyncIterator[tuple[Any, FreezingProxy]]:
    from muster.server import build_runtime, close_runtime

    async with fresh_database("postgresql", tmp_path) as url:
        proxy = FreezingProxy(5432)
        await proxy.start()
        through_proxy = url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert through_proxy != url, "the test database must be on 127.0.0.1:5432"
        runtime = await build_runtime(settings_for(through_proxy, tmp_path, db_timeout=1.0))
        try:
            yield runtime, proxy
        finally:
            proxy.thaw()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(15):
                    await close_runtime(runtime)
            await proxy.close()


async def test_frozen_store_fails_writes_in_bounded_time_serves_reads_and_recovers(
    frozen_runtime: tuple[Any, FreezingProxy],
) -> None:
    """Frozen: writes 503 within about the timeout, /ready false within 2 s, discover still answers; then recovery."""
    runtime, proxy = frozen_runtime
    catalog = runtime.catalog
    before = await catalog.register(RegisterInput(name="steady", type="agent", url="http://127.0.0.1:1"))

    proxy.freeze()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await catalog.register(RegisterInput(name="during", type="agent", url="http://127.0.0.1:2"))
    write_took = time.monotonic() - started
    assert write_took < 1.0 * 4, f"a write against a frozen store took {write_took:.1f} s"

    started = time.monotonic()
    ready, reason = await runtime.readiness()
    assert (False, "store not answering") == (ready, reason)
    assert time.monotonic() - started < 2.0

    found = catalog.discover(DiscoverQuery(name="steady"))  # served from memory
    assert [before.service_id] == [r.service_id for r in found]
    queued = await asyncio.gather(
        *(catalog.register(RegisterInput(name=f"q{i}", type="agent", url="http://127.0.0.1:3")) for i in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(result, Unavailable) for result in queued)

    proxy.thaw()
    deadline = time.monotonic() + 30
    while True:
        try:
            after = await catalog.register(RegisterInput(name="after", type="agent", url="http://127.0.0.1:4"))
            break
        except Unavailable:
            assert time.monotonic() < deadline, "the store never recovered"
            await asyncio.sleep(0.2)
    assert (await catalog.get(after.service_id)).name == "after"
    assert (await catalog.get(before.service_id)).name == "steady"  # nothing acknowledged was lost
    while not (await runtime.readiness())[0]:
        assert time.monotonic() < deadline, "readiness never came back"
        await asyncio.sleep(0.2)


async def test_a_leader_whose_store_was_away_briefly_begins_a_new_watch(
    frozen_runtime: tuple[Any, FreezingProxy],
) -> None:
    """The store frozen for less than a lease: the leader keeps its epoch, and its first renewal after the
    thaw is a resume (a new ``acquired_at``), so the monitor judges no silence from while it was away."""
    from muster.store.leader import Leadership

    runtime, proxy = frozen_runtime
    leadership = Leadership(runtime.store, lease_s=4.0)
    assert await leadership.try_acquire()
    epoch, began = leadership.epoch, leadership.acquired_at
    leadership.start()
    try:
        proxy.freeze()
        await _until(lambda: leadership.interrupted)  # a renewal failed
        assert leadership.held  # less than a lease: still the leader
        proxy.thaw()
        await _until(lambda: leadership.acquired_at != began and not leadership.interrupted)
        assert leadership.epoch == epoch and leadership.held
    finally:
        proxy.thaw()
        await leadership.release()


async def _until(probe: Any) -> None:
    """Poll ``probe`` (state another task changes) for up to 10 s."""
    async with asyncio.timeout(10):
        for _ in range(400):
            if probe():
                return
            await asyncio.sleep(0.05)
    raise AssertionError("not within 10 s")
