"""Servers sharing one store say so, in the log and in /stats, and count exactly the living ones."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from muster.client import MusterClient
from tests.conftest import ServerProcess, free_port, wait_for


def _http_replicas(server: ServerProcess) -> int:
    return int(httpx.get(f"{server.http_url}/stats", timeout=5).json()["replicas"])


def _grpc_replicas(server: ServerProcess) -> int:
    async def ask() -> int:
        async with await MusterClient.connect(f"grpc://{server.grpc_target}") as client:
            return (await client.stats()).replicas

    return asyncio.run(ask())


def _log_events(server: ServerProcess, event: str) -> list[dict[str, Any]]:
    assert server.log_path is not None
    found = []
    for line in server.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            found.append(json.loads(line))
    return found


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("pg_server_url"))


def test_a_second_server_on_one_store_is_a_counted_replica(
    server_factory: Any, tmp_path: Path, store_url: str | None
) -> None:
    """Alone: replicas 1. A second server on the same data dir or database logs store.shared with
    replicas=2, both doors of both servers answer 2, the first logs the change, and kill -9 of the
    second brings the count back to 1 with nothing to expire."""
    shared_dir = tmp_path / "shared"
    first = server_factory(data_dir=shared_dir, database_url=store_url, log_name="first.log")
    assert _http_replicas(first) == 1 and _grpc_replicas(first) == 1
    assert [e["replicas"] for e in _log_events(first, "store.sole")] == [1]

    second = server_factory(data_dir=shared_dir, database_url=store_url, log_name="second.log")
    shared = _log_events(second, "store.shared")
    assert [(e["replicas"], e["meaning"]) for e in shared] == [(2, "2 replicas share this store and act as one Muster")]
    assert {_http_replicas(first), _grpc_replicas(first), _http_replicas(second), _grpc_replicas(second)} == {2}
    wait_for(lambda: [e["replicas"] for e in _log_events(first, "store.replicas_changed")] == [2])

    second.stop(signal.SIGKILL)
    wait_for(lambda: _http_replicas(first) == 1, timeout=10)
    assert _grpc_replicas(first) == 1


def test_a_second_server_on_the_same_ports_is_refused(server_factory: Any, tmp_path: Path) -> None:
    """Another server on a running one's ports stops at start-up with one line naming the port and flag."""
    first = server_factory(data_dir=tmp_path / "d", log_name="first.log")
    done = subprocess.run(
        [sys.executable, "-m", "muster.cli", "serve", "--data-dir", str(tmp_path / "d"),
         "--http-port", str(first.http_port), "--grpc-port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"muster: port {first.http_port} is in use (HTTP door); choose another with --http-port"
    )
    assert _http_replicas(first) == 1
