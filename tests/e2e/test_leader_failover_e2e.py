"""A paused leader is replaced within its lease: the other replica marks a silent service down while it sleeps,
and the woken leader writes nothing (real servers, SIGSTOP/SIGCONT)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, wait_for

LEASE_S = 2.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_server_url"))


def _leads(server: ServerProcess) -> bool:
    return '"leader.acquired"' in (server.log_path.read_text(errors="replace") if server.log_path else "")


def test_a_paused_leader_is_replaced_and_fenced(server_factory: Any, tmp_path: Path, store_url: str | None) -> None:
    """SIGSTOP the leader: the follower takes over within 1.25 leases, marks a silent service down once,
    keeps last_check moving; after SIGCONT the old leader neither repeats the alert nor leads."""
    shared = tmp_path / "shared"
    flags = ["--leader-lease", str(LEASE_S)]
    first = server_factory(data_dir=shared, database_url=store_url, log_name="first.log", extra_args=flags)
    wait_for(lambda: _leads(first), 10)
    second = server_factory(data_dir=shared, database_url=store_url, log_name="second.log", extra_args=flags)
    assert not _leads(second)
    assert first.process is not None
    os.killpg(first.process.pid, signal.SIGSTOP)  # both of its door processes
    paused_at = time.monotonic()
    try:
        with httpx.Client(base_url=second.http_url, timeout=5) as http:
            silent = {"name": "silent", "type": "tool", "url": "http://silent:1", "heartbeat_interval_s": 1, "ttl_s": 2}
            service_id = http.post("/register", json=silent).json()["service_id"]
            wait_for(lambda: _leads(second), LEASE_S * 1.25 + 3)
            took_over_s = time.monotonic() - paused_at
            before = http.get("/stats").json()["last_check"]
            wait_for(lambda: http.get("/stats").json()["last_check"] != before, 5)
            wait_for(lambda: [a for a in http.get("/alerts").json()["alerts"] if a["service_id"] == service_id], 15)
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)
    assert took_over_s < LEASE_S * 1.25 + 3  # the bound, with room for a loaded machine
    time.sleep(LEASE_S * 2)  # the woken leader's loops run: it must find it no longer leads
    with httpx.Client(base_url=first.http_url, timeout=5) as http:
        alerts = [a for a in http.get("/alerts").json()["alerts"] if a["service_id"] == service_id]
    assert [a["alert_type"] for a in reversed(alerts)] == ["service_down", "service_deregistered"]
    assert first.log_path is not None and '"leader.lost"' in first.log_path.read_text(errors="replace")
