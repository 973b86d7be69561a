"""Real bridge worker processes on free ports, and clients for them.

Plain worker processes are started with ``subprocess`` (no gRPC objects in
the test process before the fork); each test opens its own channel on its
own event loop.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from muster.bridge.client import BridgeClient

EXAMPLE_ADAPTER = "muster.bridge.examples.ExampleAdapter"


def start_worker(*extra: str) -> tuple[subprocess.Popen[bytes], str]:
    """A worker process for the example adapter and its ``host:port``, once it printed GRPC_READY."""
    process = subprocess.Popen(
        [sys.executable, "-m", "muster.bridge", "--port", "0", "--adapter", EXAMPLE_ADAPTER, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("GRPC_READY:"):
        process.kill()
        process.wait()
        pytest.fail(f"worker did not announce readiness, printed {line!r}")
    return process, f"127.0.0.1:{line.removeprefix('GRPC_READY:')}"


def stop_worker(process: subprocess.Popen[bytes]) -> int:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
    finally:
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="session")
def worker_target() -> Iterator[str]:
    """One shared worker process (tests isolate themselves by session id)."""
    process, target = start_worker()
    yield target
    stop_worker(process)


@pytest.fixture(scope="session")
def small_queue_target() -> Iterator[str]:
    """A worker whose watchers may fall only 4 updates behind."""
    process, target = start_worker("--watch-queue-size", "4")
    yield target
    stop_worker(process)


@pytest.fixture
def worker_factory() -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """Start dedicated workers; whatever the test leaves running is stopped."""
    started: list[subprocess.Popen[bytes]] = []

    def factory(*extra: str) -> tuple[subprocess.Popen[bytes], str]:
        process, target = start_worker(*extra)
        started.append(process)
        return process, target

    yield factory
    for process in started:
        if process.poll() is None:
            stop_worker(process)


@pytest.fixture
async def client(worker_target: str) -> AsyncIterator[BridgeClient]:
    bridge = BridgeClient.connect(worker_target)
    yield bridge
    await bridge.aclose()


@pytest.fixture
async def session_id(client: BridgeClient) -> AsyncIterator[str]:
    """A fresh initialised session, cleaned up afterwards."""
    session = f"test-{uuid.uuid4().hex[:10]}"
    await client.initialize_session(session)
    yield session
    await client.cleanup_session(session)
