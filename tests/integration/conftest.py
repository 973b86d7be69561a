"""Fixtures shared by the integration tier (real SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from muster.clock import FakeClock
from muster.server import build_runtime, close_runtime
from muster.store.leader import Leadership
from tests.conftest import settings_for


@pytest.fixture
async def clocked(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, FakeClock]]:
    """A runtime whose store and services read a fake clock."""
    clock = FakeClock()
    runtime = await build_runtime(settings_for(db_url, tmp_path), clock=clock)
    try:
        yield runtime, clock
    finally:
        await close_runtime(runtime)


async def leading(store: Any) -> Leadership:
    """This test's process holds the monitor lease (a monitor sweeps only under it)."""
    leadership = Leadership(store)
    assert await leadership.try_acquire()
    return leadership
