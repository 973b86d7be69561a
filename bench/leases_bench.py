"""Symbol registry benchmark against real `muster serve` processes; prints one JSON document.

    python bench/leases_bench.py                       # SQLite and PostgreSQL, 64 clients
    python bench/leases_bench.py --engines sqlite --seconds 5

For each engine it starts a fresh server (split doors: the gRPC door is its own
process) and measures, over gRPC with 64 concurrent clients:

* ``reserve``: reserves of distinct symbols per second, with latency percentiles;
* ``lookup``: round-trip latency of one client (p50/p99), from the Python
  client and, where h2load (Debian's nghttp2-client) is installed, from h2load
  with one call in flight (a C client: the server's latency without the Python
  client's own cost); the server-side ``srm_lookup_latency_ms`` p99; and 64
  concurrent clients for throughput;
* ``contention``: all clients hammer 100 symbols (reserve, then release what
  they won). Double grants are checked twice: by the clients (a grant while
  another client still holds the symbol) and from the event log (a
  ``leases.reserved`` while the symbol's previous lease was still live).

Clients use the generated stubs directly (no client-side validation) so the
load generator, which shares the 2 cores with the server, stays light.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import httpx
from _harness import grpc_frame, h2load_unary, machine  # beside this file (run as python bench/leases_bench.py)

from muster._loop import fast_loop_factory
from muster._proto.srm import symbol_pb2 as pb
from muster._proto.srm import symbol_pb2_grpc as pb_grpc

TARGETS = {"reserves_per_s": 2000.0, "lookup_p99_ms": 2.0, "double_grants": 0}
ENDED = ("leases.released", "leases.expired", "leases.deprecated")
PG_ADMIN = os.environ.get("MUSTER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# The load generator's event loop (``--generator-loop``): uvloop, as Muster's doors run, costs
# the generator less CPU per call, and the generator shares the two cores with the server.
_LOOP_FACTORY: list[Any] = [fast_loop_factory()]


def workload(coroutine: Any) -> Any:
    with asyncio.Runner(loop_factory=_LOOP_FACTORY[0]) as runner:
        return runner.run(coroutine)


def progress(message: str) -> None:
    print(f"[leases-bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary_ms(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 3),
    }


# -- servers --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (``/proc/PID/stat`` utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Server:
    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.http_port, self.grpc_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_door_pid(self) -> int:
        """The gRPC door's process (split doors: a child running ``muster.server grpc``)."""
        import psutil

        assert self.process is not None
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if child.cmdline()[-2:] == ["muster.server", "grpc"]:
                return int(child.pid)
        return self.process.pid  # single door process

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
        args = [
            sys.executable, "-m", "muster.cli", "serve", "--data-dir", str(self.data_dir),
            "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port), "--log-level", "warning",
        ]
        if self.database_url:
            args += ["--database-url", self.database_url]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.data_dir / "server.log").read_text()[-3000:])
            with contextlib.suppress(Exception):
                if httpx.get(f"{self.http_url}/ready", timeout=1).status_code == 200 and self._grpc_answers():
                    return
            time.sleep(0.2)
        raise RuntimeError("server not ready in 60 s")

    def _grpc_answers(self) -> bool:
        """/ready waits for the gRPC door too; check it answers anyway (any status but UNAVAILABLE)."""

        async def probe() -> bool:
            async with grpc.aio.insecure_channel(self.grpc_target) as channel:
                stub = pb_grpc.SymbolRegistryStub(channel)
                try:
                    await stub.Lookup(pb.LookupRequest(repo="probe", branch="main", fq_name="probe"), timeout=2)
                except grpc.aio.AioRpcError as exc:
                    return exc.code() != grpc.StatusCode.UNAVAILABLE
                return True

        return asyncio.run(probe())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    import asyncpg

    name = f"muster_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_ADMIN.rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- workloads ------------------------------------------------------------------------------------


def channels(target: str, count: int) -> list[grpc.aio.Channel]:
    # A few channels (HTTP/2 connections) shared by the clients, as a fleet of agents would open.
    return [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(count)]


