"""Graph benchmark: traversal, cycle detection and bulk upsert against the issue's targets; prints JSON.

    .venv/bin/python bench/graph_bench.py [--small-services 5000 --small-edges 25000
                                           --large-services 100000 --large-edges 400000 --samples 2000]
                                          [--only traversal|large|large-no-networkx] [--cycle-rounds 7]

Steps (progress on stderr, one JSON document on stdout):

1. 5,000 services / 25,000 random edges, written through the service layer on SQLite.
2. 3-hop downstream traversal from random services: in the service layer (the in-memory index), over HTTP
   against a real ``muster serve`` on the same database, with networkx on the same graph, and as a PostgreSQL
   recursive CTE (UNION, partial indexes on both ends) on the same graph in PostgreSQL. Ratios against the
   service layer are printed.
3. 100,000 services / 400,000 edges: bulk upsert of the whole graph on SQLite through the service layer
   (10,000 per call, as the HTTP bound allows), then cycle detection (SCC + one alert per component), cold
   and warm (see :func:`cycle_rounds`). Wall time and this process's CPU time are both reported, with the
   load average: the machines are shared.

PostgreSQL: ``MUSTER_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); a scratch
database is created and dropped. Without PostgreSQL the CTE step is skipped and the JSON says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import networkx as nx
from _harness import machine  # beside this file (run as python bench/graph_bench.py)

from muster.config import Settings
from muster.graph.model import TraverseQuery, UpsertDependenciesInput, UpsertServicesInput
from muster.graph.service import GraphService
from muster.server import build_runtime, close_runtime
from muster.store.engine import Store
from muster.store.migrate import upgrade

PG_ADMIN = os.environ.get("MUSTER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 10_000
DEPTH = 3

CTE = """
WITH RECURSIVE walk(id, depth) AS (
    SELECT s.id, 0 FROM graph_services s WHERE s.service_id = $1
  UNION
    SELECT d.target_id, w.depth + 1
    FROM walk w JOIN graph_dependencies d ON d.source_id = w.id AND NOT d.is_stale
    WHERE w.depth < $2
)
SELECT gs.service_id, min(w.depth) AS distance
FROM walk w JOIN graph_services gs ON gs.id = w.id
GROUP BY gs.service_id
"""


def progress(message: str) -> None:
    print(f"[graph-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def random_graph(services: int, edges: int, seed: int) -> tuple[list[str], list[tuple[str, str]]]:
    rng = random.Random(seed)
    names = [f"svc-{i:06d}" for i in range(services)]
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < edges:
        a, b = rng.randrange(services), rng.randrange(services)
        if a != b:
            chosen.add((a, b))
    return names, [(names[a], names[b]) for a, b in sorted(chosen)]


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 4),
        "p99_ms": round(p99 * 1000, 4),
        "max_ms": round(ordered[-1] * 1000, 4),
        "samples": len(ordered),
    }


def settings_for(data_dir: Path, url: str) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, database_url=url)  # type: ignore[call-arg]


async def migrated(url: str) -> None:
    store = Store(url)
    try:
        await upgrade(store)
    finally:
        await store.close()


async def bulk_load(graph: GraphService, names: list[str], edges: list[tuple[str, str]], label: str) -> float:
    """Write every service and edge through the service layer, BATCH per call; return seconds."""
    started = time.perf_counter()
    for start in range(0, len(names), BATCH):
        chunk = [{"service_id": n, "criticality": "medium"} for n in names[start : start + BATCH]]
        await graph.upsert_services(UpsertServicesInput.model_validate({"services": chunk}))
    progress(f"{label}: {len(names):,} services in {time.perf_counter() - started:.1f}s")
    for start in range(0, len(edges), BATCH):
        chunk_edges = [{"source_service_id": a, "target_service_id": b} for a, b in edges[start : start + BATCH]]
        await graph.upsert_dependencies(UpsertDependenciesInput.model_validate({"dependencies": chunk_edges}))
        done = min(start + BATCH, len(edges))
        if done % (BATCH * 5) == 0 or done == len(edges):
            progress(f"{label}: {done:,}/{len(edges):,} edges, {time.perf_counter() - started:.1f}s")
    return time.perf_counter() - started


async def time_async(starts: list[str], call: Callable[[str], Awaitable[Any]]) -> list[float]:
    samples = []
    for start in starts:
        began = time.perf_counter()
        await call(start)
        samples.append(time.perf_counter() - began)
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(data_dir: Path, url: str) -> Iterator[str]:
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    log = (data_dir / "server.log").open("ab")
    args = [sys.executable, "-m", "muster.cli", "serve", "--data-dir", str(data_dir), "--database-url", url,
            "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--log-level", "warning"]
    process = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/ready", timeout=1).status_code == 200:
                    break
            if process.poll() is not None:
                raise RuntimeError("server exited early; see server.log")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)


def http_step(data_dir: Path, url: str, starts: list[str]) -> dict[str, float]:
    """Sequential keep-alive GETs from a plain blocking client (no client-side event loop in the timing)."""
    with server(data_dir, url) as base, httpx.Client(base_url=base) as http:
        for start in starts[:200]:
            http.get(f"/graph/services/{start}/traverse", params={"depth": DEPTH})
        samples = []
        for start in starts:
            began = time.perf_counter()
            reply = http.get(f"/graph/services/{start}/traverse", params={"depth": DEPTH})
            samples.append(time.perf_counter() - began)
            assert reply.status_code == 200, reply.text
    return percentiles(samples)


async def postgres_cte(names: list[str], edges: list[tuple[str, str]], starts: list[str]) -> dict[str, Any]:
    import asyncpg

    database = f"muster_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return {"skipped": f"PostgreSQL unreachable: {exc!r}"}
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        base = PG_ADMIN.rpartition("/")[0]
        url = f"{base}/{database}".replace("postgresql://", "postgresql+asyncpg://", 1)
        await migrated(url)
        runtime = await build_runtime(settings_for(Path(tempfile.mkdtemp()), url.replace("+asyncpg", "")))
        try:
            load_s = await bulk_load(runtime.contexts["graph"].service, names, edges, "postgresql")
        finally:
            await close_runtime(runtime)
        conn = await asyncpg.connect(f"{base}/{database}")
        try:
            await conn.execute("ANALYZE")
            statement = await conn.prepare(CTE)
            for start in starts[:50]:
                await statement.fetch(start, DEPTH)
            samples = []
            for start in starts:
                began = time.perf_counter()
                await statement.fetch(start, DEPTH)
                samples.append(time.perf_counter() - began)
        finally:
            await conn.close()
        return {"bulk_load_s": round(load_s, 2), **percentiles(samples)}
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


async def small_graph(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    names, edges = random_graph(args.small_services, args.small_edges, seed=7)
    data_dir = work / "small"
    url = f"sqlite:///{data_dir / 'muster.db'}"
    data_dir.mkdir()
    await migrated(url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    starts = random.Random(11).choices(names, k=args.samples)
    result: dict[str, Any] = {"services": len(names), "edges": len(edges), "depth": DEPTH}

    runtime = await build_runtime(settings_for(data_dir, url))
    try:
        graph: GraphService = runtime.contexts["graph"].service
        result["bulk_load_sqlite_s"] = round(await bulk_load(graph, names, edges, "5k graph"), 2)
        queries = [TraverseQuery(service_id=s, depth=DEPTH) for s in starts]
        for query in queries[:200]:
            await graph.traverse(query)
        by_start = dict(zip(starts, queries, strict=True))
        samples = await time_async(starts, lambda s: graph.traverse(by_start[s]))
        reached = [len((await graph.traverse(q)).services) for q in queries[:200]]
        result["service_layer"] = {
            **percentiles(samples), "target_p99_ms": 0.5, "mean_reached": statistics.mean(reached)
        }
        both = {s: TraverseQuery(service_id=s, depth=DEPTH, direction="both") for s in starts}
        result["service_layer_both"] = percentiles(await time_async(starts, lambda s: graph.traverse(both[s])))
    finally:
        await close_runtime(runtime)
    progress(f"service layer 3-hop p99 {result['service_layer']['p99_ms']} ms")

    digraph = nx.DiGraph()
    digraph.add_nodes_from(names)
    digraph.add_edges_from(edges)
    samples = []
    for start in starts:
        began = time.perf_counter()
        nx.single_source_shortest_path_length(digraph, start, cutoff=DEPTH)
        samples.append(time.perf_counter() - began)
    result["networkx"] = percentiles(samples)

    progress("starting muster serve on the same database for the HTTP step")
    result["http"] = {**await asyncio.to_thread(http_step, data_dir, url, starts), "target_p99_ms": 5.0}
    progress(f"HTTP 3-hop p99 {result['http']['p99_ms']} ms")

    progress("loading the same graph into PostgreSQL for the recursive CTE")
    result["postgresql_cte"] = await postgres_cte(names, edges, starts)
    service_median = result["service_layer"]["median_ms"]
    service_p99 = result["service_layer"]["p99_ms"]
    ratios: dict[str, Any] = {}
    for name in ("networkx", "postgresql_cte", "http"):
        other = result[name]
        if "median_ms" in other:
            ratios[f"{name}_vs_service_layer_median"] = round(other["median_ms"] / service_median, 1)
            ratios[f"{name}_vs_service_layer_p99"] = round(other["p99_ms"] / service_p99, 1)
    result["ratios"] = ratios
    return result


async def large_graph(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    names, edges = random_graph(args.large_services, args.large_edges, seed=13)
    data_dir = work / "large"
    data_dir.mkdir()
    url = f"sqlite:///{data_dir / 'muster.db'}"
    await migrated(url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    result: dict[str, Any] = {"services": len(names), "edges": len(edges)}
    runtime = await build_runtime(settings_for(data_dir, url))
    try:
        graph: GraphService = runtime.contexts["graph"].service
        cpu_began = time.process_time()
        load_s = await bulk_load(graph, names, edges, "100k graph")
        result["bulk_upsert_sqlite"] = {
            "seconds": round(load_s, 2), "target_s": 30.0, "calls_of": BATCH,
            "process_cpu_s": round(time.process_time() - cpu_began, 2), "load_average": os.getloadavg(),
        }
        result["cycle_detection"] = await cycle_rounds(graph, args.cycle_rounds)
    finally:
        await close_runtime(runtime)
    if args.only == "large-no-networkx":
        return result
    digraph = nx.DiGraph()
    digraph.add_edges_from(edges)
    began = time.perf_counter()
    list(nx.strongly_connected_components(digraph))
    result["scc_networkx_ms"] = round((time.perf_counter() - began) * 1000, 1)
    return result


def _timed(samples: dict[str, list[float]], name: str, began: float, cpu_began: float) -> None:
    samples.setdefault(name, []).append(time.perf_counter() - began)
    samples.setdefault(f"{name}_cpu", []).append(time.process_time() - cpu_began)


async def cycle_rounds(graph: GraphService, rounds: int) -> dict[str, Any]:
    """Cycle detection, cold and warm (wall and this process's CPU time per call).

    * ``first``: the first detection after the load: components computed, the name-rank table built, the
      giant component's alert (every member) written with its event;
    * ``unchanged``: the graph did not change since the last detection: the index's kept components;
    * ``recomputed``: the kept components dropped by hand before each call, so each call computes them
      again (SCC in rustworkx + name order), as after a change that may close or split a cycle;
    * ``component_grew``: before each call one new service joins the giant component through two real
      edges (upserted); the index adds it to the kept component in place, and the call resolves the old
      alert and opens a new one (every member listed);
    * ``components_merged``: before each call two new services that depend on each other are upserted
      with edges from and back into the giant component, so each call computes the components again
      *and* replaces the giant component's alert: the slowest case here.
    """
    samples: dict[str, list[float]] = {}
    began, cpu = time.perf_counter(), time.process_time()
    report = await graph.detect_cycles()
    _timed(samples, "first", began, cpu)
    components = report.components
    for _ in range(rounds):
        began, cpu = time.perf_counter(), time.process_time()
        await graph.detect_cycles()
        _timed(samples, "unchanged", began, cpu)
    for _ in range(rounds):
        graph.index._components = None  # the benchmark forces the recomputation
        began, cpu = time.perf_counter(), time.process_time()
        await graph.detect_cycles()
        _timed(samples, "recomputed", began, cpu)
    giant = max(graph.index.strongly_connected_components(), key=len)
    for number in range(rounds):
        newcomer = f"joiner-{number:03d}"
        edges = [{"source_service_id": giant[number], "target_service_id": newcomer},
                 {"source_service_id": newcomer, "target_service_id": giant[-1 - number]}]
        await graph.upsert_dependencies(UpsertDependenciesInput.model_validate({"dependencies": edges}))
        began, cpu = time.perf_counter(), time.process_time()
        await graph.detect_cycles()
        _timed(samples, "component_grew", began, cpu)
    for number in range(rounds):
        pair = (f"merger-{number:03d}-a", f"merger-{number:03d}-b")
        edges = [{"source_service_id": pair[0], "target_service_id": pair[1]},
                 {"source_service_id": pair[1], "target_service_id": pair[0]},
                 {"source_service_id": giant[number + rounds], "target_service_id": pair[0]},
                 {"source_service_id": pair[1], "target_service_id": giant[-1 - number - rounds]}]
        await graph.upsert_dependencies(UpsertDependenciesInput.model_validate({"dependencies": edges}))
        began, cpu = time.perf_counter(), time.process_time()
        await graph.detect_cycles()
        _timed(samples, "components_merged", began, cpu)
    result: dict[str, Any] = {"target_ms": 200.0, "components": components, "largest": len(giant)}
    for name, values in samples.items():
        result[name] = {**percentiles(values), "rounds_ms": [round(v * 1000, 1) for v in values]}
    progress("cycle detection: " + ", ".join(
        f"{name} median {result[name]['median_ms']:.0f} ms" for name in samples if not name.endswith("_cpu")
    ))
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-services", type=int, default=5_000)
    parser.add_argument("--small-edges", type=int, default=25_000)
    parser.add_argument("--large-services", type=int, default=100_000)
    parser.add_argument("--large-edges", type=int, default=400_000)
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--cycle-rounds", type=int, default=7, help="cycle detections per kind (see cycle_rounds)")
    parser.add_argument("--only", choices=["traversal", "large", "large-no-networkx"],
                        help="run one part: the 5k traversal step, or the 100k bulk upsert + cycle detection "
                             "(with or without the networkx SCC comparison)")
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    with tempfile.TemporaryDirectory(prefix="graph-bench-") as tmp:
        work = Path(tmp)
        report: dict[str, Any] = {
            "benchmark": "graph",
            "machine": machine(),
            "load_average_at_start": os.getloadavg(),
        }
        if args.only in (None, "traversal"):
            report["traversal_5k"] = await small_graph(args, work)
        if args.only != "traversal":
            report["large_100k"] = await large_graph(args, work)
        report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
