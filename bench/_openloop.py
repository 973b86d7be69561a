"""An open-loop HTTP/1.1 load generator: N keep-alive connections, each sending at a fixed rate.

Latency is measured from each request's *scheduled* send time, so a stalled
server cannot hide its queueing (no coordinated omission). Used where a target
is "p99 at N concurrent clients" rather than "throughput at saturation".
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


async def _client(host: str, port: int, request: bytes, rate: float, seconds: float, phase: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    interval = 1.0 / rate
    # Clients are spread evenly over one interval, as independent clients would be,
    # rather than all firing at the same instant.
    start = time.perf_counter() + interval * phase
    sent = 0
    while True:
        scheduled = start + sent * interval
        if scheduled - start > seconds:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - scheduled)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(1)
        sent += 1
    writer.close()


def run(url_path: str, host: str, port: int, *, clients: int, rate_per_client: float, seconds: float) -> dict[str, Any]:
    request = f"GET {url_path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode()
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> None:
        await asyncio.gather(*(_client(host, port, request, rate_per_client, seconds, k / clients, latencies, errors)
                               for k in range(clients)))

    asyncio.run(main())
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    return {"clients": clients, "offered_per_s": clients * rate_per_client, "requests": len(latencies),
            "errors": len(errors), "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}
