"""What one PostgreSQL carries: durable writes and events through 1 and 3 replicas, watchers per
replica, the heartbeat flush, and memory per instance. Prints JSON (docs/scale.md records it).

Every replica is a real `muster serve` (split doors) on one fresh PostgreSQL database; load comes
from separate processes (grpc.aio for registrations, httpx SSE clients for watchers). PostgreSQL's
own CPU is read from its processes, so each write's cost on the database is known apart from the
replicas' (all of it shares this machine's cores).

    ./dev bench scale [--writes 4000] [--watchers 10,100,400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil
from _harness import emit, machine, muster_server, progress  # beside this file
from catalog_bench import _in_processes, _register_worker  # beside this file

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL server process on this machine so far."""
    total = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        if proc.info["name"] == "postgres" and proc.info["cpu_times"] is not None:
            total += proc.info["cpu_times"].user + proc.info["cpu_times"].system
    return total


def _register(targets: list[str], count: int, concurrency: int) -> tuple[list[str], float, float]:
    """``count`` registrations spread over ``targets`` (one load process each); ids, seconds, PG CPU s."""
    share = count // len(targets)
    jobs = [(target, 100_000 * (i + 1) + int(time.time()) % 10_000 * 10, share, concurrency)
            for i, target in enumerate(targets)]
    pg_before, began = _postgres_cpu_s(), time.perf_counter()
    results = _in_processes(_register_worker, jobs)
    elapsed, pg_cpu = time.perf_counter() - began, _postgres_cpu_s() - pg_before
    return [sid for ids in results for sid in ids], elapsed, pg_cpu


def _watch_worker(url: str, watchers: int, expected: int, seconds: float, queue: Any) -> None:
    """``watchers`` SSE streams on one replica; each counts registrations and their delivery lag."""

    async def one(client: httpx.AsyncClient, lags: list[float], ready: asyncio.Event, opened: list[int]) -> int:
        seen = 0
        async with client.stream("GET", "/watch", params={"kind": "catalog.registered"}) as stream:
            opened.append(1)
            if len(opened) == watchers:
                ready.set()
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    lags.append(time.time() - datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).timestamp())
                    seen += 1
                    if seen >= expected:
                        return seen
        return seen

    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=watchers + 10, max_keepalive_connections=watchers + 10)
        async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(seconds, connect=30), limits=limits) as client:
            lags: list[float] = []
            ready, opened = asyncio.Event(), []
            tasks = [asyncio.create_task(one(client, lags, ready, opened)) for _ in range(watchers)]
            await asyncio.wait_for(ready.wait(), 60)
            queue.put("ready")
            done, pending = await asyncio.wait(tasks, timeout=seconds)
            for task in pending:
                task.cancel()
            counts = [t.result() for t in done if not t.exception()]
            return {"complete": sum(c >= expected for c in counts), "events": sum(counts), "lags": lags}

    queue.put(asyncio.run(run()))


def _watchers(watching: Any, write_target: str, watchers: int, events: int) -> dict[str, Any]:
    """``watchers`` streams on one replica (two load processes) while ``events`` registrations land on another."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    halves = [watchers // 2, watchers - watchers // 2]
    procs = [ctx.Process(target=_watch_worker, args=(watching.http_url, n, events, 120.0, queue)) for n in halves if n]
    for proc in procs:
        proc.start()
    for _ in procs:
        assert queue.get(timeout=120) == "ready"
    door_cpu = watching.cpu_seconds("http")
    _ids, write_s, _pg = _register([write_target], events, 64)
    results = [queue.get(timeout=180) for _ in procs]
    door_cpu = watching.cpu_seconds("http") - door_cpu
    for proc in procs:
        proc.join()
    lags = sorted(lag for r in results for lag in r["lags"])
    delivered = sum(r["events"] for r in results)
    return {
        "watchers": watchers, "events_written": events, "writes_per_s": round(events / write_s),
        "watchers_complete": sum(r["complete"] for r in results), "events_delivered": delivered,
        # the watching replica's HTTP door: its CPU per event delivered to one watcher (its own reads included)
        "door_cpu_us_per_delivery": round(1e6 * door_cpu / delivered, 1) if delivered else None,
        "lag_ms_p50": round(1000 * lags[len(lags) // 2], 1) if lags else None,
        "lag_ms_p99": round(1000 * lags[int(len(lags) * 0.99)], 1) if lags else None,
    }


async def _flush_cost(url: str, ids: list[str], sizes: list[int]) -> list[dict[str, Any]]:
    """The heartbeat flush on its own: one transaction updating ``size`` services' soft state."""
    from muster.catalog import store as q
    from muster.store.engine import Store, Tx

    store = Store(url.replace("postgresql://", "postgresql+asyncpg://"))
    rows = []
    try:
        for size in sizes:
            timings = []
            for attempt in range(5):
                now = datetime.now(UTC) + timedelta(seconds=attempt)
                beats = [{"sid": sid, "ts": now, "p95": 12.5, "queue": 1, "ld": 0.3} for sid in ids[:size]]

                async def op(tx: Tx, beats: list[dict[str, Any]] = beats) -> None:
                    await q.flush_beats(tx.conn, beats)

                pg_before, began = _postgres_cpu_s(), time.perf_counter()
                await store.write(op)
                timings.append((time.perf_counter() - began, _postgres_cpu_s() - pg_before))
            wall = statistics.median(t for t, _ in timings)
            cpu = statistics.median(c for _, c in timings)
            rows.append({"rows": size, "flush_ms": round(1000 * wall, 1), "rows_per_s": round(size / wall),
                         "postgres_cpu_us_per_row": round(1e6 * cpu / size, 1)})
    finally:
        await store.close()
    return rows


