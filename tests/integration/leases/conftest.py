"""Leases on a real store (SQLite and PostgreSQL) with a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from muster.clock import FakeClock
from muster.events.hub import EventHub
from muster.leases.model import ReserveInput
from muster.leases.service import LeasesService
from muster.store.engine import Store
from muster.validation import parse


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))


@pytest.fixture
async def srm(db_url: str, clock: FakeClock) -> AsyncIterator[LeasesService]:
    """The leases service on a fresh database, its store and index driven by ``clock``."""
    store = Store(db_url, clock=clock)
    hub = EventHub(store, poll_interval=0.02)
    service = LeasesService(store, hub, clock)
    await service.load()
    await hub.start()
    try:
        yield service
    finally:
        await service.close()
        await hub.close()
        await store.close()


@pytest.fixture
def symbol() -> Callable[..., ReserveInput]:
    def make(fq_name: str = "demo.func", **overrides: Any) -> ReserveInput:
        values = {"repo": "demo", "branch": "main", "fq_name": fq_name, "kind": "function", "file_path": "demo.py"}
        values.update(overrides)
        return parse(ReserveInput, values)

    return make