async def reserve_throughput(
    target: str, clients: int, seconds: float, run: str, door_pid: int, granted: list[str]
) -> dict[str, Any]:
    """Distinct symbols as fast as 64 clients can; ``granted`` gets the names that were reserved."""
    chans = channels(target, 8)
    stubs = [pb_grpc.SymbolRegistryStub(c) for c in chans]
    latencies: list[float] = []
    errors: dict[str, int] = defaultdict(int)
    stop_at = time.perf_counter() + seconds

    async def client(n: int) -> None:
        stub, i = stubs[n % len(stubs)], 0
        while time.perf_counter() < stop_at:
            name = f"c{n}.sym{i}"
            request = pb.ReserveRequest(repo=f"bench-{run}", branch="main", fq_name=name, kind="function", ttl_sec=600)
            started = time.perf_counter()
            try:
                await stub.Reserve(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
            else:
                latencies.append(time.perf_counter() - started)
                granted.append(name)
            i += 1

    cpu_before, load_before, own_before = cpu_seconds(door_pid), load_average(), time.process_time()
    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    door_cpu = cpu_seconds(door_pid) - cpu_before
    generator_cpu = time.process_time() - own_before
    for chan in chans:
        await chan.close()
    return {
        "clients": clients,
        "reserves": len(latencies),
        "errors_by_code": dict(errors),
        "seconds": round(elapsed, 2),
        "reserves_per_s": round(len(latencies) / elapsed, 1),
        **summary_ms(latencies),
        "grpc_door_cpu_s": round(door_cpu, 2),
        "grpc_door_cpu_ms_per_reserve": round(1000 * door_cpu / max(1, len(latencies)), 3),
        "generator_cpu_ms_per_call": round(1000 * generator_cpu / max(1, len(latencies) + sum(errors.values())), 3),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


async def lookup_latency(target: str, clients: int, run: str, samples: int, granted: list[str]) -> dict[str, Any]:
    """Look up symbols the reserve run was granted (never one whose reserve failed)."""
    if not granted:
        return {"skipped": "no reserve succeeded"}
    chans = channels(target, 8)
    stubs = [pb_grpc.SymbolRegistryStub(c) for c in chans]
    names = random.Random(0).sample(granted, min(len(granted), 1000))

    def request(name: str) -> pb.LookupRequest:
        return pb.LookupRequest(repo=f"bench-{run}", branch="main", fq_name=name)

    for name in names[:50]:  # warm up
        await stubs[0].Lookup(request(name), timeout=10)
    single: list[float] = []
    for i in range(samples):
        started = time.perf_counter()
        await stubs[0].Lookup(request(names[i % len(names)]), timeout=10)
        single.append(time.perf_counter() - started)

    concurrent: list[float] = []
    per_client = max(1, samples // clients) * 4

    async def client(n: int) -> None:
        stub = stubs[n % len(stubs)]
        for i in range(per_client):
            started = time.perf_counter()
            await stub.Lookup(request(names[(n + i) % len(names)]), timeout=10)
            concurrent.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    for chan in chans:
        await chan.close()
    return {
        "one_client": {"lookups": len(single), **summary_ms(single)},
        f"{clients}_clients": {
            "lookups": len(concurrent),
            "lookups_per_s": round(len(concurrent) / elapsed, 1),
            **summary_ms(concurrent),
        },
    }


def lookup_latency_h2load(port: int, run: str, name: str, requests: int) -> dict[str, Any]:
    """One client's Lookup round trips from h2load (C), one call in flight: the server's latency
    without a Python gRPC client's own ~0.3 ms per call on the same two cores."""
    frame = Path(tempfile.mkdtemp(prefix="leases-bench-")) / "lookup.bin"
    frame.write_bytes(grpc_frame(pb.LookupRequest(repo=f"bench-{run}", branch="main", fq_name=name)))
    path = "/srm.SymbolRegistry/Lookup"
    h2load_unary(port, path, frame, connections=1, streams=1, requests=200)  # warm-up, not counted
    measured = h2load_unary(port, path, frame, connections=1, streams=1, requests=requests)
    return {"lookups": measured["done"], **{k: measured[k] for k in ("failed", "p50_ms", "p99_ms", "max_ms")}}


def server_side_lookup_p99(http_url: str) -> float | None:
    """p99 upper bound from the srm_lookup_latency_ms histogram buckets."""
    text = httpx.get(f"{http_url}/metrics", timeout=10).text
    buckets: dict[float, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith("srm_lookup_latency_ms_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if bound == "+Inf" else float(bound)] += float(line.rsplit(" ", 1)[1])
    if not buckets:
        return None
    total = buckets[float("inf")]
    for bound in sorted(buckets):
        if buckets[bound] >= 0.99 * total:
            return bound
    return None


async def contention(target: str, clients: int, seconds: float, run: str, symbols: int = 100) -> dict[str, Any]:
    chans = channels(target, 8)
    stubs = [pb_grpc.SymbolRegistryStub(c) for c in chans]
    holder: dict[str, int] = {}
    client_double_grants = 0
    granted = conflicts = errors = 0
    stop_at = time.perf_counter() + seconds
    repo = f"contend-{run}"

    async def client(n: int) -> None:
        nonlocal client_double_grants, granted, conflicts, errors
        stub, rng = stubs[n % len(stubs)], random.Random(n)
        while time.perf_counter() < stop_at:
            name = f"hot{rng.randrange(symbols)}"
            try:
                reply = await stub.Reserve(
                    pb.ReserveRequest(repo=repo, branch="main", fq_name=name, kind="function", ttl_sec=600), timeout=30
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                    conflicts += 1
                else:
                    errors += 1
                continue
            granted += 1
            if name in holder:  # someone else still holds it: a double grant
                client_double_grants += 1
            holder[name] = n
            await asyncio.sleep(0)  # hold it for a moment
            del holder[name]  # give it up locally *before* the release is sent
            await stub.Release(pb.ReleaseRequest(lease_id=reply.lease_id), timeout=30)

    began = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - began
    for chan in chans:
        await chan.close()
    return {
        "clients": clients,
        "symbols": symbols,
        "seconds": round(elapsed, 2),
        "grants": granted,
        "conflicts": conflicts,
        "errors": errors,
        "reserve_calls_per_s": round((granted + conflicts + errors) / elapsed, 1),
        "double_grants_seen_by_clients": client_double_grants,
        "repo": repo,
    }


async def double_grants_in_event_log(database_url: str, repo: str) -> dict[str, int]:
    """Replay the repo's lease events in commit order: a grant while the previous lease is live is a double grant."""
    from sqlalchemy import select

    from muster.leases.model import subject_prefix
    from muster.store.engine import Store
    from muster.store.schema import events

    url = database_url
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    elif url.startswith("sqlite:///"):
        url = "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    store = Store(url)
    live: dict[str, int] = {}
    doubles = grants = 0
    try:
        async with store.read() as conn:
            query = (
                select(events.c.kind, events.c.payload)
                .where(events.c.subject.startswith(subject_prefix(repo), autoescape=True))
                .order_by(events.c.revision)
            )
            for kind, payload in (await conn.execute(query)).all():
                lease = payload["lease"]
                if kind == "leases.reserved":
                    grants += 1
                    if lease["fq_name"] in live:
                        doubles += 1
                    live[lease["fq_name"]] = lease["lease_id"]
                elif kind in ENDED and live.get(lease["fq_name"]) == lease["lease_id"]:
                    del live[lease["fq_name"]]
    finally:
        await store.close()
    return {"grants_in_log": grants, "double_grants_in_log": doubles}


# -- the bare grpc.aio ceiling ----------------------------------------------------------------------


class _NoopRegistry(pb_grpc.SymbolRegistryServicer):
    """Answers Reserve and Lookup at once: what grpc.aio alone costs per call."""

    async def Reserve(self, request: pb.ReserveRequest, context: Any) -> pb.ReserveReply:
        return pb.ReserveReply(lease_id=1, status="reserved", expires_at="2026-11-22T00:10:00.000Z")

    async def Lookup(self, request: pb.LookupRequest, context: Any) -> pb.LookupReply:
        return pb.LookupReply(status="reserved", file_path="")


def serve_bare(port: int) -> None:
    async def run() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_SymbolRegistryServicer_to_server(_NoopRegistry(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    workload(run())  # on the same loop as Muster's gRPC door


def bench_bare(clients: int, seconds: float, samples: int) -> dict[str, Any]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--bare-server", str(port)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        progress(f"bare grpc.aio: no-op Reserve, {clients} clients, {seconds} s")
        reserve = workload(reserve_throughput(f"127.0.0.1:{port}", clients, seconds, "bare", process.pid, []))
        lookup = workload(lookup_latency(f"127.0.0.1:{port}", clients, "bare", samples, ["c0.sym0"]))
        if shutil.which("h2load"):
            lookup["one_client_h2load"] = lookup_latency_h2load(port, "bare", "c0.sym0", samples)
    finally:
        process.kill()
        process.wait()
    return {"reserve": reserve, "lookup": lookup}


# -- driver ---------------------------------------------------------------------------------------


def bench_engine(engine: str, clients: int, seconds: float, samples: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"leases-bench-{engine}-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        if engine == "postgresql":
            database_url = stack.enter_context(postgres_database())
        else:
            database_url = f"sqlite:///{workdir / 'bench.db'}"
        server = Server(workdir / "server", database_url)
        progress(f"{engine}: starting muster serve")
        server.start()
        stack.callback(server.stop)
        run = uuid.uuid4().hex[:6]
        progress(f"{engine}: reserve throughput, {clients} clients, {seconds} s")
        granted: list[str] = []
        reserve = workload(
            reserve_throughput(server.grpc_target, clients, seconds, run, server.grpc_door_pid, granted)
        )
        progress(
            f"{engine}: {reserve['reserves_per_s']} reserves/s, "
            f"{reserve['grpc_door_cpu_ms_per_reserve']} ms gRPC-door CPU per reserve, "
            f"errors {reserve['errors_by_code']}; lookup latency"
        )
        lookup = workload(lookup_latency(server.grpc_target, clients, run, samples, granted))
        if shutil.which("h2load") and granted:
            lookup["one_client_h2load"] = lookup_latency_h2load(server.grpc_port, run, granted[0], samples)
        lookup["server_side_p99_ms_at_most"] = server_side_lookup_p99(server.http_url)
        progress(f"{engine}: contention on 100 symbols, {seconds} s")
        contended = workload(contention(server.grpc_target, clients, seconds, run))
        contended.update(asyncio.run(double_grants_in_event_log(database_url, contended.pop("repo"))))
        progress(f"{engine}: done")
    return {"reserve": reserve, "lookup": lookup, "contention": contended}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lookup-samples", type=int, default=3000)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare grpc.aio ceiling")
    parser.add_argument("--generator-loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.generator_loop == "asyncio":
        _LOOP_FACTORY[0] = None
    if options.bare_server:
        serve_bare(options.bare_server)
        return 0
    results: dict[str, Any] = {
        "benchmark": "leases",
        "date": datetime.now(UTC).date().isoformat(),
        "machine": machine(),
        "load_average_at_start": load_average(),
        "generator_loop": options.generator_loop,
        "targets": TARGETS,
        "engines": {},
    }
    for engine in options.engines.split(","):
        outcome = bench_engine(engine, options.clients, options.seconds, options.lookup_samples)
        outcome["vs_targets"] = {
            "reserves_per_s_ratio": round(outcome["reserve"]["reserves_per_s"] / TARGETS["reserves_per_s"], 2),
            "lookup_p99_one_client_ratio": round(
                outcome["lookup"].get("one_client", {}).get("p99_ms", float("nan")) / TARGETS["lookup_p99_ms"], 2
            ),
            "lookup_p99_one_client_h2load_ratio": round(
                outcome["lookup"].get("one_client_h2load", {}).get("p99_ms", float("nan")) / TARGETS["lookup_p99_ms"], 2
            ),
            "double_grants": outcome["contention"]["double_grants_seen_by_clients"]
            + outcome["contention"]["double_grants_in_log"],
        }
        results["engines"][engine] = outcome
    if not options.no_bare:
        results["bare_grpc"] = bench_bare(options.clients, options.seconds, options.lookup_samples)
    print(json.dumps(results, indent=2))
    doubles = sum(e["vs_targets"]["double_grants"] for e in results["engines"].values())
    return 1 if doubles else 0


if __name__ == "__main__":
    raise SystemExit(main())
