"""Catalog benchmark: heartbeat ingest, discover latency, durable registrations, mixed load, RSS.

Runs a real `muster serve` (split doors, embedded SQLite) on this machine and
drives it from separate load processes (Python grpc.aio clients for gRPC, wrk
for HTTP), then prints JSON. The load generators share the machine's cores
with the server, as a co-located client would.

    ./dev bench catalog [--services 10000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from _harness import emit, machine, muster_server, progress, wrk  # beside this file

TARGETS = {
    "heartbeat_grpc_stream_per_s": 20_000,
    "heartbeat_http_per_s": 3_000,
    "discover_p99_ms": 5.0,
    "registrations_per_s": 1_000,
    "mixed_ratio": 0.5,
    "rss_mb": 200,
}


def _register_worker(target: str, start: int, count: int, concurrency: int, queue: Any) -> None:
    from muster._proto.muster.v1 import catalog_pb2 as pb
    from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc

    async def run() -> list[str]:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.CatalogStub(channel)
            ids: list[str] = []
            next_index = start

            async def client() -> None:
                nonlocal next_index
                while next_index < start + count:
                    i = next_index
                    next_index += 1
                    reply = await stub.Register(pb.RegisterRequest(
                        name=f"svc-{i % 500}", type=("model", "tool", "agent", "service")[i % 4],
                        role=("production", "staging", "canary", "experimental")[i % 4 // 2 * 2 % 4],
                        url=f"http://10.0.{i // 250}.{i % 250}:8000", caps=["infer", f"cap-{i % 20}"],
                        labels={"zone": f"z{i % 3}"}, heartbeat_interval_s=60, ttl_s=90))
                    ids.append(reply.service_id)

            await asyncio.gather(*(client() for _ in range(concurrency)))
            return ids

    queue.put(asyncio.run(run()))


def _beat_worker(target: str, ids: list[str], total: int, streams: int, batch: int, queue: Any) -> None:
    from muster._proto.muster.v1 import catalog_pb2 as pb
    from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc

    async def one_stream(stub: Any, count: int) -> int:
        call = stub.HeartbeatStream()
        credit = asyncio.Semaphore(8)  # messages in flight per stream
        messages = [
            pb.HeartbeatBatch(beats=[
                pb.HeartbeatRequest(service_id=ids[(m * batch + i) % len(ids)], load=(i % 100) / 100, p95_ms=10.0)
                for i in range(batch)
            ])
            for m in range(50)
        ]
        rounds = count // batch

        async def writer() -> None:
            for m in range(rounds):
                await credit.acquire()
                await call.write(messages[m % len(messages)])
            await call.done_writing()

        found = 0
        task = asyncio.create_task(writer())
        for _ in range(rounds):
            reply = await call.read()
            found += sum(r.found for r in reply.replies)
            credit.release()
        await task
        return found

    async def run() -> tuple[int, float]:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.CatalogStub(channel)
            started = time.perf_counter()
            found = await asyncio.gather(*(one_stream(stub, total // streams) for _ in range(streams)))
            return sum(found), time.perf_counter() - started

    queue.put(asyncio.run(run()))


def _unary_worker(target: str, seconds: float, concurrency: int, queue: Any) -> None:
    from muster._proto.muster.v1 import catalog_pb2 as pb
    from muster._proto.muster.v1 import catalog_pb2_grpc as pb_grpc

    async def run() -> int:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.CatalogStub(channel)
            request = pb.DiscoverRequest(type="model", cap=["infer"], limit=10)
            deadline = time.perf_counter() + seconds
            done = 0

            async def client() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await stub.Discover(request)
                    done += 1

            await asyncio.gather(*(client() for _ in range(concurrency)))
            return done

    queue.put(asyncio.run(run()))


def _capacity(cpu_seconds: float, operations: float) -> dict[str, float]:
    """Server CPU per operation, and what one fully used core could serve at that cost.

    Unlike wall-clock throughput, this does not move when other work shares the
    machine's two cores with the server and the load generators.
    """
    if operations <= 0 or cpu_seconds <= 0:
        return {}
    return {"server_cpu_us_per_op": round(1e6 * cpu_seconds / operations),
            "capacity_per_core_per_s": round(operations / cpu_seconds)}


def _openloop_worker(path: str, port: int, seconds: float, queue: Any) -> None:
    from _openloop import run  # beside this file

    queue.put(run(path, "127.0.0.1", port, clients=50, rate_per_client=10, seconds=seconds))


def _in_processes(target: Any, jobs: list[tuple[Any, ...]]) -> list[Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*job, queue)) for job in jobs]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    return results


def _put_script(ids: list[str], directory: Path) -> str:
    sample = random.sample(ids, min(2000, len(ids)))
    body = "\n".join(f'"{sid}",' for sid in sample)
    script = directory / "heartbeat.lua"
    script.write_text(
        "wrk.method = \"PUT\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        f"local ids = {{\n{body}\n}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n  local id = ids[(n % #ids) + 1]\n"
        "  return wrk.format(nil, \"/heartbeat\", nil, "
        "'{\"service_id\":\"' .. id .. '\",\"status\":\"ok\",\"load\":0.3,\"p95_ms\":12.5}')\nend\n"
    )
    return str(script)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=8)
    options = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found (the HTTP load generator): apt-get install -y wrk")
    results: dict[str, Any] = {"benchmark": "catalog", "machine": machine(), "services": options.services}
    scratch = Path(tempfile.mkdtemp(prefix="muster-bench-lua-"))

    with muster_server() as server:
        progress(f"registering {options.services} services over gRPC (4 processes x 32 concurrent)")
        per = options.services // 4
        cpu = server.cpu_seconds("grpc")
        started = time.perf_counter()
        batches = _in_processes(_register_worker, [(server.grpc_target, i * per, per, 32) for i in range(4)])
        elapsed = time.perf_counter() - started
        ids = [sid for batch in batches for sid in batch]
        results["registrations"] = {"count": len(ids), "per_s": round(len(ids) / elapsed),
                                    "target_per_s": TARGETS["registrations_per_s"],
                                    **_capacity(server.cpu_seconds("grpc") - cpu, len(ids))}
        results["registrations"]["ratio_to_target"] = round(results["registrations"]["per_s"] / 1000, 2)

        results["heartbeat_grpc_stream"] = {"target_per_s": TARGETS["heartbeat_grpc_stream_per_s"]}
        for batch, total in ((100, 600_000), (10, 200_000), (1, 40_000)):
            progress(f"heartbeats over gRPC streams: {total} beats in messages of {batch}, 1 process x 4 streams")
            cpu = server.cpu_seconds("grpc")
            outcome = _in_processes(_beat_worker, [(server.grpc_target, ids, total, 4, batch)])
            acknowledged, elapsed = outcome[0]
            rate = round(acknowledged / elapsed)
            results["heartbeat_grpc_stream"][f"beats_per_message_{batch}"] = {
                "beats": acknowledged, "per_s": rate,
                "ratio_to_target": round(rate / TARGETS["heartbeat_grpc_stream_per_s"], 2),
                **_capacity(server.cpu_seconds("grpc") - cpu, acknowledged),
            }

        progress("heartbeats over HTTP: wrk, 64 connections")
        script = _put_script(ids, scratch)
        cpu = server.cpu_seconds("http")
        http_beats = wrk(server.http_url, connections=64, seconds=options.seconds, script=script, threads=2)
        results["heartbeat_http"] = {**http_beats, "target_per_s": TARGETS["heartbeat_http_per_s"],
                                     "ratio_to_target": round(http_beats["rps"] / TARGETS["heartbeat_http_per_s"], 2),
                                     **_capacity(server.cpu_seconds("http") - cpu,
                                                 http_beats["rps"] * options.seconds)}

        progress("discover with two filters: wrk, 50 connections (closed loop)")
        discover_url = f"{server.http_url}/discover?type=model&cap=infer&limit=10"
        assert httpx.get(discover_url).json()["services"], "discover returned nothing"
        cpu = server.cpu_seconds("http")
        closed = wrk(discover_url, connections=50, seconds=options.seconds, threads=2)
        closed.update(_capacity(server.cpu_seconds("http") - cpu, closed["rps"] * options.seconds))
        progress("discover with two filters: 50 open-loop clients at 10 requests/s each")
        port = int(server.http_url.rsplit(":", 1)[1])
        path = "/discover?type=model&cap=infer&limit=10"
        opened = _in_processes(_openloop_worker, [(path, port, options.seconds)])[0]
        results["discover_50_clients"] = {
            "open_loop_50_clients_x_10_per_s": opened,
            "closed_loop_50_connections_saturated": closed,
            "target_p99_ms": TARGETS["discover_p99_ms"],
            "ratio_to_target_open_loop": round(TARGETS["discover_p99_ms"] / max(opened["p99_ms"], 0.01), 2),
        }

        progress("mixed load: gRPC Discover and HTTP discover, alone then together")
        solo_grpc = _in_processes(_unary_worker, [(server.grpc_target, options.seconds, 32)])[0] / options.seconds
        solo_http = wrk(discover_url, connections=32, seconds=options.seconds)["rps"]
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_unary_worker, args=(server.grpc_target, options.seconds, 32, queue))
        proc.start()
        time.sleep(0.3)
        mixed_http = wrk(discover_url, connections=32, seconds=options.seconds - 1)["rps"]
        mixed_grpc = queue.get() / options.seconds
        proc.join()
        results["mixed_load"] = {
            "grpc_solo_per_s": round(solo_grpc), "grpc_with_http_saturated_per_s": round(mixed_grpc),
            "grpc_kept": round(mixed_grpc / solo_grpc, 2),
            "http_solo_per_s": solo_http, "http_with_grpc_saturated_per_s": mixed_http,
            "http_kept": round(mixed_http / solo_http, 2), "target_kept": TARGETS["mixed_ratio"],
        }

        rss = server.rss_mb()
        results["rss_mb"] = {"per_process": rss, "total": round(sum(rss.values()), 1),
                             "largest_process": max(rss.values()), "target_mb": TARGETS["rss_mb"]}
    emit(results)


if __name__ == "__main__":
    main()