def _sweep_scan(count: int) -> dict[str, Any]:
    """The monitor's scan of its in-memory index at ``count`` instances (all beating, so none is due):
    what every sweep costs the leader before it reads anything back."""
    from muster.catalog.index import CatalogIndex
    from muster.catalog.model import MonitorThresholds, ServiceRecord, verdicts

    now = datetime.now(UTC)
    index = CatalogIndex()
    for i in range(count):
        index.put(ServiceRecord(
            service_id=str(uuid.UUID(int=i)), name=f"svc-{i % 500}", type="service", role="production",
            url=f"http://10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:8000", caps=["infer"],
            labels={"zone": f"z{i % 3}"}, ctx_limit=None, cost_hint_usd_per_1k=None, heartbeat_interval_s=60,
            ttl_s=90, status="ok", registered_at=now, last_heartbeat_ts=now - timedelta(seconds=i % 60)))
    rules = MonitorThresholds()
    began = time.perf_counter()
    due = [r.service_id for r in index.by_id.values() if verdicts(r, now, rules, watched_since=None)]
    elapsed = time.perf_counter() - began
    return {"instances": count, "scan_ms": round(1000 * elapsed), "us_per_instance": round(1e6 * elapsed / count, 2),
            "due": len(due)}


async def _admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=4000, help="registrations per write phase")
    parser.add_argument("--watchers", default="10,100,400", help="watcher counts on one replica")
    args = parser.parse_args()
    name = f"muster_scale_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    result: dict[str, Any] = {"benchmark": "scale", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "database": "PostgreSQL 15, same machine"}
    try:
        with muster_server(database_url=url) as first:
            idle_rss = first.rss_mb()
            progress("durable registrations through one replica")
            ids, seconds, pg_cpu = _register([first.grpc_target, first.grpc_target], args.writes, 64)
            result["one_replica"] = {"registrations": len(ids), "per_s": round(len(ids) / seconds),
                                     "events_per_s": round(len(ids) / seconds),
                                     "postgres_cpu_us_per_write": round(1e6 * pg_cpu / len(ids))}
            # The watchers all come from this one address: lift the per-caller cap (100) for them.
            many = ["--max-watchers-per-caller", "5000"]
            with muster_server(database_url=url, extra=many) as second, muster_server(database_url=url) as third:
                progress("durable registrations through three replicas")
                more, seconds, pg_cpu = _register([r.grpc_target for r in (first, second, third)], args.writes, 64)
                ids += more
                result["three_replicas"] = {"registrations": len(more), "per_s": round(len(more) / seconds),
                                            "postgres_cpu_us_per_write": round(1e6 * pg_cpu / len(more))}
                result["watchers_on_one_replica"] = []
                for watchers in (int(w) for w in args.watchers.split(",")):
                    progress(f"{watchers} watchers on one replica, writes through another")
                    result["watchers_on_one_replica"].append(
                        _watchers(second, first.grpc_target, watchers, 1000))
            services = len(ids) + sum(r["events_written"] for r in result["watchers_on_one_replica"])
            loaded_rss = first.rss_mb()
            result["memory"] = {
                "services": services, "idle_rss_mb": idle_rss, "rss_mb": loaded_rss,
                "kb_per_instance_per_door": round(
                    1024 * (max(loaded_rss.values()) - max(idle_rss.values())) / services, 2),
            }
        progress("the monitor's scan of a large index")
        result["sweep_scan"] = [_sweep_scan(n) for n in (100_000, 1_000_000)]
        progress("the heartbeat flush on its own")
        result["flush"] = asyncio.run(_flush_cost(url, ids, [1000, 5000, min(10_000, len(ids))]))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    emit(result)


if __name__ == "__main__":
    main()
