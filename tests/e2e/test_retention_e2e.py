"""Event log retention end to end: a real server prunes old events; late watchers hear ``pruned`` on both doors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from muster.client import MusterClient
from muster.errors import Pruned


async def test_a_watch_resuming_from_a_pruned_revision_is_told_so_on_both_doors(server_factory: Any) -> None:
    """With ~1 s retention the leader prunes; the client raises Pruned on gRPC and HTTP; raw SSE gets an error frame."""
    server = server_factory(
        extra_env={"MUSTER_EVENT_RETENTION_HOURS": "0.0003", "MUSTER_EVENT_PRUNE_INTERVAL": "0.2"}
    )
    async with await MusterClient.connect(f"grpc://{server.grpc_target}") as grpc_client, \
            await MusterClient.connect(server.http_url) as http_client:
        first = await grpc_client.register(name="early", type="tool", url="http://h:1")
        await asyncio.sleep(1.5)  # past the retention
        await grpc_client.register(name="late", type="tool", url="http://h:2")  # so "early" is not the newest

        async def replay_from_zero(client: MusterClient) -> Pruned | None:
            try:
                async for _ in client.watch(since=0, subject_prefix=first.service_id):
                    return None  # still kept
            except Pruned as exc:
                return exc
            return None

        for _ in range(50):  # the next prune round (every 0.2 s) takes it
            if (refused := await replay_from_zero(grpc_client)) is not None:
                break
            await asyncio.sleep(0.1)
        assert refused is not None and "oldest kept" in refused.message
        refused = await replay_from_zero(http_client)
        assert refused is not None and "since" == refused.field
    with httpx.stream("GET", f"{server.http_url}/watch", params={"since": 0}, timeout=10) as stream:
        frames = [line for line in stream.iter_lines() if line.startswith(("event:", "data:"))][:2]
    assert "event: error" == frames[0]
    assert "pruned" == json.loads(frames[1][5:])["error"]
