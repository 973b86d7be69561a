"""Fixtures for the bridge's pure-logic tests."""

from __future__ import annotations

import pytest

from muster.bridge.session import SessionStore
from muster.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> SessionStore:
    return SessionStore(clock=clock, idle_ttl_s=60, watch_queue_size=4)
