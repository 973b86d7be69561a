"""`--registry`: a worker registers itself in a Muster catalog, heartbeats, and deregisters on exit."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from muster.client import MusterClient


async def test_worker_registers_heartbeats_and_deregisters(server_factory: Any) -> None:
    """A worker started with --registry appears as type tool with its tools as caps, beats, and leaves on SIGTERM."""
    server = server_factory()
    registry = f"grpc://{server.grpc_target}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "muster.bridge", "--port", "0",
        "--registry", registry, "--registry-name", "bridge-e2e", "--heartbeat-interval", "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    port = (await process.stdout.readline()).decode().strip().removeprefix("GRPC_READY:")
    client = await MusterClient.connect(registry)
    try:
        [record] = await client.discover(name="bridge-e2e")
        assert (record.type, record.role, record.url) == ("tool", "production", f"grpc://127.0.0.1:{port}")
        assert {"add", "echo", "tokens"} <= set(record.caps)
        for _ in range(200):  # the first beat is due one interval after registering
            beaten = await client.get_service(record.service_id)
            if beaten.last_heartbeat_ts is not None and beaten.last_heartbeat_ts > record.registered_at:
                break
            await asyncio.sleep(0.05)
        assert beaten.last_heartbeat_ts is not None and beaten.last_heartbeat_ts > record.registered_at
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
        assert await client.discover(name="bridge-e2e") == []
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await client.aclose()
